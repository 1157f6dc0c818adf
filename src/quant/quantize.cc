// Reference quantization (from_float) for every supported type.
//
// The 32-element types and Q8_K follow ggml's quantize_row_*_ref scheme exactly (one
// scale from the block's extreme value, round to nearest). The 2..6-bit K-quants use
// jevons' own two-level search, in the spirit of ggml's make_qkx / make_qx routines:
//   1. fit each sub-block alone: try a handful of candidate scales, and for each the
//      least-squares scale (and min) that best reproduces the sub-block with the
//      integers that candidate picked; keep the best by weighted squared error;
//   2. quantize the sub-block scales (and mins) against one fp16 super-scale;
//   3. re-pick every integer against the scale the decoder will actually see, also
//      trying the neighbouring integer sub-block scales (and mins), keeping the best.
// That yields valid blocks with small error; it is not bit-identical to ggml's output.
// Layouts are documented in blocks.h.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/float16.h"
#include "quant/blocks.h"
#include "quant/quants.h"

namespace jevons::quant {
namespace {

template <typename Block>
Block* as_blocks(void* dst) {
  return static_cast<Block*>(dst);
}

// Round to nearest, ties to even (what ggml's K-quant nearest_int does).
inline int nearest_int(float x) { return int(std::lrintf(x)); }

// The element with the largest magnitude, with its sign (the first one on ties, as ggml).
inline float signed_max_abs(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

inline void min_max(const float* x, int n, float& lo, float& hi) {
  lo = x[0];
  hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

// ---------------------------------------------------------------- packing helpers

inline void store_qh(uint8_t* qh, uint32_t bits) {
  for (int i = 0; i < 4; ++i) qh[i] = uint8_t(bits >> (8 * i));
}

// Crumb layout (Q2_K / Q3_K qs[64]); L values 0..3; qs zeroed first.
void pack_crumbs(const uint8_t* L, uint8_t* qs) {
  std::memset(qs, 0, QK_K / 4);
  for (int e = 0; e < QK_K; ++e) put_crumb(qs, e, L[e]);
}

// Q4_K / Q5_K nibbles (qs[128]); L values 0..15.
void pack_k4_nibbles(const uint8_t* L, uint8_t* qs) {
  std::memset(qs, 0, QK_K / 2);
  for (int e = 0; e < QK_K; ++e) {
    const int g = e / 64, r = e % 64;
    qs[32 * g + r % 32] |= uint8_t(r < 32 ? L[e] : L[e] << 4);
  }
}

// Q4_K / Q5_K: eight 6-bit scales and mins into 12 bytes (see blocks.h).
void pack_scale_min_k4(const uint8_t* sc, const uint8_t* m, uint8_t* scales) {
  std::memset(scales, 0, K_SCALE_SIZE);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] |= sc[j];
      scales[j + 4] |= m[j];
    } else {
      scales[j + 4] = uint8_t((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
      scales[j - 4] |= uint8_t((sc[j] >> 4) << 6);
      scales[j] |= uint8_t((m[j] >> 4) << 6);
    }
  }
}

// Q3_K: sixteen 6-bit (offset 32) scales into 12 bytes (see blocks.h). v[s] is 0..63.
void pack_scales_q3_k(const uint8_t* v, uint8_t* scales) {
  std::memset(scales, 0, 12);
  for (int s = 0; s < 16; ++s) {
    if (s < 8) scales[s] |= uint8_t(v[s] & 0xF);
    else scales[s - 8] |= uint8_t((v[s] & 0xF) << 4);
    scales[8 + s % 4] |= uint8_t((v[s] >> 4) << (2 * (s / 4)));
  }
}

// ---------------------------------------------------------------- sub-block fits

// Weights for the least-squares fits: every element matters, larger ones a bit more
// (ggml's choice for Q4_K/Q5_K: rms of the sub-block plus |x|).
void fit_weights(const float* x, int n, float* w) {
  float sum2 = 0.0f;
  for (int i = 0; i < n; ++i) sum2 += x[i] * x[i];
  const float rms = std::sqrt(sum2 / float(n));
  for (int i = 0; i < n; ++i) w[i] = rms + std::fabs(x[i]);
}

// Affine fit x ~= scale * L - offset with L in 0..nmax, scale >= 0 and offset >= 0 (the
// K-quants with mins can only subtract, so the range always reaches down to <= 0).
struct AffineFit {
  float scale = 0.0f;
  float offset = 0.0f;
};

AffineFit fit_affine(const float* x, const float* w, int n, int nmax) {
  float lo, hi;
  min_max(x, n, lo, hi);
  lo = std::min(lo, 0.0f);
  if (hi <= lo) return {0.0f, -lo};  // all equal (and <= 0): the offset alone is exact

  float sum_w = 0.0f, sum_x = 0.0f;
  for (int i = 0; i < n; ++i) {
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  auto error_of = [&](float scale, float min, const uint8_t* L) {
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * float(L[i]) + min - x[i];
      err += w[i] * diff * diff;
    }
    return err;
  };

  // Baseline: the plain min/max grid.
  uint8_t L[QK_K];
  AffineFit best{(hi - lo) / float(nmax), -lo};
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(std::clamp(nearest_int((x[i] - lo) / best.scale), 0, nmax));
  }
  float best_err = error_of(best.scale, lo, L);

  // Candidates: grids slightly finer or coarser than the baseline, each refined by the
  // weighted least-squares (scale, min) for the integers it picked.
  for (int step = -10; step <= 10; ++step) {
    const float iscale = (float(nmax) + 0.1f * float(step)) / (hi - lo);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      L[i] = uint8_t(std::clamp(nearest_int((x[i] - lo) * iscale), 0, nmax));
      sum_l += w[i] * L[i];
      sum_l2 += w[i] * L[i] * L[i];
      sum_xl += w[i] * L[i] * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0.0f)) continue;
    float scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (min > 0.0f) {  // a positive min is not representable: pin it at 0
      min = 0.0f;
      scale = sum_xl / sum_l2;
    }
    if (!(scale > 0.0f)) continue;
    const float err = error_of(scale, min, L);
    if (err < best_err) {
      best_err = err;
      best = {scale, -min};
    }
  }
  return best;
}

