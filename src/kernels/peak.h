// Compute ceilings of this CPU, measured rather than taken from a data sheet: prefill
// is arithmetic-bound, so `jevons bench` reports its rate as a percentage of the peak
// of the instruction sequence the matching kernel uses.
#pragma once
#include "quant/tensor.h"

namespace jevons {

enum class PeakKind {
  kInt8Dot,  // u8 x i8 products summed in pairs: vpdpbusd with AVX512-VNNI, else
             // vpmaddubsw + vpaddw (int16 sums), the kernels of the integer-quantized types
  kF32Fma,   // f32 fused multiply-add: F32 and F16 weights, and BF16 on CPUs without
             // AVX512-BF16 (the kernel then widens bf16 to f32)
  kBf16Dot,  // vdpbf16ps (AVX512-BF16): pairs of bf16 products added to f32, BF16 weights
};

// The peak a matmul on weights of this type is measured against.
PeakKind peak_kind_for(TensorType weights);

// e.g. "int8 dot (AVX2)", "f32 FMA (AVX3)" or "bf16 dot (AVX3+VNNI+BF16)".
std::string peak_kind_name(PeakKind kind);

// GOP/s (1e9 operations per second; a multiply-add counts 2) with n_threads threads
// each running the sequence on independent register chains for about `seconds`.
// Best of five passes (on a shared VM a slow spell can last several). 0 where the CPU
// has no SIMD kernels (kBf16Dot: no AVX512-BF16).
double measure_compute_peak_gops(PeakKind kind, int n_threads, double seconds = 0.2);

}  // namespace jevons
