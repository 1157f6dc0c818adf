#include "formats/gguf_writer.h"

#include "core/output_file.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace jevons {
namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t n = out.size();
  out.resize(n + sizeof(T));
  std::memcpy(out.data() + n, &v, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

template <typename T>
std::vector<uint8_t> scalar(GgufType t, T v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, uint32_t(t));
  put<T>(e, v);
  return e;
}

template <typename T>
std::vector<uint8_t> array(GgufType elem, const std::vector<T>& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, uint32_t(GgufType::ARRAY));
  put<uint32_t>(e, uint32_t(elem));
  put<uint64_t>(e, v.size());
  for (const T& x : v) put<T>(e, x);
  return e;
}

size_t scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    default: return 8;
  }
}

// Encodes a value without its type tag.
void encode_payload(std::vector<uint8_t>& e, const GgufValue& v) {
  switch (v.type) {
    case GgufType::STRING: put<uint64_t>(e, v.str.size()); e.insert(e.end(), v.str.begin(), v.str.end()); return;
    case GgufType::FLOAT32: put<float>(e, float(v.f)); return;
    case GgufType::FLOAT64: put<double>(e, v.f); return;
    case GgufType::ARRAY:
      put<uint32_t>(e, uint32_t(v.elem_type));
      put<uint64_t>(e, v.count);
      if (v.raw) {
        e.insert(e.end(), v.raw, v.raw + v.count * scalar_bytes(v.elem_type));
      } else {
        for (const GgufValue& item : v.items) {
          encode_payload(e, item);
        }
      }
      return;
    default: {  // integers and bool: little-endian, width of the type
      const uint64_t u = v.u;
      const size_t n = e.size(), w = scalar_bytes(v.type);
      e.resize(n + w);
      std::memcpy(e.data() + n, &u, w);
    }
  }
}

}  // namespace

void GgufWriter::set_value(const std::string& key, const GgufValue& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, uint32_t(v.type));
  encode_payload(e, v);
  set_raw(key, std::move(e));
}

void GgufWriter::remove(const std::string& key) {
  std::erase_if(kv_, [&](const Entry& e) { return e.key == key; });
}

void GgufWriter::set_raw(const std::string& key, std::vector<uint8_t> encoded) {
  for (Entry& e : kv_)
    if (e.key == key) {
      e.encoded = std::move(encoded);
      return;
    }
  kv_.push_back({key, std::move(encoded)});
}

void GgufWriter::set_u32(const std::string& k, uint32_t v) { set_raw(k, scalar(GgufType::UINT32, v)); }
void GgufWriter::set_i32(const std::string& k, int32_t v) { set_raw(k, scalar(GgufType::INT32, v)); }
void GgufWriter::set_u64(const std::string& k, uint64_t v) { set_raw(k, scalar(GgufType::UINT64, v)); }
void GgufWriter::set_f32(const std::string& k, float v) { set_raw(k, scalar(GgufType::FLOAT32, v)); }
void GgufWriter::set_bool(const std::string& k, bool v) { set_raw(k, scalar(GgufType::BOOL, uint8_t(v))); }
void GgufWriter::set_f32s(const std::string& k, const std::vector<float>& v) { set_raw(k, array(GgufType::FLOAT32, v)); }
void GgufWriter::set_i32s(const std::string& k, const std::vector<int32_t>& v) { set_raw(k, array(GgufType::INT32, v)); }

void GgufWriter::set_string(const std::string& k, const std::string& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, uint32_t(GgufType::STRING));
  put_string(e, v);
  set_raw(k, std::move(e));
}

void GgufWriter::set_strings(const std::string& k, const std::vector<std::string>& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, uint32_t(GgufType::ARRAY));
  put<uint32_t>(e, uint32_t(GgufType::STRING));
  put<uint64_t>(e, v.size());
  for (const std::string& s : v) put_string(e, s);
  set_raw(k, std::move(e));
}

namespace {
size_t tensor_bytes(const std::string& name, TensorType type, const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  const TypeTraits& tr = type_traits(type);
  if (dims.empty() || dims[0] % tr.block_size != 0)
    fail("tensor {}: row length {} is not a multiple of the {} block size {}", name, dims.empty() ? 0 : dims[0], tr.name, tr.block_size);
  return size_t(n / tr.block_size) * tr.type_size;
}
}  // namespace

void GgufWriter::add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& dims, std::vector<uint8_t> data) {
  const size_t nbytes = tensor_bytes(name, type, dims);
  if (data.size() != nbytes) fail("tensor {}: {} bytes given, {} expected", name, data.size(), nbytes);
  tensors_.push_back({name, type, dims, std::move(data), nbytes, nullptr});
}

void GgufWriter::add_tensor_generated(const std::string& name, TensorType type, const std::vector<int64_t>& dims,
                                      std::function<void(uint8_t*, size_t)> fill) {
  tensors_.push_back({name, type, dims, {}, tensor_bytes(name, type, dims), std::move(fill)});
}

void GgufWriter::add_tensor_f32(const std::string& name, TensorType type, const std::vector<int64_t>& dims,
                                const std::vector<float>& values) {
  const TypeTraits& tr = type_traits(type);
  std::vector<uint8_t> data(size_t(int64_t(values.size()) / tr.block_size) * tr.type_size);
  if (int64_t(values.size()) % tr.block_size != 0) fail("tensor {}: {} values do not fill whole {} blocks", name, values.size(), tr.name);
  tr.from_float(values.data(), data.data(), int64_t(values.size()));
  add_tensor(name, type, dims, std::move(data));
}

std::vector<uint8_t> GgufWriter::header(uint32_t alignment) const {
  std::vector<uint8_t> out;
  out.insert(out.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  const bool write_alignment = alignment != 32;
  put<uint64_t>(out, kv_.size() + (write_alignment ? 1 : 0));
  for (const Entry& e : kv_) {
    put_string(out, e.key);
    out.insert(out.end(), e.encoded.begin(), e.encoded.end());
  }
  if (write_alignment) {
    put_string(out, "general.alignment");
    put<uint32_t>(out, uint32_t(GgufType::UINT32));
    put<uint32_t>(out, alignment);
  }
  auto padded = [&](uint64_t n) { return (n + alignment - 1) / alignment * alignment; };
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, uint32_t(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(out, uint64_t(d));
    put<uint32_t>(out, uint32_t(t.type));
    put<uint64_t>(out, offset);
    offset = padded(offset + t.nbytes);
  }
  out.resize(padded(out.size()), 0);
  return out;
}

void GgufWriter::write_to(const std::function<void(const uint8_t*, size_t)>& sink, uint32_t alignment) const {
  const std::vector<uint8_t> head = header(alignment);
  sink(head.data(), head.size());
  std::vector<uint8_t> buffer;
  const std::vector<uint8_t> zeros(alignment, 0);
  for (const PendingTensor& t : tensors_) {
    const uint8_t* data = t.data.data();
    if (t.fill) {
      buffer.assign(t.nbytes, 0);
      t.fill(buffer.data(), t.nbytes);
      data = buffer.data();
    }
    sink(data, t.nbytes);
    if (const size_t pad = (alignment - t.nbytes % alignment) % alignment) sink(zeros.data(), pad);
  }
}

std::vector<uint8_t> GgufWriter::bytes(uint32_t alignment) const {
  std::vector<uint8_t> out;
  write_to([&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); }, alignment);
  return out;
}

void GgufWriter::write(const std::string& path, uint32_t alignment) const {
  OutputFile out(path);  // whole or absent
  write_to([&](const uint8_t* p, size_t n) { out.write(p, n); }, alignment);
  out.commit();
}

}  // namespace jevons
