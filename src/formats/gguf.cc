#include "formats/gguf.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace jevons {
namespace {

constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;       // deeper nesting is surely corrupt
constexpr uint64_t kMaxStringLength = uint64_t(1) << 30;

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

// Bounds-checked little-endian cursor over the mapped header. Every read names
// what it was reading, so an error can say where the file is bad.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  const uint8_t* here() const { return data_ + pos_; }
  void skip(size_t n) { pos_ += n; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      fail("{}: truncated or corrupt file: {} needs {} bytes at offset {}, only {} left", path_,
           what, n, pos_, remaining());
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const std::string& what) {
    const uint64_t n = read<uint64_t>(what + " (string length)");
    if (n > kMaxStringLength) fail("{}: {}: string length {} is implausible", path_, what, n);
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  [[noreturn]] void error(const std::string& msg) const { fail("{}: {}", path_, msg); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

GgufValue read_scalar(Reader& r, GgufType t, const std::string& what) {
  GgufValue v;
  v.type = t;
  switch (t) {
    case GgufType::UINT8: v.u = r.read<uint8_t>(what); v.i = int64_t(v.u); break;
    case GgufType::INT8: v.i = r.read<int8_t>(what); v.u = uint64_t(v.i); break;
    case GgufType::UINT16: v.u = r.read<uint16_t>(what); v.i = int64_t(v.u); break;
    case GgufType::INT16: v.i = r.read<int16_t>(what); v.u = uint64_t(v.i); break;
    case GgufType::UINT32: v.u = r.read<uint32_t>(what); v.i = int64_t(v.u); break;
    case GgufType::INT32: v.i = r.read<int32_t>(what); v.u = uint64_t(v.i); break;
    case GgufType::UINT64: v.u = r.read<uint64_t>(what); v.i = int64_t(v.u); break;
    case GgufType::INT64: v.i = r.read<int64_t>(what); v.u = uint64_t(v.i); break;
    case GgufType::FLOAT32: v.f = r.read<float>(what); break;
    case GgufType::FLOAT64: v.f = r.read<double>(what); break;
    case GgufType::BOOL: {
      const uint8_t b = r.read<uint8_t>(what);
      if (b > 1) r.error(fmt::format("{}: bool value {} is neither 0 nor 1", what, b));
      v.u = b;
      v.i = b;
      break;
    }
    case GgufType::STRING: v.str = r.read_string(what); break;
    default: r.error(fmt::format("{}: unknown value type {}", what, uint32_t(t)));
  }
  return v;
}

GgufValue read_value(Reader& r, GgufType t, const std::string& what, int depth) {
  if (t != GgufType::ARRAY) return read_scalar(r, t, what);
  if (depth >= kMaxArrayNesting) r.error(fmt::format("{}: arrays nested deeper than {}", what, kMaxArrayNesting));
  GgufValue v;
  v.type = GgufType::ARRAY;
  const uint32_t et = r.read<uint32_t>(what + " (array element type)");
  if (et > uint32_t(GgufType::FLOAT64)) r.error(fmt::format("{}: unknown array element type {}", what, et));
  v.elem_type = GgufType(et);
  const uint64_t count = r.read<uint64_t>(what + " (array length)");
  // Each element takes at least one byte (strings and arrays at least 8-12), so a
  // count larger than the bytes left is a lie; check before reserving memory.
  const uint64_t min_elem = v.elem_type == GgufType::STRING ? 8 : v.elem_type == GgufType::ARRAY ? 12 : scalar_size(v.elem_type);
  if (count > r.remaining() / min_elem)
    r.error(fmt::format("{}: array of {} elements does not fit in the {} bytes left", what, count, r.remaining()));
  v.count = count;
  if (v.elem_type != GgufType::STRING && v.elem_type != GgufType::ARRAY) {
    r.need(count * min_elem, what);
    v.raw = r.here();
    r.skip(size_t(count * min_elem));
    if (v.elem_type == GgufType::BOOL)
      for (uint64_t k = 0; k < count; ++k)
        if (v.raw[k] > 1) r.error(fmt::format("{}: bool element {} is neither 0 nor 1", what, k));
    return v;
  }
  v.items.reserve(size_t(count));
  for (uint64_t k = 0; k < count; ++k) v.items.push_back(read_value(r, v.elem_type, what, depth + 1));
  return v;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                "bool", "string", "array", "uint64", "int64", "float64"};
  const auto k = uint32_t(t);
  return k < std::size(names) ? names[k] : "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
      return true;
    default: return false;
  }
}

std::string GgufValue::to_string(size_t max_items) const {
  switch (type) {
    case GgufType::STRING: {
      std::string s(str.substr(0, 200));
      for (char& c : s) if (c == '\n') c = ' ';
      return "\"" + s + (str.size() > 200 ? "...\"" : "\"");
    }
    case GgufType::BOOL: return u ? "true" : "false";
    case GgufType::FLOAT32: case GgufType::FLOAT64: return fmt::format("{:g}", f);
    case GgufType::ARRAY: {
      std::string s = fmt::format("[{} x {}: ", size(), gguf_type_name(elem_type));
      for (size_t k = 0; k < size() && k < max_items; ++k) {
        s += k ? ", " : "";
        if (!items.empty()) s += items[k].to_string(max_items);
        else if (elem_type == GgufType::FLOAT32 || elem_type == GgufType::FLOAT64) s += fmt::format("{:g}", number_at(k));
        else s += std::to_string(int_at(k));
      }
      return s + (size() > max_items ? ", ...]" : "]");
    }
    case GgufType::INT8: case GgufType::INT16: case GgufType::INT32: case GgufType::INT64:
      return std::to_string(i);
    default: return std::to_string(u);
  }
}

namespace {
template <typename T>
T load_at(const uint8_t* raw, size_t k) {
  T v;
  std::memcpy(&v, raw + k * sizeof(T), sizeof(T));
  return v;
}
}  // namespace

int64_t GgufValue::int_at(size_t k) const {
  if (type != GgufType::ARRAY || k >= count) fail("metadata array index {} out of range ({} elements)", k, count);
  switch (elem_type) {
    case GgufType::UINT8: case GgufType::BOOL: return raw[k];
    case GgufType::INT8: return int8_t(raw[k]);
    case GgufType::UINT16: return load_at<uint16_t>(raw, k);
    case GgufType::INT16: return load_at<int16_t>(raw, k);
    case GgufType::UINT32: return load_at<uint32_t>(raw, k);
    case GgufType::INT32: return load_at<int32_t>(raw, k);
    case GgufType::UINT64: return int64_t(load_at<uint64_t>(raw, k));
    case GgufType::INT64: return load_at<int64_t>(raw, k);
    default: fail("metadata array of {} read as integers", gguf_type_name(elem_type));
  }
}

double GgufValue::number_at(size_t k) const {
  if (type == GgufType::ARRAY && k < count && elem_type == GgufType::FLOAT32) return load_at<float>(raw, k);
  if (type == GgufType::ARRAY && k < count && elem_type == GgufType::FLOAT64) return load_at<double>(raw, k);
  return double(int_at(k));
}

std::string_view GgufValue::string_at(size_t k) const {
  if (type != GgufType::ARRAY || elem_type != GgufType::STRING) fail("metadata value read as an array of strings is a {}", gguf_type_name(type == GgufType::ARRAY ? elem_type : type));
  if (k >= items.size()) fail("metadata array index {} out of range ({} elements)", k, items.size());
  return items[k].str;
}

std::string GgufTensor::shape_string() const {
  std::string s;
  for (size_t k = 0; k < dims.size(); ++k) s += (k ? "x" : "") + std::to_string(dims[k]);
  return s;
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> g(new GgufFile());
  g->map_ = std::make_unique<MappedFile>(path);
  Reader r(g->map_->data(), g->map_->size(), g->map_->path());

  r.need(4, "magic");
  if (std::memcmp(g->map_->data(), "GGUF", 4) != 0) r.error("not a GGUF file (bad magic; expected \"GGUF\")");
  r.read<uint32_t>("magic");
  g->version_ = r.read<uint32_t>("version");
  if (g->version_ == 1) r.error("GGUF version 1 is not supported (convert the file with a current tool)");
  if (g->version_ != 2 && g->version_ != 3) r.error(fmt::format("unsupported GGUF version {} (supported: 2, 3)", g->version_));
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least 8+4+8+4+8.
  if (n_kv > r.remaining() / 13) r.error(fmt::format("metadata count {} is larger than the file could hold", n_kv));
  if (n_tensors > r.remaining() / 32) r.error(fmt::format("tensor count {} is larger than the file could hold", n_tensors));

  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where = fmt::format("metadata entry {}", k);
    const std::string key(r.read_string(where + " key"));
    if (key.empty()) r.error(where + ": empty key");
    const uint32_t t = r.read<uint32_t>("metadata key " + key + " (type)");
    if (t > uint32_t(GgufType::FLOAT64)) r.error(fmt::format("metadata key {}: unknown value type {}", key, t));
    GgufValue v = read_value(r, GgufType(t), "metadata key " + key, 0);
    if (g->kv_index_.count(key)) r.error(fmt::format("metadata key {} appears twice", key));
    g->kv_index_.emplace(key, g->kv_.size());
    g->kv_.emplace_back(key, std::move(v));
  }

