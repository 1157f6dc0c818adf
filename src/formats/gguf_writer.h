// Writes GGUF v3 files: metadata, tensor infos, aligned tensor data. Used by
// synth/convert and by tests that need small or deliberately broken files.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace jevons {

class GgufWriter {
 public:
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  // Any value read from another file (e.g. copying a vocabulary's metadata).
  void set_value(const std::string& key, const GgufValue& v);
  void remove(const std::string& key);

  // dims[0] is the row length. data must hold exactly the tensor's bytes.
  void add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& dims, std::vector<uint8_t> data);
  // A tensor whose bytes are produced only while writing (one tensor in memory at a
  // time), for files larger than RAM. fill receives a buffer of the tensor's size.
  void add_tensor_generated(const std::string& name, TensorType type, const std::vector<int64_t>& dims,
                            std::function<void(uint8_t* out, size_t nbytes)> fill);
  // Convenience: an f32 tensor from floats, converted to `type` with its reference quantizer.
  void add_tensor_f32(const std::string& name, TensorType type, const std::vector<int64_t>& dims, const std::vector<float>& values);

  // The whole file as bytes (tests corrupt these), or written to path.
  std::vector<uint8_t> bytes(uint32_t alignment = 32) const;
  void write(const std::string& path, uint32_t alignment = 32) const;
  // Streams the file to sink in order (header, then each tensor padded to alignment).
  void write_to(const std::function<void(const uint8_t*, size_t)>& sink, uint32_t alignment = 32) const;

 private:
  struct Entry {
    std::string key;
    std::vector<uint8_t> encoded;  // type tag + value, as in the file
  };
  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;  // or, when empty, produced by fill
    size_t nbytes = 0;
    std::function<void(uint8_t*, size_t)> fill;
  };
  void set_raw(const std::string& key, std::vector<uint8_t> encoded);
  std::vector<uint8_t> header(uint32_t alignment) const;
  std::vector<Entry> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace jevons
