// The fast matmul: SIMD kernels (Google Highway, one source compiled for several
// instruction sets and chosen at run time) behind the same signature as the
// reference matmul_reference() in ops.h, which stays the oracle.
//
// What the fast path computes, per weight type:
//   F32, F16   f32 activations, f32 products and sums (F16 widened per vector);
//              differs from the reference only by f32 summation order (~1e-6 rel).
//   BF16       activations rounded to bf16 (round to nearest even), f32 products
//              and sums: what llama.cpp's CPU backend does for bf16 weights. With
//              AVX512-BF16 (Zen 4, Sapphire Rapids) repacked rows go through
//              vdpbf16ps: the same products, added two at a time, denormals flushed.
//              F16 matrices repacked rounded to BF16 (Tensor::packed_as_bf16, the
//              user's --f16-as-bf16) take this path for their repacked rows.
//   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
//              activations quantized once per matmul to Q8_0 blocks exactly as
//              llama.cpp's x86 quantize_row_q8_0 does (d = amax/127 stored as
//              fp16, q = round_half_even(x * 127/amax)), integer dot products
//              per 32-block, then scaled by d_w * d_x in f32.
//   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
//              activations quantized to Q8_K blocks (ggml's quantize_row_q8_K_ref:
//              256 elements, f32 scale), integer dot products per sub-block.
//   IQ4_NL, MXFP4
//              as Q8_0 / Q4_0 (ActQ8 activations), the nibbles mapped to their levels.
//   IQ4_XS, TQ1_0, TQ2_0
//              as the K-quants (ActQ8K activations), weights decoded to signed levels
//              (matmul_levels-inl.h).
//   others     the reference path.
//
// Repacked weights (Tensor::packed, x86 AVX2 / AVX-512, Q4_0, IQ4_NL, MXFP4, IQ4_XS, Q5_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16, F16): 8 rows are
// interleaved so that one vector holds the same code bytes of 8 rows; a tile computes
// 8 rows x a few tokens with broadcast activations and no horizontal sums. Same
// arithmetic as above (the same quantized activations, exact integer dot products).
//
// Decode (n_tokens == 1) streams every weight row once, rows split across the pool
// in contiguous chunks; prefill (n_tokens > 1) works in register tiles of a few
// rows x a few tokens so that each weight block is decoded once per tile.
#pragma once
#include <cstdint>
#include <vector>

#include "quant/tensor.h"

namespace jevons {

class ThreadPool;

enum class KernelMode {
  kReference,  // every matmul goes through matmul_reference (exact, double sums)
  kFast,       // SIMD kernels where the weight type has one (default)
};

// Process-wide switch, read at every matmul call. The initial value is kFast unless
// the environment variable JEVONS_KERNELS=reference is set. Not meant to be flipped
// while another thread is inside a forward pass.
void set_kernel_mode(KernelMode mode);
KernelMode kernel_mode();

// Sets a mode for the lifetime of the object and restores the previous one.
class ScopedKernelMode {
 public:
  explicit ScopedKernelMode(KernelMode mode) : saved_(kernel_mode()) { set_kernel_mode(mode); }
  ~ScopedKernelMode() { set_kernel_mode(saved_); }
  ScopedKernelMode(const ScopedKernelMode&) = delete;
  ScopedKernelMode& operator=(const ScopedKernelMode&) = delete;

 private:
  KernelMode saved_;
};

// y[t, r] = sum_c w[r, c] * x[t, c] for every token t < n_tokens; x is
// [n_tokens, w.cols], y is [n_tokens, w.rows], row-major. pool may be null.
// Dispatches on w.type and on the kernel mode (see above).
void matmul(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool);

// n_heads query heads that share their keys and values (a GQA group, or MLA's heads
// over the latent cache), each as attention_head_reference() in ops.h: head h's query
// at q + h * head_dim_k, its output at out + h * head_dim_v. kFast: a SIMD kernel with an
// online softmax that reads each key and value row once for the whole group (f32 sums);
// kReference: the reference, head by head.
// The rows hold elements of kv_type (F32, F16 or BF16, as the KV cache stores them);
// offsets count elements. F16 and BF16 rows are widened chunk by chunk as they are read.
void attention_heads(const float* q, int n_heads, TensorType kv_type, const void* const* k_rows, int64_t k_offset,
                     const void* const* v_rows, int64_t v_offset, int64_t n_kv, int head_dim_k, int head_dim_v,
                     float scale, float* out);

// The same for a causal block of n_queries consecutive tokens of one sequence: query i's
// heads at q + i * q_stride (head h at + h * head_dim_k) attend to keys [0, n_kv + i);
// its outputs go to out + i * out_stride. The block shares each chunk of keys and values
// (prefill reads and packs them once per block, not once per token), and every (query,
// head) is bit-identical to attention_heads() of that query alone.
void attention_causal_block(const float* q, int64_t q_stride, int n_queries, int n_heads, TensorType kv_type,
                            const void* const* k_rows, int64_t k_offset, const void* const* v_rows, int64_t v_offset,
                            int64_t n_kv, int head_dim_k, int head_dim_v, float scale, float* out, int64_t out_stride);

// gate[i] = silu(gate[i]) * up[i] (SwiGLU). kFast: SIMD (Highway's Exp, within a few
// ulp); kReference: silu_mul_reference() of ops.h.
void silu_mul(float* gate, const float* up, int64_t n);

// Whether matmul has a SIMD path for this type on this CPU (else it uses the reference).
bool matmul_has_fast_path(TensorType type);

// Whether the fast matmul on this CPU reads the x8 repacked layout of this type
// (kernels/repack.h) when a tensor carries one; it reads `data` otherwise.
bool matmul_reads_x8(TensorType type);

// Whether matmuls on (repacked) BF16 weights run the BF16 dot product (vdpbf16ps):
// AVX-512 kernels on a CPU with AVX512-BF16, unless JEVONS_NO_BF16_DOT is set.
bool matmul_uses_bf16_dot();

// Name of the instruction set the kernels run with, e.g. "AVX2" or "AVX3+VNNI".
const char* kernel_target_name();

// For tests: the Highway targets the kernels were compiled for that this CPU can
// run, best first, and a way to pin dispatch to one of them (0 restores the default).
std::vector<int64_t> kernel_targets();
void force_kernel_target(int64_t target);

}  // namespace jevons
