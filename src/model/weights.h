// Looks up a model's tensors by name and checks their shapes, so a bad file fails
// with "tensor blk.3.attn_q.weight: expected 4096x4096, file has 4096x1024" at
// load instead of misbehaving later. Matrices are views into the file's map.
#pragma once
#include <deque>
#include <string>
#include <vector>

#include "quant/tensor.h"

namespace jevons {

class ModelSource;
class RepackArena;

class WeightLoader {
 public:
  // With an arena, the matrices for matmul are also repacked into it where the CPU's
  // kernels read a faster layout (kernels/repack.h).
  explicit WeightLoader(const ModelSource& source, RepackArena* repack = nullptr) : file_(source), repack_(repack) {}

  // A [rows x cols] matrix (GGUF dims {cols, rows}) that will be multiplied with;
  // throws if missing or mis-shaped.
  Tensor matrix(const std::string& name, int64_t cols, int64_t rows) const;
  // Same for a matrix only read row by row (the token embedding): never repacked.
  Tensor table(const std::string& name, int64_t cols, int64_t rows) const;
  // t repacked for matmul (e.g. a tied output that is also the embedding table).
  Tensor for_matmul(const Tensor& t) const;
  // A stack of `count` [rows x cols] matrices (GGUF dims {cols, rows, count}), e.g.
  // the routed experts of a MoE layer, returned one Tensor per slice.
  std::vector<Tensor> stacked(const std::string& name, int64_t cols, int64_t rows, int64_t count) const;
  // Same, or an empty Tensor when absent.
  Tensor optional_matrix(const std::string& name, int64_t cols, int64_t rows) const;
  // A vector of n floats (norm weights, biases). F32 tensors are used in place;
  // other types are converted once into storage owned by `owned`.
  const float* vector(const std::string& name, int64_t n, std::deque<std::vector<float>>& owned) const;
  const float* optional_vector(const std::string& name, int64_t n, std::deque<std::vector<float>>& owned) const;

  const ModelSource& source() const { return file_; }

 private:
  Tensor find_matrix(const std::string& name, int64_t cols, int64_t rows) const;

  const ModelSource& file_;
  RepackArena* repack_;
};

}  // namespace jevons
