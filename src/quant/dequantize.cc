// Reference dequantization (to_float) for every supported type.
//
// These must agree with ggml's dequantize_row_* bit for bit: golden tests compare our
// logits with llama.cpp's. So each formula keeps ggml's order of float operations
// (e.g. Q4_K computes (d * sc) first, then multiplies by q, then subtracts dmin * m),
// and nothing here may be contracted into an fma: GCC in ISO C++ mode (-std=c++20)
// defaults to -ffp-contract=off; clang defaults to "on", hence the pragma below.
// Layouts are documented in blocks.h; the small "element e lives here" helpers below
// mirror those comments one to one.
#include <cstring>

#include "core/float16.h"
#include "quant/blocks.h"
#include "quant/quants.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace jevons::quant {
namespace {

template <typename Block>
const Block* as_blocks(const void* src) {
  return static_cast<const Block*>(src);
}

// The 32 fifth bits of Q5_0/Q5_1, as a little-endian uint32 (bit e is element e).
inline uint32_t load_qh(const uint8_t* qh) {
  return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}

// Low 4 bits of element e (0..255) in Q4_K/Q5_K qs[128].
inline int k4_nibble(const uint8_t* qs, int e) {
  const int g = e / 64, r = e % 64;
  const uint8_t byte = qs[32 * g + r % 32];
  return r < 32 ? (byte & 0xF) : (byte >> 4);
}

// Q3_K: 1 when the third bit of element e is set (bit e / 32 of hmask[e % 32]).
inline int q3_high_bit(const uint8_t* hmask, int e) { return (hmask[e % 32] >> (e / 32)) & 1; }

// Q5_K: fifth bit of element e is bit (e / 32) of qh[e % 32].
inline int q5k_high_bit(const uint8_t* qh, int e) { return (qh[e % 32] >> (e / 32)) & 1; }

// Q6_K: unsigned 6-bit value (0..63) of element e.
inline int q6k_value(const uint8_t* ql, const uint8_t* qh, int e) {
  const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
  const uint8_t lo_byte = ql[64 * h + 32 * (k & 1) + l];
  const int low4 = k < 2 ? (lo_byte & 0xF) : (lo_byte >> 4);
  const int high2 = (qh[32 * h + l] >> (2 * k)) & 3;
  return low4 | (high2 << 4);
}

}  // namespace

// ---------------------------------------------------------------- float types

void dequantize_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const auto* h = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, h + 2 * i, 2);  // the source may be unaligned
    dst[i] = fp16_to_float(bits);
  }
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const auto* h = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, h + 2 * i, 2);
    dst[i] = bf16_to_float(bits);
  }
}

