#include "formats/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace jevons {
namespace {

struct DtypeInfo {
  const char* name;
  SafetensorsDtype dtype;
  size_t size;
};
const DtypeInfo kDtypes[] = {
    {"F32", SafetensorsDtype::F32, 4},         {"F16", SafetensorsDtype::F16, 2},  {"BF16", SafetensorsDtype::BF16, 2},
    {"F8_E4M3", SafetensorsDtype::F8_E4M3, 1}, {"F64", SafetensorsDtype::F64, 8},  {"I64", SafetensorsDtype::I64, 8},
    {"I32", SafetensorsDtype::I32, 4},         {"I16", SafetensorsDtype::I16, 2},  {"I8", SafetensorsDtype::I8, 1},
    {"U8", SafetensorsDtype::U8, 1},           {"BOOL", SafetensorsDtype::BOOL, 1},
};

constexpr uint64_t kMaxHeader = uint64_t(100) << 20;  // the format caps headers at 100 MB

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->map_ = std::make_unique<MappedFile>(path);
  const size_t size = f->map_->size();
  if (size < 8) fail("{}: truncated safetensors file ({} bytes)", path, size);
  uint64_t n = 0;
  std::memcpy(&n, f->map_->data(), 8);
  if (n > kMaxHeader || n > size - 8)
    fail("{}: header length {} goes beyond the end of the file ({} bytes); the file is truncated or not safetensors", path, n, size);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f->map_->data() + 8, f->map_->data() + 8 + n);
  } catch (const std::exception& e) {
    fail("{}: the header is not valid JSON ({})", path, e.what());
  }
  if (!header.is_object()) fail("{}: the header is not a JSON object", path);
  const uint8_t* data = f->map_->data() + 8 + n;
  const size_t data_size = size - 8 - n;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = path + ": tensor " + name;
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      fail("{}: needs dtype, shape and data_offsets", where);
    SafetensorsTensor t;
    t.name = name;
    if (!info["dtype"].is_string()) fail("{}: dtype is not a string", where);
    t.dtype_name = info["dtype"].get<std::string>();
    const DtypeInfo* d = nullptr;
    for (const DtypeInfo& x : kDtypes)
      if (t.dtype_name == x.name) d = &x;
    if (!d) fail("{}: unsupported dtype {}", where, t.dtype_name);
    t.dtype = d->dtype;
    if (!info["shape"].is_array()) fail("{}: shape is not an array", where);
    uint64_t count = 1;
    for (auto& dim : info["shape"]) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > (uint64_t(1) << 40)) fail("{}: bad dimension {}", where, dim.dump());
      t.shape.push_back(dim.get<int64_t>());
      if (__builtin_mul_overflow(count, dim.get<uint64_t>(), &count)) fail("{}: element count overflows", where);
    }
    const auto& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail("{}: data_offsets must be two non-negative integers", where);
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      fail("{}: data [{}, {}) lies outside the {} bytes of tensor data; the file is truncated or corrupt", where, begin, end, data_size);
    if (count > (uint64_t(1) << 50) || end - begin != count * d->size)
      fail("{}: {} bytes of data for shape {} of {} ({} expected)", where, end - begin, info["shape"].dump(), t.dtype_name,
           count * d->size);
    t.data = data + begin;
    t.nbytes = size_t(end - begin);
    ranges.push_back({size_t(begin), size_t(end)});
    f->tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t k = 1; k < ranges.size(); ++k)
    if (ranges[k].first < ranges[k - 1].second) fail("{}: two tensors overlap in the data section", path);
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::unique_ptr<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<SafetensorsCheckpoint> c(new SafetensorsCheckpoint());
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    nlohmann::json j;
    try {
      std::ifstream in(index);
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      fail("{}: not valid JSON ({})", index.string(), e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail("{}: no weight_map object", index.string());
    std::map<std::string, size_t> shard_of_file;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail("{}: weight_map entry {} is not a file name", index.string(), name);
      const std::string shard = file.get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        fail("{}: shard name '{}' must be a plain file name in the directory", index.string(), shard);
      if (!shard_of_file.count(shard)) {
        const fs::path p = fs::path(dir) / shard;
        if (!fs::exists(p)) fail("{}: shard {} (holding {}) is missing", index.string(), shard, name);
        shard_of_file[shard] = c->shards_.size();
        c->shards_.push_back(SafetensorsFile::open(p.string()));
      }
      const SafetensorsTensor* t = c->shards_[shard_of_file[shard]]->find(name);
      if (!t) fail("{}: tensor {} is mapped to {} but that shard does not contain it", index.string(), name, shard);
      c->index_[name] = t;
    }
  } else {
    const fs::path single = fs::path(dir) / "model.safetensors";
    if (!fs::exists(single)) fail("{}: neither model.safetensors nor model.safetensors.index.json is present", dir);
    c->shards_.push_back(SafetensorsFile::open(single.string()));
    for (auto& [name, t] : c->shards_.back()->tensors()) c->index_[name] = &t;
  }
  return c;
}

const MappedFile* SafetensorsCheckpoint::map_containing(const uint8_t* p, size_t n) const {
  for (const auto& shard : shards_)
    if (shard->map().contains(p, n)) return &shard->map();
  return nullptr;
}

const SafetensorsTensor* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

}  // namespace jevons