  if (const GgufValue* a = g->find("general.alignment")) {
    if (a->type != GgufType::UINT32 || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > (1u << 20))
      r.error(fmt::format("metadata key general.alignment: expected a power of two (uint32), got {} ({})",
                          a->to_string(), gguf_type_name(a->type)));
    g->alignment_ = uint32_t(a->u);
  }

  g->tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = std::string(r.read_string(fmt::format("tensor info {} name", k)));
    const std::string where = "tensor " + t.name;
    if (g->tensor_index_.count(t.name)) r.error(where + ": name appears twice");
    const uint32_t n_dims = r.read<uint32_t>(where + " (dimension count)");
    if (n_dims == 0 || n_dims > kMaxDims) r.error(fmt::format("{}: {} dimensions (expected 1 to {})", where, n_dims, kMaxDims));
    int64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.read<uint64_t>(where + " (dimension)");
      if (ne == 0 || ne > (uint64_t(1) << 40)) r.error(fmt::format("{}: dimension {} is {} (must be 1..2^40)", where, d, ne));
      if (__builtin_mul_overflow(n, int64_t(ne), &n) || n > (int64_t(1) << 50))
        r.error(fmt::format("{}: element count overflows", where));
      t.dims.push_back(int64_t(ne));
    }
    t.n_elements = n;
    const uint32_t type_id = r.read<uint32_t>(where + " (type)");
    const TypeTraits* tr = find_type_traits(type_id);
    if (tr && !is_gguf_type(tr->type)) tr = nullptr;
    if (!tr) r.error(fmt::format("{}: unsupported tensor type id {}", where, type_id));
    t.type = tr->type;
    if (t.dims[0] % tr->block_size != 0)
      r.error(fmt::format("{}: row length {} is not a multiple of the {} block size {}", where, t.dims[0], tr->name, tr->block_size));
    t.nbytes = size_t(n / tr->block_size) * tr->type_size;
    t.offset = r.read<uint64_t>(where + " (data offset)");
    if (t.offset % g->alignment_ != 0)
      r.error(fmt::format("{}: data offset {} is not aligned to {}", where, t.offset, g->alignment_));
    g->tensor_index_.emplace(t.name, g->tensors_.size());
    g->tensors_.push_back(std::move(t));
  }

  const size_t header_end = r.pos();
  g->data_offset_ = (header_end + g->alignment_ - 1) / g->alignment_ * g->alignment_;
  const size_t file_size = g->map_->size();
  if (g->data_offset_ > file_size && !g->tensors_.empty()) r.error("truncated file: tensor data section is missing");

  // Every tensor must lie inside the file, and no two may overlap.
  std::vector<const GgufTensor*> by_offset;
  for (GgufTensor& t : g->tensors_) {
    const uint64_t begin = uint64_t(g->data_offset_) + t.offset;
    if (t.offset > file_size || begin > file_size || t.nbytes > file_size - begin)
      r.error(fmt::format("tensor {}: data [{}, +{}) lies beyond the end of the file ({} bytes); the file is truncated or corrupt",
                          t.name, begin, t.nbytes, file_size));
    t.data = g->map_->data() + begin;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const GgufTensor* a = by_offset[k - 1];
    const GgufTensor* b = by_offset[k];
    if (a->offset + a->nbytes > b->offset)
      r.error(fmt::format("tensors {} and {} overlap in the data section", a->name, b->name));
  }
  return g;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::vector<const GgufTensor*> GgufFile::tensor_list() const {
  std::vector<const GgufTensor*> v;
  for (const GgufTensor& t : tensors_) v.push_back(&t);
  return v;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void wrong_type(const ModelSource& g, std::string_view key, const GgufValue& v, const char* want) {
  fail("{}: metadata key {} has type {}, expected {}", g.path(), key, gguf_type_name(v.type), want);
}
uint64_t as_uint(const ModelSource& g, std::string_view key, const GgufValue& v) {
  if (!v.is_integer()) wrong_type(g, key, v, "an integer");
  const bool is_signed = v.type == GgufType::INT8 || v.type == GgufType::INT16 || v.type == GgufType::INT32 || v.type == GgufType::INT64;
  if (is_signed && v.i < 0) fail("{}: metadata key {} is negative ({})", g.path(), key, v.i);
  return v.u;
}
double as_float(const ModelSource& g, std::string_view key, const GgufValue& v) {
  if (v.is_float()) return v.f;
  if (v.is_integer()) {
    const bool is_signed = v.type == GgufType::INT8 || v.type == GgufType::INT16 || v.type == GgufType::INT32 || v.type == GgufType::INT64;
    return is_signed ? double(v.i) : double(v.u);
  }
  wrong_type(g, key, v, "a number");
}
}  // namespace