// Symmetric fit x ~= scale * L with L in -nmax..nmax-1 (Q3_K, Q6_K). The scale's sign is
// chosen so that the largest-magnitude element lands on -nmax, the level that has no
// positive twin. Weighted least squares over candidate grids; returns the scale.
float fit_symmetric(const float* x, const float* w, int n, int nmax) {
  const float max = signed_max_abs(x, n);
  if (std::fabs(max) < 1e-30f) return 0.0f;
  float best_scale = -max / float(nmax);
  float best_gain = -1.0f;  // sumlx^2 / suml2: the error reduction of the LSQ scale
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(float(nmax) + 0.1f * float(step)) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      sumlx += w[i] * x[i] * float(l);
      suml2 += w[i] * float(l * l);
    }
    if (suml2 > 0.0f && sumlx * sumlx / suml2 > best_gain) {
      best_gain = sumlx * sumlx / suml2;
      best_scale = sumlx / suml2;
    }
  }
  return best_scale;
}

// ---------------------------------------------------------------- K-quants with mins

// Re-picks each integer (0..nmax) as the level nearest to x for the decoded step dl and
// offset ml; returns the weighted squared error of the result.
float requantize_affine(const float* x, const float* w, int n, int nmax, float dl, float ml,
                        uint8_t* L) {
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = dl > 0.0f ? uint8_t(std::clamp(nearest_int((x[i] + ml) / dl), 0, nmax)) : 0;
    const float diff = dl * float(L[i]) - ml - x[i];
    err += w[i] * diff * diff;
  }
  return err;
}

// Q2_K, Q4_K and Q5_K share one recipe: affine fit per sub-block, then scales and mins
// quantized to `scale_bits` against fp16 super-scales d and dmin, then integers re-picked.
struct AffineSuperBlock {
  uint16_t d_bits = 0, dmin_bits = 0;  // fp16 super-scales
  uint8_t sc[16] = {}, m[16] = {};     // per sub-block quantized scale / min
  uint8_t L[QK_K] = {};                // per element 0..nmax
};

