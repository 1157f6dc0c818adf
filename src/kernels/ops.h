// The math primitives a forward pass is written in. This is the reference
// implementation: plain scalar code, exact dequantization, double accumulation.
// It is the oracle every fast kernel is tested against.
#pragma once
#include <cstdint>

#include "quant/tensor.h"
#include "kernels/matmul.h"  // matmul(): the fast, dispatching version of matmul_reference
#include "kernels/rope.h"

namespace jevons {

class ThreadPool;

// Row r of w as floats (exact dequantization). out has w.cols elements.
void dequantize_row(const Tensor& w, int64_t r, float* out);

// y[t, r] = sum_c w[r, c] * x[t, c] for every token t < n_tokens.
// x is [n_tokens, w.cols], y is [n_tokens, w.rows], both row-major. pool may be null.
// The exact reference (weights dequantized exactly, f32 activations, double sums):
// the oracle of the fast matmul() in kernels/matmul.h.
void matmul_reference(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool);

// out = x / sqrt(mean(x^2) + eps) * weight   (weight may be null: no scale)
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);

// Rotates the first rope.n_rot dims of each of n_heads heads (head_dim apart) for
// position pos. freq_factors (n_rot/2 values, llama3-style scaling) may be null.
void rope(float* x, int n_heads, int head_dim, int64_t pos, const RopeConfig& rope, const float* freq_factors);

// In-place softmax over n values.
void softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) * up[i]  (SwiGLU); the model calls silu_mul() of kernels/matmul.h.
void silu_mul_reference(float* gate, const float* up, int64_t n);

// One query head attending over n_kv cached positions: key j is k_rows[j] + k_offset,
// value j is v_rows[j] + v_offset (rows may live in different KV blocks).
// out[d] = sum_j softmax_j(scale * q.k_j) * v_j[d]. The reference (double dot products,
// two passes); the model calls attention_head() of kernels/matmul.h.
void attention_head_reference(const float* q, const float* const* k_rows, int64_t k_offset, const float* const* v_rows,
                    int64_t v_offset, int64_t n_kv, int head_dim_k, int head_dim_v, float scale, float* out);

}  // namespace jevons