#define JEVONS_REQUIRE_KEY(key)                                             \
  const GgufValue* v = find(key);                                           \
  if (!v) fail("{}: metadata key {} is missing", path(), key);

uint64_t ModelSource::get_uint(std::string_view key) const { JEVONS_REQUIRE_KEY(key); return as_uint(*this, key, *v); }
double ModelSource::get_float(std::string_view key) const { JEVONS_REQUIRE_KEY(key); return as_float(*this, key, *v); }
std::string ModelSource::get_string(std::string_view key) const {
  JEVONS_REQUIRE_KEY(key);
  if (v->type != GgufType::STRING) wrong_type(*this, key, *v, "string");
  return std::string(v->str);
}
bool ModelSource::get_bool(std::string_view key) const {
  JEVONS_REQUIRE_KEY(key);
  if (v->type != GgufType::BOOL) wrong_type(*this, key, *v, "bool");
  return v->u != 0;
}
const GgufValue& ModelSource::get_array(std::string_view key) const {
  JEVONS_REQUIRE_KEY(key);
  if (v->type != GgufType::ARRAY) wrong_type(*this, key, *v, "array");
  return *v;
}
#undef JEVONS_REQUIRE_KEY

uint64_t ModelSource::get_uint_or(std::string_view key, uint64_t def) const { return find(key) ? get_uint(key) : def; }
double ModelSource::get_float_or(std::string_view key, double def) const { return find(key) ? get_float(key) : def; }
std::string ModelSource::get_string_or(std::string_view key, std::string_view def) const {
  return find(key) ? get_string(key) : std::string(def);
}
bool ModelSource::get_bool_or(std::string_view key, bool def) const { return find(key) ? get_bool(key) : def; }

}  // namespace jevons
