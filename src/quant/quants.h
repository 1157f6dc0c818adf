// Per-type reference conversions behind the traits table (types.cc).
// Each function converts n elements; n must be a multiple of the type's block size.
// Block layouts and formulas are documented in blocks.h.
#pragma once
#include <cstdint>

namespace jevons::quant {

// to_float: exact, matches ggml's dequantize_row_* bit for bit.
void dequantize_f32(const void* src, float* dst, int64_t n);
void dequantize_f16(const void* src, float* dst, int64_t n);
void dequantize_bf16(const void* src, float* dst, int64_t n);
void dequantize_q4_0(const void* src, float* dst, int64_t n);
void dequantize_q4_1(const void* src, float* dst, int64_t n);
void dequantize_q5_0(const void* src, float* dst, int64_t n);
void dequantize_q5_1(const void* src, float* dst, int64_t n);
void dequantize_q8_0(const void* src, float* dst, int64_t n);
void dequantize_q8_1(const void* src, float* dst, int64_t n);
void dequantize_q2_k(const void* src, float* dst, int64_t n);
void dequantize_q3_k(const void* src, float* dst, int64_t n);
void dequantize_q4_k(const void* src, float* dst, int64_t n);
void dequantize_q5_k(const void* src, float* dst, int64_t n);
void dequantize_q6_k(const void* src, float* dst, int64_t n);
void dequantize_q8_k(const void* src, float* dst, int64_t n);

// from_float: deterministic reference quantizers. The legacy 32-element types and
// Q8_K follow ggml's quantize_row_*_ref scheme; the 2..6-bit K-quants use jevons' own
// scale search (valid blocks, small error, not bit-identical to ggml).
void quantize_f32(const float* src, void* dst, int64_t n);
void quantize_f16(const float* src, void* dst, int64_t n);
void quantize_bf16(const float* src, void* dst, int64_t n);
void quantize_q4_0(const float* src, void* dst, int64_t n);
void quantize_q4_1(const float* src, void* dst, int64_t n);
void quantize_q5_0(const float* src, void* dst, int64_t n);
void quantize_q5_1(const float* src, void* dst, int64_t n);
void quantize_q8_0(const float* src, void* dst, int64_t n);
void quantize_q8_1(const float* src, void* dst, int64_t n);
void quantize_q2_k(const float* src, void* dst, int64_t n);
void quantize_q3_k(const float* src, void* dst, int64_t n);
void quantize_q4_k(const float* src, void* dst, int64_t n);
void quantize_q5_k(const float* src, void* dst, int64_t n);
void quantize_q6_k(const float* src, void* dst, int64_t n);
void quantize_q8_k(const float* src, void* dst, int64_t n);

// Table-level 4-bit types (table_quants.cc) and ternary types (ternary.cc): exact
// dequantization; jevons' own scale search for IQ4_NL / IQ4_XS, the OCP scheme for MXFP4,
// ggml's reference scheme for TQ1_0 / TQ2_0.
void dequantize_iq4_nl(const void* src, float* dst, int64_t n);
void dequantize_iq4_xs(const void* src, float* dst, int64_t n);
void dequantize_mxfp4(const void* src, float* dst, int64_t n);
void dequantize_tq1_0(const void* src, float* dst, int64_t n);
void dequantize_tq2_0(const void* src, float* dst, int64_t n);
void quantize_iq4_nl(const float* src, void* dst, int64_t n);
void quantize_iq4_xs(const float* src, void* dst, int64_t n);
void quantize_mxfp4(const float* src, void* dst, int64_t n);
void quantize_tq1_0(const float* src, void* dst, int64_t n);
void quantize_tq2_0(const float* src, void* dst, int64_t n);

// FP8 E4M3 (fp8.cc): unscaled element conversion; block scales are applied by the caller.
void dequantize_f8_e4m3(const void* src, float* dst, int64_t n);
void quantize_f8_e4m3(const float* src, void* dst, int64_t n);

}  // namespace jevons::quant

namespace jevons {
// E4M3 (FP8, 1-4-3, bias 7, no infinities; 0x7f/0xff are NaN) to float.
float fp8_e4m3_to_float(uint8_t v);
}  // namespace jevons
