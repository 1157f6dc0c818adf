// Target-independent pieces shared by matmul.cc and the per-target kernels in
// matmul-inl.h: the layouts of the quantized activations. Not a public header.
#pragma once
#include <cstddef>
#include <cstdint>

namespace jevons::kernels {

// One 32-element block of activations quantized like ggml's Q8_0 / Q8_1 (x86
// quantize_row_q8_0: d = amax / 127 rounded to fp16, q = round_half_even(x * 127 /
// amax)), with the extras the integer dot products need.
struct ActQ8 {
  int8_t qs[32];
  float d;      // fp16(amax / 127) as float: exactly the scale ggml's dot products use
  int32_t sum;  // sum of qs (offset correction for unsigned weight codes)
  float s;      // fp16(d_unrounded * sum) as float: ggml's Q8_1 s (for Q4_1 / Q5_1 mins)
  int32_t offset_sum;  // -code_offset * sum, filled for the kernels of repacked weights
};
static_assert(sizeof(ActQ8) == 48);

// One 256-element block quantized like ggml's Q8_K (quantize_row_q8_K_ref: scale
// -127 / (signed max), f32 d), with group sums of 16 and of 32.
struct ActQ8K {
  int8_t qs[256];
  float d;
  int16_t bsums[16];    // sum of qs over each 16 elements
  int16_t bsums32[8];   // sum of qs over each 32 elements
  int32_t pad[3];
};
static_assert(sizeof(ActQ8K) == 320);

// Bytes ahead of the current block that the kernels prefetch in each weight row
// (JEVONS_PREFETCH overrides; 0 disables). 1536: on the 2-core Zen VM, bench/ matvec
// from DRAM, best of 4 alternating runs, was 5-12% faster than at 768 for every
// repacked type at 1 thread and equal or faster at 2 (2048 about equal). A variable set at start-up, not a function
// with a lazily initialized static: a possible call inside a kernel loop makes the
// compiler keep the vector registers in memory around it.
extern const size_t prefetch_distance_bytes;
inline size_t prefetch_distance() { return prefetch_distance_bytes; }

// A per-thread scratch buffer of at least `bytes` bytes (64-byte aligned), reused
// across calls: the activation copies of one matmul live here.
uint8_t* scratch(size_t bytes);

}  // namespace jevons::kernels

namespace jevons::kernels {

// The fast activation quantizers, exposed for tests (false if the CPU's target has none).
bool quantize_act_q8(const float* x, int64_t n, ActQ8* out);
bool quantize_act_q8k(const float* x, int64_t n, ActQ8K* out);

// Tests: force the VNNI code paths on (1) or off (0), or detect the CPU (-1, default).
// On AVX2 targets "on" runs an exact emulation of vpdpbusd, so the VNNI-specific
// logic (offset-128 Q8_0, scaled K-quant sums) is tested without AVX-512 hardware.
void set_vnni_override(int mode);

}  // namespace jevons::kernels

namespace jevons::kernels {

// Tests: BF16 weights through the FMA form of the kernel even where the CPU has
// AVX512-BF16 (off = true), to compare it with vdpbf16ps; false restores the default.
void set_bf16_dot_off(bool off);

}  // namespace jevons::kernels