// ---------------------------------------------------------------- 32-element blocks

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ4_0>(src);
  for (int64_t b = 0; b < n / QK4_0; ++b, dst += QK4_0) {
    const float d = fp16_to_float(blocks[b].d);
    for (int e = 0; e < QK4_0; ++e) dst[e] = float(legacy_nibble(blocks[b].qs, e) - 8) * d;
  }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ4_1>(src);
  for (int64_t b = 0; b < n / QK4_1; ++b, dst += QK4_1) {
    const float d = fp16_to_float(blocks[b].d);
    const float m = fp16_to_float(blocks[b].m);
    for (int e = 0; e < QK4_1; ++e) dst[e] = float(legacy_nibble(blocks[b].qs, e)) * d + m;
  }
}

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ5_0>(src);
  for (int64_t b = 0; b < n / QK5_0; ++b, dst += QK5_0) {
    const float d = fp16_to_float(blocks[b].d);
    const uint32_t qh = load_qh(blocks[b].qh);
    for (int e = 0; e < QK5_0; ++e) {
      const int q = legacy_nibble(blocks[b].qs, e) | int((qh >> e) & 1) << 4;
      dst[e] = float(q - 16) * d;
    }
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ5_1>(src);
  for (int64_t b = 0; b < n / QK5_1; ++b, dst += QK5_1) {
    const float d = fp16_to_float(blocks[b].d);
    const float m = fp16_to_float(blocks[b].m);
    const uint32_t qh = load_qh(blocks[b].qh);
    for (int e = 0; e < QK5_1; ++e) {
      const int q = legacy_nibble(blocks[b].qs, e) | int((qh >> e) & 1) << 4;
      dst[e] = float(q) * d + m;
    }
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ8_0>(src);
  for (int64_t b = 0; b < n / QK8_0; ++b, dst += QK8_0) {
    const float d = fp16_to_float(blocks[b].d);
    for (int e = 0; e < QK8_0; ++e) dst[e] = float(blocks[b].qs[e]) * d;
  }
}

// ggml has no to_float for Q8_1 (it only ever quantizes activations to it); this is the
// obvious one, the same as Q8_0's. The cached sum s is not needed.
void dequantize_q8_1(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ8_1>(src);
  for (int64_t b = 0; b < n / QK8_1; ++b, dst += QK8_1) {
    const float d = fp16_to_float(blocks[b].d);
    for (int e = 0; e < QK8_1; ++e) dst[e] = float(blocks[b].qs[e]) * d;
  }
}

// ---------------------------------------------------------------- K-quants

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ2_K>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const BlockQ2_K& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    const float dmin = fp16_to_float(blk.dmin);
    for (int s = 0; s < QK_K / 16; ++s) {
      // One byte per 16-element sub-block: scale in the low nibble, min in the high one.
      const float dl = d * float(blk.scales[s] & 0xF);
      const float ml = dmin * float(blk.scales[s] >> 4);
      for (int e = 16 * s; e < 16 * s + 16; ++e) dst[e] = dl * float(crumb(blk.qs, e)) - ml;
    }
  }
}

void dequantize_q3_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ3_K>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const BlockQ3_K& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    for (int s = 0; s < QK_K / 16; ++s) {
      const float dl = d * float(unpack_scale_q3_k(blk.scales, s));
      for (int e = 16 * s; e < 16 * s + 16; ++e) {
        // A clear third bit means "subtract 4": values run -4..3.
        const int q = crumb(blk.qs, e) - (q3_high_bit(blk.hmask, e) ? 0 : 4);
        dst[e] = dl * float(q);
      }
    }
  }
}

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ4_K>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const BlockQ4_K& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    const float dmin = fp16_to_float(blk.dmin);
    for (int s = 0; s < QK_K / 32; ++s) {
      uint8_t sc, m;
      unpack_scale_min_k4(blk.scales, s, sc, m);
      const float dl = d * float(sc);
      const float ml = dmin * float(m);
      for (int e = 32 * s; e < 32 * s + 32; ++e) dst[e] = dl * float(k4_nibble(blk.qs, e)) - ml;
    }
  }
}

void dequantize_q5_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ5_K>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const BlockQ5_K& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    const float dmin = fp16_to_float(blk.dmin);
    for (int s = 0; s < QK_K / 32; ++s) {
      uint8_t sc, m;
      unpack_scale_min_k4(blk.scales, s, sc, m);
      const float dl = d * float(sc);
      const float ml = dmin * float(m);
      for (int e = 32 * s; e < 32 * s + 32; ++e) {
        const int q = k4_nibble(blk.qs, e) + (q5k_high_bit(blk.qh, e) ? 16 : 0);
        dst[e] = dl * float(q) - ml;
      }
    }
  }
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ6_K>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const BlockQ6_K& blk = blocks[b];
    const float d = fp16_to_float(blk.d);
    for (int s = 0; s < QK_K / 16; ++s) {
      const float dl = d * float(blk.scales[s]);  // the scales are signed int8
      for (int e = 16 * s; e < 16 * s + 16; ++e) {
        dst[e] = dl * float(q6k_value(blk.ql, blk.qh, e) - 32);
      }
    }
  }
}

void dequantize_q8_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = as_blocks<BlockQ8_K>(src);
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const float d = blocks[b].d;  // Q8_K's scale is a plain fp32
    for (int e = 0; e < QK_K; ++e) dst[e] = d * float(blocks[b].qs[e]);
  }
}

}  // namespace jevons::quant
