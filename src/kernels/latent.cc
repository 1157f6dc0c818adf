#include "kernels/latent.h"

#include <vector>

#include "kernels/ops.h"

namespace jevons {

void matvec_transposed(const Tensor& w, const float* x, float* y) {
  std::vector<double> acc(static_cast<size_t>(w.cols), 0.0);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t c = 0; c < w.cols; ++c) acc[size_t(c)] += double(x[r]) * double(row[size_t(c)]);
  }
  for (int64_t c = 0; c < w.cols; ++c) y[c] = float(acc[size_t(c)]);
}

}  // namespace jevons
