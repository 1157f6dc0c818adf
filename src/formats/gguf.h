// GGUF reader (versions 2 and 3): metadata key/values and tensor infos, with the
// tensor data used in place from a memory map. Every count, length, dimension and
// offset is validated against the file, since model files are untrusted input.
//
// File layout (little-endian):
//   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 dims[n_dims] | u32 type | u64 offset }
//   padding to general.alignment (default 32) | tensor data (offsets relative to here)
// A string is u64 length + bytes (no terminator). An array is u32 elem_type + u64 count + elems.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "quant/types.h"

namespace jevons {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Strings point into the mapped file (no copies).
struct GgufValue {
  GgufType type = GgufType::UINT8;
  // Scalars: integers in i (signed types) or u (unsigned, bool); floats in f.
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string_view str;
  // Arrays: element type and count. String and nested-array elements are decoded into
  // items; numeric elements stay in the map (raw) and are read with number_at/int_at,
  // so a huge numeric array costs no memory.
  GgufType elem_type = GgufType::UINT8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;
  std::vector<GgufValue> items;

  size_t size() const { return size_t(count); }
  // Element k of an array: as a number (any numeric type), as an integer (integer
  // or bool types), as a string. Throw Error on a type mismatch; k must be < size().
  double number_at(size_t k) const;
  int64_t int_at(size_t k) const;
  std::string_view string_at(size_t k) const;

  bool is_integer() const;
  bool is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  // Render for humans (arrays abbreviated to max_items).
  std::string to_string(size_t max_items = 8) const;
};

struct GgufTensor {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<int64_t> dims;  // dims[0] is the row length (contiguous), as in ggml's ne[]
  uint64_t offset = 0;        // relative to the start of the data section
  size_t nbytes = 0;
  int64_t n_elements = 0;
  const uint8_t* data = nullptr;  // into the map
  // FP8 block scales (safetensors weight_scale_inv): element (r, c) is multiplied by
  // block_scale[(r / scale_block) * scale_cols + c / scale_block]. Null otherwise.
  const float* block_scale = nullptr;
  int64_t scale_block = 0, scale_cols = 0;

  int64_t rows() const { return n_elements / dims[0]; }
  std::string shape_string() const;  // e.g. "4096x1024"
};

// Where a model's hyperparameters and tensors come from: a GGUF file, or a Hugging
// Face directory presenting its config and tensors under GGUF names. The typed
// getters throw Error("<path>: metadata key <key> ...") when missing or mistyped.
class ModelSource {
 public:
  virtual ~ModelSource() = default;
  virtual const std::string& path() const = 0;
  virtual const GgufValue* find(std::string_view key) const = 0;
  virtual const GgufTensor* find_tensor(std::string_view name) const = 0;
  // Every tensor, in file order (GGUF) or name order (safetensors).
  virtual std::vector<const GgufTensor*> tensor_list() const = 0;
  // Every metadata key/value, in file order.
  virtual const std::vector<std::pair<std::string, GgufValue>>& metadata() const = 0;

  uint64_t get_uint(std::string_view key) const;  // any non-negative integer type
  double get_float(std::string_view key) const;    // any float or integer type
  std::string get_string(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const GgufValue& get_array(std::string_view key) const;
  // Same, with a default when the key is absent (still an error if present but mistyped).
  uint64_t get_uint_or(std::string_view key, uint64_t def) const;
  double get_float_or(std::string_view key, double def) const;
  std::string get_string_or(std::string_view key, std::string_view def) const;
  bool get_bool_or(std::string_view key, bool def) const;

  // Tells the source that the tensor bytes [p, p + n) have been copied (repacked) and
  // need not stay in memory; a mapped file drops those pages. Default: nothing.
  virtual void release_pages(const uint8_t* p, size_t n) const { (void)p, (void)n; }
  // Whether release_pages(p, n) would drop those bytes from memory (they lie in a
  // file map), so that copying them elsewhere costs no memory.
  virtual bool can_release_pages(const uint8_t* p, size_t n) const { return (void)p, (void)n, false; }
};

class GgufFile : public ModelSource {
 public:
  // Opens and validates a file; throws Error naming the file and the bad key/tensor.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  const std::string& path() const override { return map_->path(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t file_size() const { return map_->size(); }
  size_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const override { return kv_; }
  const GgufValue* find(std::string_view key) const override;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const override;
  std::vector<const GgufTensor*> tensor_list() const override;
  void release_pages(const uint8_t* p, size_t n) const override { map_->release(p, n); }
  bool can_release_pages(const uint8_t* p, size_t n) const override { return map_->contains(p, n); }

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace jevons
