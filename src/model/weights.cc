#include "model/weights.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "kernels/repack.h"

namespace jevons {
namespace {

std::string shape_of(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t k = 0; k < dims.size(); ++k) s += (k ? "x" : "") + std::to_string(dims[k]);
  return s;
}

void check_shape(const ModelSource& f, const GgufTensor& t, const std::vector<int64_t>& want) {
  if (t.dims != want)
    fail("{}: tensor {}: expected {}, file has {}", f.path(), t.name, shape_of(want), t.shape_string());
}

}  // namespace

Tensor WeightLoader::find_matrix(const std::string& name, int64_t cols, int64_t rows) const {
  const GgufTensor* t = file_.find_tensor(name);
  if (!t) return {};
  check_shape(file_, *t, rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{cols, rows});
  return Tensor{t->name, t->type, cols, rows, t->data, t->block_scale, t->scale_block, t->scale_cols};
}

Tensor WeightLoader::for_matmul(const Tensor& t) const {
  if (!repack_ || !t) return t;
  // A plain copy only where it replaces the file's pages (not bytes converted at load).
  Tensor out = repack_->repack(t, file_.can_release_pages(t.data, size_t(t.rows) * t.row_bytes()));
  // RSS holds one copy: the file's pages of rows now read from the arena are dropped.
  if (out.packed) file_.release_pages(out.data, size_t(out.packed_rows) * out.row_bytes());
  else if (out.data != t.data) file_.release_pages(t.data, size_t(t.rows) * t.row_bytes());
  return out;
}

Tensor WeightLoader::optional_matrix(const std::string& name, int64_t cols, int64_t rows) const {
  return for_matmul(find_matrix(name, cols, rows));
}

Tensor WeightLoader::table(const std::string& name, int64_t cols, int64_t rows) const {
  Tensor t = find_matrix(name, cols, rows);
  if (!t) fail("{}: tensor {} is missing (expected {}x{})", file_.path(), name, cols, rows);
  return t;
}

Tensor WeightLoader::matrix(const std::string& name, int64_t cols, int64_t rows) const {
  return for_matmul(table(name, cols, rows));
}

std::vector<Tensor> WeightLoader::stacked(const std::string& name, int64_t cols, int64_t rows, int64_t count) const {
  const GgufTensor* t = file_.find_tensor(name);
  if (!t) fail("{}: tensor {} is missing (expected {}x{}x{})", file_.path(), name, cols, rows, count);
  check_shape(file_, *t, {cols, rows, count});
  std::vector<Tensor> slices;
  const size_t slice_bytes = size_t(rows) * row_bytes(t->type, cols);
  if (t->block_scale) fail("{}: tensor {}: block-scaled FP8 is not supported for stacked tensors", file_.path(), name);
  for (int64_t k = 0; k < count; ++k)
    slices.push_back(
        for_matmul(Tensor{t->name + "[" + std::to_string(k) + "]", t->type, cols, rows, t->data + size_t(k) * slice_bytes}));
  return slices;
}

const float* WeightLoader::optional_vector(const std::string& name, int64_t n, std::deque<std::vector<float>>& owned) const {
  const GgufTensor* t = file_.find_tensor(name);
  if (!t) return nullptr;
  check_shape(file_, *t, {n});
  // F32 is used in place when aligned (always in GGUF; safetensors offsets need not be).
  if (t->type == TensorType::F32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0)
    return reinterpret_cast<const float*>(t->data);
  std::vector<float>& v = owned.emplace_back(static_cast<size_t>(n));
  type_traits(t->type).to_float(t->data, v.data(), n);
  return v.data();
}

const float* WeightLoader::vector(const std::string& name, int64_t n, std::deque<std::vector<float>>& owned) const {
  const float* p = optional_vector(name, n, owned);
  if (!p) fail("{}: tensor {} is missing (expected {} elements)", file_.path(), name, n);
  return p;
}

}  // namespace jevons
