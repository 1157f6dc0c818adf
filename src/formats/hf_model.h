// A Hugging Face model directory (config.json, *.safetensors, tokenizer.json,
// tokenizer_config.json) presented as a ModelSource: its hyperparameters, tensors
// and tokenizer appear under the GGUF names the models and the tokenizer read, so
// nothing downstream knows which format it came from.
#pragma once
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"

namespace jevons {

class ThreadPool;

class HfModel : public ModelSource {
 public:
  // quantize_to: convert every weight matrix at load into one owned arena
  // (k-quants fall back like llama.cpp's quantizer on short rows).
  static std::unique_ptr<HfModel> open(const std::string& dir, std::optional<TensorType> quantize_to = std::nullopt,
                                       ThreadPool* pool = nullptr);

  const std::string& path() const override { return dir_; }
  const GgufValue* find(std::string_view key) const override;
  const GgufTensor* find_tensor(std::string_view name) const override;
  std::vector<const GgufTensor*> tensor_list() const override;
  // Bytes in a safetensors shard's map (not those converted at load).
  void release_pages(const uint8_t* p, size_t n) const override;
  bool can_release_pages(const uint8_t* p, size_t n) const override;

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const override { return kv_; }
  const std::map<std::string, GgufTensor, std::less<>>& tensors() const { return tensors_; }
  // Bytes held outside the safetensors maps (quantize-on-load arena, converted scales).
  size_t owned_bytes() const { return owned_bytes_; }
  // True when q/k rows are in HF order (llama): RoPE then rotates halves, not pairs.
  bool rope_halves() const { return rope_halves_; }

 private:
  HfModel() = default;
  void read_config();
  void read_tokenizer();
  void map_tensors(std::optional<TensorType> quantize_to, ThreadPool* pool);

  // Metadata setters (strings are kept alive in strings_).
  void set(const std::string& key, GgufValue v);
  void set_u32(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_numbers(const std::string& key, GgufType type, const std::vector<uint8_t>& raw, size_t count);
  std::string_view keep(const std::string& s);

  std::string dir_;
  std::string arch_;
  bool rope_halves_ = false;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  std::deque<std::string> strings_;
  std::deque<std::vector<uint8_t>> owned_;  // raw arrays, converted tensors
  size_t owned_bytes_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::map<std::string, GgufTensor, std::less<>> tensors_;
};

// Opens a model path: a GGUF file, or a Hugging Face directory.
std::unique_ptr<ModelSource> open_model_source(const std::string& path, std::optional<TensorType> quantize_to = std::nullopt,
                                               ThreadPool* pool = nullptr);

}  // namespace jevons