AffineSuperBlock quantize_affine_superblock(const float* x, int sub_size, int nmax, int scale_bits) {
  const int n_sub = QK_K / sub_size;
  const int scale_max = (1 << scale_bits) - 1;
  AffineFit fits[16];
  float w[QK_K];
  float max_scale = 0.0f, max_offset = 0.0f;
  for (int s = 0; s < n_sub; ++s) {
    fit_weights(x + s * sub_size, sub_size, w + s * sub_size);
    fits[s] = fit_affine(x + s * sub_size, w + s * sub_size, sub_size, nmax);
    max_scale = std::max(max_scale, fits[s].scale);
    max_offset = std::max(max_offset, fits[s].offset);
  }

  AffineSuperBlock out;
  out.d_bits = float_to_fp16(max_scale / float(scale_max));
  out.dmin_bits = float_to_fp16(max_offset / float(scale_max));
  const float d = fp16_to_float(out.d_bits);
  const float dmin = fp16_to_float(out.dmin_bits);
  const float inv_scale = max_scale > 0.0f ? float(scale_max) / max_scale : 0.0f;
  const float inv_offset = max_offset > 0.0f ? float(scale_max) / max_offset : 0.0f;
  uint8_t trial[32];
  for (int s = 0; s < n_sub; ++s) {
    const float* xs = x + s * sub_size;
    const float* ws = w + s * sub_size;
    uint8_t* Ls = out.L + s * sub_size;
    // Rounding the scale to a few bits can shrink it enough to clip the sub-block's top
    // value, so also try the neighbouring integer scales and mins, and keep whichever
    // decodes best (the rounded pair first: it wins ties).
    const int sc0 = std::clamp(nearest_int(fits[s].scale * inv_scale), 0, scale_max);
    const int m0 = std::clamp(nearest_int(fits[s].offset * inv_offset), 0, scale_max);
    float best = requantize_affine(xs, ws, sub_size, nmax, d * float(sc0), dmin * float(m0), Ls);
    out.sc[s] = uint8_t(sc0);
    out.m[s] = uint8_t(m0);
    for (int sc = std::max(sc0 - 1, 0); sc <= std::min(sc0 + 1, scale_max); ++sc) {
      for (int m = std::max(m0 - 1, 0); m <= std::min(m0 + 1, scale_max); ++m) {
        if (sc == sc0 && m == m0) continue;
        const float err =
            requantize_affine(xs, ws, sub_size, nmax, d * float(sc), dmin * float(m), trial);
        if (err < best) {
          best = err;
          out.sc[s] = uint8_t(sc);
          out.m[s] = uint8_t(m);
          std::memcpy(Ls, trial, size_t(sub_size));
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- symmetric K-quants

// Re-picks each integer (-nmax..nmax-1) for the decoded step dl; returns the weighted
// squared error of the result.
float requantize_symmetric(const float* x, const float* w, int n, int nmax, float dl, int8_t* L) {
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = dl != 0.0f ? int8_t(std::clamp(nearest_int(x[i] / dl), -nmax, nmax - 1)) : 0;
    const float diff = dl * float(L[i]) - x[i];
    err += w[i] * diff * diff;
  }
  return err;
}

// Q3_K and Q6_K: symmetric fit per 16-element sub-block, signed sub-block scales
// quantized against one fp16 super-scale, integers re-picked. An all-zero super-block
// comes back all zero (d = 0, scales 0, L = 0).
struct SymmetricSuperBlock {
  uint16_t d_bits = 0;
  int sc[16] = {};      // signed sub-block scales, in [-scale_levels, scale_levels - 1]
  int8_t L[QK_K] = {};  // signed, in [-nmax, nmax - 1]
};

SymmetricSuperBlock quantize_symmetric_superblock(const float* x, int nmax, int scale_levels) {
  float scales[16];
  float w[QK_K];
  // Squared magnitudes as weights (ggml's choice here): the big values get it right.
  for (int i = 0; i < QK_K; ++i) w[i] = x[i] * x[i];
  for (int s = 0; s < 16; ++s) scales[s] = fit_symmetric(x + 16 * s, w + 16 * s, 16, nmax);
  SymmetricSuperBlock out;
  const float max_scale = signed_max_abs(scales, 16);
  if (std::fabs(max_scale) < 1e-30f) return out;

  // As for the elements: the largest-magnitude scale lands on -scale_levels.
  const float iscale = -float(scale_levels) / max_scale;
  out.d_bits = float_to_fp16(1.0f / iscale);
  const float d = fp16_to_float(out.d_bits);
  int8_t trial[16];
  for (int s = 0; s < 16; ++s) {
    const float* xs = x + 16 * s;
    const float* ws = w + 16 * s;
    int8_t* Ls = out.L + 16 * s;
    // As for the affine types: also try the neighbouring integer scales.
    const int sc0 = std::clamp(nearest_int(iscale * scales[s]), -scale_levels, scale_levels - 1);
    float best = requantize_symmetric(xs, ws, 16, nmax, d * float(sc0), Ls);
    out.sc[s] = sc0;
    for (int sc = std::max(sc0 - 1, -scale_levels); sc <= std::min(sc0 + 1, scale_levels - 1); ++sc) {
      if (sc == sc0) continue;
      const float err = requantize_symmetric(xs, ws, 16, nmax, d * float(sc), trial);
      if (err < best) {
        best = err;
        out.sc[s] = sc;
        std::memcpy(Ls, trial, sizeof trial);
      }
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- float types

void quantize_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void quantize_f16(const float* src, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_fp16(src[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

void quantize_bf16(const float* src, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_bf16(src[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// ---------------------------------------------------------------- 32-element blocks

// Q4_0: d = (signed extreme) / -8, so the extreme maps to q = 0 (value -8 d) and the
// other side reaches +7 d. q = x/d + 8, rounded half up (truncation of +8.5), max 15.
void quantize_q4_0(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ4_0>(dst);
  for (int64_t b = 0; b < n / QK4_0; ++b, src += QK4_0) {
    BlockQ4_0& blk = blocks[b];
    const float d = signed_max_abs(src, QK4_0) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blk.d = float_to_fp16(d);
    std::memset(blk.qs, 0, sizeof blk.qs);
    for (int e = 0; e < QK4_0; ++e) {
      put_legacy_nibble(blk.qs, e, std::min(15, int(src[e] * id + 8.5f)));
    }
  }
}

// Q4_1: d = (max - min) / 15, m = min; q = (x - min)/d rounded half up, max 15.
void quantize_q4_1(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ4_1>(dst);
  for (int64_t b = 0; b < n / QK4_1; ++b, src += QK4_1) {
    BlockQ4_1& blk = blocks[b];
    float lo, hi;
    min_max(src, QK4_1, lo, hi);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blk.d = float_to_fp16(d);
    blk.m = float_to_fp16(lo);
    std::memset(blk.qs, 0, sizeof blk.qs);
    for (int e = 0; e < QK4_1; ++e) {
      put_legacy_nibble(blk.qs, e, std::min(15, int((src[e] - lo) * id + 0.5f)));
    }
  }
}

// Q5_0: as Q4_0 with 32 levels: d = extreme / -16, q = x/d + 16 rounded, max 31.
void quantize_q5_0(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ5_0>(dst);
  for (int64_t b = 0; b < n / QK5_0; ++b, src += QK5_0) {
    BlockQ5_0& blk = blocks[b];
    const float d = signed_max_abs(src, QK5_0) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blk.d = float_to_fp16(d);
    std::memset(blk.qs, 0, sizeof blk.qs);
    uint32_t qh = 0;
    for (int e = 0; e < QK5_0; ++e) {
      const int q = std::min(31, int(src[e] * id + 16.5f));
      put_legacy_nibble(blk.qs, e, q & 0xF);
      qh |= uint32_t(q >> 4) << e;
    }
    store_qh(blk.qh, qh);
  }
}

// Q5_1: as Q4_1 with 32 levels.
void quantize_q5_1(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ5_1>(dst);
  for (int64_t b = 0; b < n / QK5_1; ++b, src += QK5_1) {
    BlockQ5_1& blk = blocks[b];
    float lo, hi;
    min_max(src, QK5_1, lo, hi);
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blk.d = float_to_fp16(d);
    blk.m = float_to_fp16(lo);
    std::memset(blk.qs, 0, sizeof blk.qs);
    uint32_t qh = 0;
    for (int e = 0; e < QK5_1; ++e) {
      const int q = std::min(31, int((src[e] - lo) * id + 0.5f));
      put_legacy_nibble(blk.qs, e, q & 0xF);
      qh |= uint32_t(q >> 4) << e;
    }
    store_qh(blk.qh, qh);
  }
}

// Q8_0: d = amax / 127, q = round(x / d) (half away from zero, as roundf).
void quantize_q8_0(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ8_0>(dst);
  for (int64_t b = 0; b < n / QK8_0; ++b, src += QK8_0) {
    const float d = std::fabs(signed_max_abs(src, QK8_0)) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = float_to_fp16(d);
    for (int e = 0; e < QK8_0; ++e) blocks[b].qs[e] = int8_t(std::roundf(src[e] * id));
  }
}

// Q8_1: Q8_0 plus s = d * sum(q), rounded to fp16 (ggml uses the unrounded d here).
void quantize_q8_1(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ8_1>(dst);
  for (int64_t b = 0; b < n / QK8_1; ++b, src += QK8_1) {
    const float d = std::fabs(signed_max_abs(src, QK8_1)) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = float_to_fp16(d);
    int sum = 0;
    for (int e = 0; e < QK8_1; ++e) {
      blocks[b].qs[e] = int8_t(std::roundf(src[e] * id));
      sum += blocks[b].qs[e];
    }
    blocks[b].s = float_to_fp16(float(sum) * d);
  }
}

// ---------------------------------------------------------------- K-quants

void quantize_q2_k(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ2_K>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockQ2_K& blk = blocks[b];
    const AffineSuperBlock sb = quantize_affine_superblock(src, 16, 3, 4);
    blk.d = sb.d_bits;
    blk.dmin = sb.dmin_bits;
    for (int s = 0; s < 16; ++s) blk.scales[s] = uint8_t(sb.sc[s] | (sb.m[s] << 4));
    pack_crumbs(sb.L, blk.qs);
  }
}

void quantize_q3_k(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ3_K>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockQ3_K& blk = blocks[b];
    const SymmetricSuperBlock sb = quantize_symmetric_superblock(src, 4, 32);
    blk.d = sb.d_bits;
    uint8_t stored_scales[16];
    for (int s = 0; s < 16; ++s) stored_scales[s] = uint8_t(sb.sc[s] + 32);
    pack_scales_q3_k(stored_scales, blk.scales);
    // Stored value L + 4 (0..7): its bit 2 goes to hmask, its low two bits to qs.
    uint8_t low2[QK_K];
    std::memset(blk.hmask, 0, sizeof blk.hmask);
    for (int e = 0; e < QK_K; ++e) {
      const int u = sb.L[e] + 4;
      low2[e] = uint8_t(u & 3);
      blk.hmask[e % 32] |= uint8_t((u >> 2) << (e / 32));
    }
    pack_crumbs(low2, blk.qs);
  }
}

void quantize_q4_k(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ4_K>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockQ4_K& blk = blocks[b];
    const AffineSuperBlock sb = quantize_affine_superblock(src, 32, 15, 6);
    blk.d = sb.d_bits;
    blk.dmin = sb.dmin_bits;
    pack_scale_min_k4(sb.sc, sb.m, blk.scales);
    pack_k4_nibbles(sb.L, blk.qs);
  }
}

void quantize_q5_k(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ5_K>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockQ5_K& blk = blocks[b];
    const AffineSuperBlock sb = quantize_affine_superblock(src, 32, 31, 6);
    blk.d = sb.d_bits;
    blk.dmin = sb.dmin_bits;
    pack_scale_min_k4(sb.sc, sb.m, blk.scales);
    uint8_t low4[QK_K];
    std::memset(blk.qh, 0, sizeof blk.qh);
    for (int e = 0; e < QK_K; ++e) {
      low4[e] = uint8_t(sb.L[e] & 0xF);
      blk.qh[e % 32] |= uint8_t((sb.L[e] >> 4) << (e / 32));  // fifth bit: bit s of qh[e % 32]
    }
    pack_k4_nibbles(low4, blk.qs);
  }
}

void quantize_q6_k(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ6_K>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockQ6_K& blk = blocks[b];
    const SymmetricSuperBlock sb = quantize_symmetric_superblock(src, 32, 128);
    blk.d = sb.d_bits;
    for (int s = 0; s < 16; ++s) blk.scales[s] = int8_t(sb.sc[s]);
    std::memset(blk.ql, 0, sizeof blk.ql);
    std::memset(blk.qh, 0, sizeof blk.qh);
    for (int e = 0; e < QK_K; ++e) {
      const int u = sb.L[e] + 32;  // 0..63
      const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
      blk.ql[64 * h + 32 * (k & 1) + l] |= uint8_t(k < 2 ? (u & 0xF) : (u & 0xF) << 4);
      blk.qh[32 * h + l] |= uint8_t((u >> 4) << (2 * k));
    }
  }
}

// Q8_K: ggml's scheme: the signed extreme maps to -127, d = 1 / iscale stays fp32.
void quantize_q8_k(const float* src, void* dst, int64_t n) {
  auto* blocks = as_blocks<BlockQ8_K>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    BlockQ8_K& blk = blocks[b];
    const float max = signed_max_abs(src, QK_K);
    if (max == 0.0f) {
      std::memset(&blk, 0, sizeof blk);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int e = 0; e < QK_K; ++e) blk.qs[e] = int8_t(std::min(127, nearest_int(iscale * src[e])));
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += blk.qs[16 * g + i];
      blk.bsums[g] = int16_t(sum);
    }
    blk.d = 1.0f / iscale;
  }
}

}  // namespace jevons::quant
