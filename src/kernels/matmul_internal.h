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

// Bytes ahead of the current block that the kernels prefetch in each weight row when a
// matmul runs on `threads` threads (JEVONS_PREFETCH overrides; 0 disables). Measured
// with bench/ matvec from DRAM on the 2-core Zen VM:
//  - 2 threads: 1536 (Zen 3: 5-12% faster than 768; Zen 4: 1536 and 3072 alike, 1.2 to
//    2 times as fast as none, 6144 slower);
//  - 1 thread on CPUs with AVX-512: none. On Zen 4 its hardware prefetchers keep up
//    alone, and the prefetches cost 1-50% in all 24 pairs of runs (q4_0, q8_0, q4_K,
//    bf16, three shapes, two rounds). On AVX2 CPUs (Zen 3, measured against 768, not
//    against none) 1536.
size_t prefetch_distance(int threads);

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
