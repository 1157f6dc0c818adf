// IQ4_NL, IQ4_XS and MXFP4: 4-bit codes that index a table of 16 levels (blocks.h).
// Dequantization is exact (ggml's dequantize_row_* order of operations); quantization is
// jevons' own: a small search for the block scale, then the nearest level per element.
#include <cmath>
#include <cstring>

#include "core/float16.h"
#include "quant/blocks.h"
#include "quant/quants.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace jevons::quant {
namespace {

// Index of the level nearest to v (the first on ties).
int nearest_level(const int8_t* levels, float v) {
  int best = 0;
  float best_err = std::fabs(v - float(levels[0]));
  for (int i = 1; i < 16; ++i) {
    const float err = std::fabs(v - float(levels[i]));
    if (err < best_err) {
      best_err = err;
      best = i;
    }
  }
  return best;
}

// IQ4 levels are sorted: the nearest one is the number of midpoints below v (v on a
// midpoint takes the lower level, as nearest_level's first-on-ties does).
struct Iq4Midpoints {
  float m[15];
  constexpr Iq4Midpoints() : m{} {
    for (int i = 0; i < 15; ++i) m[i] = 0.5f * float(kIq4nlLevels[i] + kIq4nlLevels[i + 1]);
  }
};
constexpr Iq4Midpoints kIq4Midpoints{};

inline int nearest_iq4(float v) {
  int idx = 0;
  for (int i = 0; i < 15; ++i) idx += v > kIq4Midpoints.m[i];
  return idx;
}

// Best scale d for x[0..n) over the IQ4_NL levels: the extreme value is tried against
// levels near -127 (its sign decides which end), and for each try the least-squares d of
// the codes it picks; the try with the smallest squared error wins. 0 for a zero block.
float fit_iq4(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax == 0.0f) return 0.0f;
  float best_d = 0.0f, best_score = -1.0f;
  for (int t = -6; t <= 6; ++t) {
    const float inv = (float(kIq4nlLevels[0]) + float(t)) / max;  // maps max near level 0
    double sum_xl = 0.0, sum_ll = 0.0;
    for (int i = 0; i < n; ++i) {
      const double l = kIq4nlLevels[nearest_iq4(x[i] * inv)];
      sum_xl += double(x[i]) * l;
      sum_ll += l * l;
    }
    // With the least-squares d = sum_xl / sum_ll, the error falls by sum_xl^2 / sum_ll.
    const float score = float(sum_xl * sum_xl / sum_ll);
    if (score > best_score) {
      best_score = score;
      best_d = float(sum_xl / sum_ll);
    }
  }
  return best_d;
}

}  // namespace

// ---------------------------------------------------------------- IQ4_NL

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockIQ4_NL*>(src);
  for (int64_t b = 0; b < n / QK4_NL; ++b, dst += QK4_NL) {
    const float d = fp16_to_float(blocks[b].d);
    for (int e = 0; e < QK4_NL; ++e) dst[e] = d * float(kIq4nlLevels[legacy_nibble(blocks[b].qs, e)]);
  }
}

void quantize_iq4_nl(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockIQ4_NL*>(dst);
  for (int64_t b = 0; b < n / QK4_NL; ++b, src += QK4_NL) {
    blocks[b].d = float_to_fp16(fit_iq4(src, QK4_NL));
    // The codes against the scale the decoder will see (d rounded to fp16); level 1 (code 8)
    // when it is 0.
    const float d = fp16_to_float(blocks[b].d);
    std::memset(blocks[b].qs, 0, sizeof blocks[b].qs);
    for (int e = 0; e < QK4_NL; ++e) put_legacy_nibble(blocks[b].qs, e, d != 0.0f ? nearest_iq4(src[e] / d) : 8);
  }
}

// ---------------------------------------------------------------- IQ4_XS

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockIQ4_XS*>(src);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockIQ4_XS& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    for (int s = 0; s < QK_K / 32; ++s, dst += 32) {
      const float dl = d * float(iq4_xs_scale(blk, s) - 32);
      for (int e = 0; e < 32; ++e) dst[e] = dl * float(kIq4nlLevels[legacy_nibble(blk.qs + 16 * s, e)]);
    }
  }
}

void quantize_iq4_xs(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockIQ4_XS*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockIQ4_XS& blk = blocks[b];
    std::memset(&blk, 0, sizeof blk);
    // 1. Each sub-block's own (signed) scale; 2. one fp16 super-scale d such that every
    // sub-block scale is d times an integer in -32..31 (the largest maps to -32).
    float scale[8], max_scale = 0.0f;
    for (int s = 0; s < 8; ++s) {
      scale[s] = fit_iq4(src + 32 * s, 32);
      if (std::fabs(scale[s]) > std::fabs(max_scale)) max_scale = scale[s];
    }
    blk.d = float_to_fp16(max_scale / -32.0f);
    const float d = fp16_to_float(blk.d);
    for (int s = 0; s < 8; ++s) {
      int l = d != 0.0f ? int(std::lrintf(scale[s] / d)) : 0;
      l = l < -32 ? -32 : l > 31 ? 31 : l;
      const int ls = l + 32;
      blk.scales_l[s / 2] |= uint8_t((ls & 0xF) << (4 * (s % 2)));
      blk.scales_h = uint16_t(blk.scales_h | ((ls >> 4) << (2 * s)));
      // 3. The codes against the sub-block scale the decoder will see.
      const float dl = d * float(l);
      for (int e = 0; e < 32; ++e)
        put_legacy_nibble(blk.qs + 16 * s, e, dl != 0.0f ? nearest_iq4(src[32 * s + e] / dl) : 8);
    }
  }
}

// ---------------------------------------------------------------- MXFP4

void dequantize_mxfp4(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockMXFP4*>(src);
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, dst += QK_MXFP4) {
    const float d = e8m0_to_float_half(blocks[b].e);
    for (int e = 0; e < QK_MXFP4; ++e) dst[e] = float(kMxfp4Levels[legacy_nibble(blocks[b].qs, e)]) * d;
  }
}

// The OCP scheme (as ggml's reference): the shared exponent is floor(log2(amax)) - 2 (the
// largest E2M1 magnitude is 6 = 1.5 * 2^2), each element the nearest level, clamped at
// +-6 times the scale.
void quantize_mxfp4(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockMXFP4*>(dst);
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, src += QK_MXFP4) {
    float amax = 0.0f;
    for (int e = 0; e < QK_MXFP4; ++e) amax = std::fmax(amax, std::fabs(src[e]));
    int exp = amax > 0.0f ? int(std::floor(std::log2(amax))) - 2 + 127 : 0;
    exp = exp < 0 ? 0 : exp > 254 ? 254 : exp;
    blocks[b].e = uint8_t(exp);
    std::memset(blocks[b].qs, 0, sizeof blocks[b].qs);
    if (amax == 0.0f) continue;  // code 0 is +0 (and 1 / 2^-128 would overflow)
    const float inv = 1.0f / e8m0_to_float_half(uint8_t(exp));
    for (int e = 0; e < QK_MXFP4; ++e) put_legacy_nibble(blocks[b].qs, e, nearest_level(kMxfp4Levels, src[e] * inv));
  }
}

}  // namespace jevons::quant
