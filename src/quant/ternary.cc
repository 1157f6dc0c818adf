// TQ1_0 and TQ2_0: ternary weights (-1, 0, +1 times one fp16 scale per 256 elements).
// Dequantization is exact (ggml's order of operations); quantization follows ggml's
// reference scheme: d = max |x|, t = round(x / d) + 1. Layouts in blocks.h.
#include <cmath>
#include <cstring>

#include "core/float16.h"
#include "quant/blocks.h"
#include "quant/quants.h"

namespace jevons::quant {
namespace {

// The scale and the codes (0, 1, 2) of one 256-element block.
uint16_t ternary_codes(const float* x, uint8_t* t) {
  float amax = 0.0f;
  for (int e = 0; e < QK_K; ++e) amax = std::fmax(amax, std::fabs(x[e]));
  const float inv = amax != 0.0f ? 1.0f / amax : 0.0f;
  for (int e = 0; e < QK_K; ++e) t[e] = uint8_t(std::lround(x[e] * inv) + 1);
  return float_to_fp16(amax);
}

// Digits t[0..count) (t[0] most significant, count <= 5) as the fraction byte TQ1_0
// stores: ceil(256 * value / 243), with the missing low digits zero.
uint8_t pack_trits(const uint8_t* t, int count, int stride) {
  int v = 0;
  for (int n = 0; n < 5; ++n) v = v * 3 + (n < count ? t[n * stride] : 0);
  return uint8_t((v * 256 + 242) / 243);
}

}  // namespace

void dequantize_tq2_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockTQ2_0*>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const float d = fp16_to_float(blocks[b].d);
    for (int e = 0; e < QK_K; ++e) dst[e] = float(crumb(blocks[b].qs, e) - 1) * d;
  }
}

void quantize_tq2_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockTQ2_0*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    uint8_t t[QK_K];
    blocks[b].d = ternary_codes(src, t);
    std::memset(blocks[b].qs, 0, sizeof blocks[b].qs);
    for (int e = 0; e < QK_K; ++e) put_crumb(blocks[b].qs, e, t[e]);
  }
}

void dequantize_tq1_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockTQ1_0*>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const BlockTQ1_0& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    for (int n5 = 0; n5 < 5; ++n5) {
      for (int m = 0; m < 32; ++m) dst[32 * n5 + m] = float(tq1_trit(blk.qs[m], n5) - 1) * d;
      for (int m = 0; m < 16; ++m) dst[160 + 16 * n5 + m] = float(tq1_trit(blk.qs[32 + m], n5) - 1) * d;
    }
    for (int n4 = 0; n4 < 4; ++n4)
      for (int j = 0; j < 4; ++j) dst[240 + 4 * n4 + j] = float(tq1_trit(blk.qh[j], n4) - 1) * d;
  }
}

void quantize_tq1_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockTQ1_0*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    uint8_t t[QK_K];
    blocks[b].d = ternary_codes(src, t);
    for (int m = 0; m < 32; ++m) blocks[b].qs[m] = pack_trits(t + m, 5, 32);
    for (int m = 0; m < 16; ++m) blocks[b].qs[32 + m] = pack_trits(t + 160 + m, 5, 16);
    for (int j = 0; j < 4; ++j) blocks[b].qh[j] = pack_trits(t + 240 + j, 4, 4);
  }
}

}  // namespace jevons::quant
