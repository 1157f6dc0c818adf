// Ops that MLA's absorbed attention needs beyond ops.h.
#pragma once
#include "quant/tensor.h"

namespace jevons {

// y[c] = sum_r x[r] * w[r, c]: multiply by the transpose without materializing it.
// x has w.rows elements, y has w.cols. Used to fold kv_b's key half into the query
// when a checkpoint stores it as [nope x kv_lora] (HF kv_b_proj, older GGUFs).
void matvec_transposed(const Tensor& w, const float* x, float* y);

}  // namespace jevons
