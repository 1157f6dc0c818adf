// Hugging Face .safetensors reader. Layout: u64 header length N | N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {...}} | tensor data (offsets relative to the end of the header).
// Data is used in place from a memory map; every offset, shape and size is checked.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace jevons {

enum class SafetensorsDtype { F32, F16, BF16, F8_E4M3, F64, I64, I32, I16, I8, U8, BOOL };

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype;
  std::string dtype_name;
  std::vector<int64_t> shape;  // torch order: shape[0] is the outermost (rows)
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  const std::string& path() const { return map_->path(); }
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  const MappedFile& map() const { return *map_; }

 private:
  std::unique_ptr<MappedFile> map_;
  std::map<std::string, SafetensorsTensor> tensors_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards listed in
// model.safetensors.index.json (every shard must exist; every mapped tensor must be in its shard).
class SafetensorsCheckpoint {
 public:
  static std::unique_ptr<SafetensorsCheckpoint> open(const std::string& dir);
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, const SafetensorsTensor*>& tensors() const { return index_; }
  // The shard whose map holds [p, p + n), or null (e.g. bytes converted at load).
  const MappedFile* map_containing(const uint8_t* p, size_t n) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsTensor*> index_;
};

}  // namespace jevons
