// ggml's quantized block layouts, byte for byte as GGUF files store them.
//
// Every struct is packed (alignment 1) so that a block can be read straight out of a
// mapped file at any offset. fp16 fields are raw IEEE half bits (uint16_t): convert
// with fp16_to_float() from core/float16.h. Multi-byte fields are little-endian, as in
// every GGUF file jevons reads (and as on every host it runs on).
//
// Notation in the comments: element e of a block is output float number e (0-based);
// "q" is the unsigned integer stored for an element; fp16(d) is d converted to float.
// Every formula below is exactly what ggml's dequantize_row_* computes, including the
// order of the float operations (so results match bit for bit).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/float16.h"

namespace jevons {

inline constexpr int QK4_0 = 32;
inline constexpr int QK4_1 = 32;
inline constexpr int QK5_0 = 32;
inline constexpr int QK5_1 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int QK8_1 = 32;
inline constexpr int QK_K = 256;         // elements per K-quant super-block
inline constexpr int K_SCALE_SIZE = 12;  // bytes of packed 6-bit scales in Q4_K/Q5_K
inline constexpr int QK4_NL = 32;
inline constexpr int QK_MXFP4 = 32;

#pragma pack(push, 1)

// ---------------------------------------------------------------------------------
// Q4_0: 32 elements, 4.5 bits each.
//   bytes 0-1   d      fp16 scale
//   bytes 2-17  qs[16] nibbles: qs[j] low nibble is element j, high nibble is j+16
//   x[e] = (q[e] - 8) * fp16(d)                        (int times float)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[QK4_0 / 2];
};

// Q4_1: 32 elements, 5 bits each.
//   bytes 0-1 d, bytes 2-3 m (both fp16), bytes 4-19 qs[16] nibbles as in Q4_0
//   x[e] = q[e] * fp16(d) + fp16(m)
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[QK4_1 / 2];
};

// Q5_0: 32 elements, 5.5 bits each.
//   bytes 0-1  d      fp16 scale
//   bytes 2-5  qh[4]  32 fifth bits: read as a little-endian uint32 h, bit e of h is
//                     the high bit (value 16) of element e
//   bytes 6-21 qs[16] low nibbles, laid out as in Q4_0 (qs[j]: elements j and j+16)
//   q[e] = low4[e] | (((h >> e) & 1) << 4);  x[e] = (q[e] - 16) * fp16(d)
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[QK5_0 / 2];
};

// Q5_1: 32 elements, 6 bits each.
//   bytes 0-1 d, 2-3 m (fp16), 4-7 qh[4], 8-23 qs[16]; q[e] as in Q5_0
//   x[e] = q[e] * fp16(d) + fp16(m)
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};

// Q8_0: 32 elements, 8.5 bits each.
//   bytes 0-1 d (fp16), bytes 2-33 qs[32] signed int8, element e is qs[e]
//   x[e] = qs[e] * fp16(d)
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[QK8_0];
};

// Q8_1: 32 elements, 9 bits each (used by ggml for activations).
//   bytes 0-1 d (fp16), bytes 2-3 s (fp16, = d * sum(qs), a cache for dot products),
//   bytes 4-35 qs[32] signed int8
//   x[e] = qs[e] * fp16(d)         (s plays no part in the values)
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[QK8_1];
};

// ---------------------------------------------------------------------------------
// K-quants: super-blocks of 256 elements split into sub-blocks of 16 or 32, each with
// its own small integer scale (and min), themselves scaled by fp16 super-scales.
//
// A recurring 2-bit packing ("crumbs", Q2_K's qs and Q3_K's qs): a 64-byte array holds
// 256 2-bit values. For element e, with half h = e / 128, r = e % 128:
//   byte  qs[32*h + r % 32],  bits  2*(r / 32) .. 2*(r / 32) + 1
// i.e. each byte carries the elements r, r+32, r+64, r+96 of its half, lowest bits first.

// Q2_K: 256 elements in 16 sub-blocks of 16, 2.625 bits each.
//   bytes  0-15 scales[16]  one byte per sub-block s = e / 16:
//                           low nibble = scale sc[s], high nibble = min m[s]
//   bytes 16-79 qs[64]      2-bit q[e], crumb layout above
//   bytes 80-81 d           fp16 super-scale of the scales
//   bytes 82-83 dmin        fp16 super-scale of the mins
//   x[e] = (fp16(d) * sc[s]) * q[e] - (fp16(dmin) * m[s])
struct BlockQ2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d;
  uint16_t dmin;
};

// Q3_K: 256 elements in 16 sub-blocks of 16, 3.4375 bits each.
//   bytes  0-31  hmask[32]  third bit of each element: element e, with h = e / 128,
//                           r = e % 128, uses byte hmask[r % 32], bit 4*h + r / 32
//                           (that is: bit b of hmask[l] is element 32*b + l)
//   bytes 32-95  qs[64]     low 2 bits of each element, crumb layout above
//   bytes 96-107 scales[12] sixteen 6-bit scales, stored with an offset of 32:
//                           for sub-block s = e / 16
//                             low4  = s < 8 ? scales[s] & 0xF : scales[s - 8] >> 4
//                             high2 = (scales[8 + s % 4] >> (2 * (s / 4))) & 3
//                             sc[s] = (low4 | high2 << 4) - 32      (-32 .. 31)
//   bytes 108-109 d         fp16 super-scale
//   q[e] = low2[e] - (third bit set ? 0 : 4)                         (-4 .. 3)
//   x[e] = (fp16(d) * sc[s]) * q[e]
struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};

// The 12-byte scale packing shared by Q4_K and Q5_K: eight 6-bit scales sc[0..7] and
// eight 6-bit mins m[0..7], one pair per 32-element sub-block.
//   for j < 4:  sc[j] = scales[j] & 63            m[j] = scales[j + 4] & 63
//   for j >= 4: sc[j] = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4)
//               m[j]  = (scales[j + 4] >> 4)  | ((scales[j]     >> 6) << 4)
// i.e. bytes 0-3 hold sc[0..3] plus the top 2 bits of sc[4..7], bytes 4-7 hold m[0..3]
// plus the top 2 bits of m[4..7], bytes 8-11 hold the low nibbles of sc[4..7] (low
// half) and m[4..7] (high half).
//
// Q4_K: 256 elements in 8 sub-blocks of 32, 4.5 bits each.
//   bytes 0-1 d, bytes 2-3 dmin (fp16), bytes 4-15 scales[12] (above),
//   bytes 16-143 qs[128]: element e, with g = e / 64, r = e % 64, is in byte
//                qs[32*g + r % 32], low nibble if r < 32 else high nibble
//   sub-block s = e / 32:  x[e] = (fp16(d) * sc[s]) * q[e] - (fp16(dmin) * m[s])
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};

// Q5_K: 256 elements in 8 sub-blocks of 32, 5.5 bits each.
//   bytes 0-1 d, 2-3 dmin (fp16), 4-15 scales[12] (as Q4_K), 16-47 qh[32], 48-175 qs[128]
//   low 4 bits of element e exactly as Q4_K's qs; fifth bit (value 16) of element e is
//   bit s of qh[e % 32], where s = e / 32 is its sub-block
//   x[e] = (fp16(d) * sc[s]) * q[e] - (fp16(dmin) * m[s])
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};

// Q6_K: 256 elements in 16 sub-blocks of 16, 6.5625 bits each.
//   bytes   0-127 ql[128]   low 4 bits. Element e, with h = e / 128, r = e % 128,
//                           k = r / 32 (quarter), l = r % 32:
//                           byte ql[64*h + 32*(k & 1) + l], low nibble if k < 2 else high
//   bytes 128-191 qh[64]    high 2 bits: bits 2k..2k+1 of qh[32*h + l]
//   bytes 192-207 scales[16] signed int8 scale per sub-block s = e / 16
//   bytes 208-209 d         fp16 super-scale
//   q[e] = (low4 | high2 << 4) - 32                                  (-32 .. 31)
//   x[e] = (fp16(d) * scales[s]) * q[e]
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
};

// Q8_K: 256 elements, used by ggml for activations in K-quant dot products.
//   bytes 0-3 d (fp32!), 4-259 qs[256] signed int8, 260-291 bsums[16] int16: sum of
//   qs over each group of 16 (a cache for dot products)
//   x[e] = d * qs[e]
struct BlockQ8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};

// ---------------------------------------------------------------------------------
// Non-uniform 4-bit types: a nibble indexes a fixed table of 16 signed levels instead
// of being a linear code. The levels are part of the format (ggml's kvalues_iq4nl, and
// the OCP Microscaling FP4 E2M1 values) and are defined with the unpacking helpers below.

// IQ4_NL: 32 elements, 4.5 bits each.
//   bytes 0-1  d      fp16 scale
//   bytes 2-17 qs[16] nibbles, laid out as in Q4_0 (qs[j]: elements j and j+16)
//   x[e] = fp16(d) * kIq4nlLevels[q[e]]
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[QK4_NL / 2];
};

// IQ4_XS: 256 elements in 8 sub-blocks of 32, 4.25 bits each.
//   bytes 0-1   d          fp16 super-scale
//   bytes 2-3   scales_h   uint16: bits 2s..2s+1 are the top 2 bits of sub-block s's scale
//   bytes 4-7   scales_l[4] low 4 bits of the scales: sub-block s in scales_l[s / 2],
//                          low nibble if s is even
//   bytes 8-135 qs[128]    16 bytes per sub-block s (qs[16 s + j]: elements 32 s + j in the
//                          low nibble and 32 s + j + 16 in the high one)
//   ls[s] = low4 | high2 << 4  (0..63);  x[e] = (fp16(d) * (ls[s] - 32)) * kIq4nlLevels[q[e]]
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[QK_K / 64];
  uint8_t qs[QK_K / 2];
};

// MXFP4 (OCP Microscaling, as ggml stores it): 32 elements, 4.25 bits each.
//   byte 0     e      E8M0 shared exponent: the scale is 2^(e - 127)
//   bytes 1-16 qs[16] FP4 E2M1 codes (sign, 2 exponent bits, 1 mantissa bit), nibbles laid
//                     out as in Q4_0
//   x[e] = kMxfp4Levels[q[e]] * 2^(e - 128): the levels are the E2M1 values doubled (so
//   they are integers, -12..12) and the scale halved to match, as ggml computes it.
struct BlockMXFP4 {
  uint8_t e;
  uint8_t qs[QK_MXFP4 / 2];
};

// ---------------------------------------------------------------------------------
// Ternary types (BitNet b1.58, TriLMs): every element is -1, 0 or +1 times one fp16
// scale per 256 elements.

// TQ2_0: 256 elements, 2.0625 bits each.
//   bytes 0-63  qs[64] 2-bit codes t (0, 1, 2) in the crumb layout of Q2_K above
//   bytes 64-65 d      fp16 scale
//   x[e] = float(t[e] - 1) * fp16(d)
struct BlockTQ2_0 {
  uint8_t qs[QK_K / 4];
  uint16_t d;
};

// TQ1_0: 256 elements, 1.6875 bits each: 5 trits per byte (3^5 = 243 <= 256).
//   bytes 0-47  qs[48] base-3 digits, stored as a fixed-point fraction: a byte b holds the
//                      digits t_0 t_1 t_2 t_3 t_4 (t_0 most significant) as
//                      b = ceil(256 * (t_0 t_1 t_2 t_3 t_4)_3 / 243), so that digit n is
//                      t_n = (uint8(b * 3^n) * 3) >> 8 (the multiplication wraps mod 256)
//   bytes 48-51 qh[4]  4 trits per byte, the same way (t_0 .. t_3, the fifth digit 0)
//   bytes 52-53 d      fp16 scale
//   element order: qs[m] digit n  -> e = 32 n + m           for m < 32  (e 0..159)
//                  qs[32 + m] digit n -> e = 160 + 16 n + m for m < 16  (e 160..239)
//                  qh[j] digit n  -> e = 240 + 4 n + j                  (e 240..255)
//   x[e] = float(t[e] - 1) * fp16(d)
struct BlockTQ1_0 {
  uint8_t qs[48];
  uint8_t qh[4];
  uint16_t d;
};

#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockTQ2_0) == 66);
static_assert(sizeof(BlockTQ1_0) == 54);

// Field offsets that the layout comments above promise.
static_assert(offsetof(BlockQ5_0, qs) == 6 && offsetof(BlockQ5_1, qs) == 8);
static_assert(offsetof(BlockQ2_K, d) == 80 && offsetof(BlockQ2_K, dmin) == 82);
static_assert(offsetof(BlockQ3_K, scales) == 96 && offsetof(BlockQ3_K, d) == 108);
static_assert(offsetof(BlockQ4_K, qs) == 16);
static_assert(offsetof(BlockQ5_K, qh) == 16 && offsetof(BlockQ5_K, qs) == 48);
static_assert(offsetof(BlockQ6_K, scales) == 192 && offsetof(BlockQ6_K, d) == 208);
static_assert(offsetof(BlockQ8_K, bsums) == 260);
static_assert(offsetof(BlockIQ4_XS, qs) == 8 && offsetof(BlockTQ2_0, d) == 64 && offsetof(BlockTQ1_0, d) == 52);

// ---------------------------------------------------------------------------------
// Scale unpacking shared by the reference code and any kernel that wants it.

// Q4_K / Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void unpack_scale_min_k4(const uint8_t* scales, int j, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = scales[j] & 63;
    m = scales[j + 4] & 63;
  } else {
    sc = uint8_t((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    m = uint8_t((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// The nibble layout of 32-element blocks (Q4_0, Q4_1, Q5_x low bits, IQ4_NL, MXFP4 and
// each IQ4_XS sub-block): qs[j] holds element j in its low nibble and j + 16 in its high
// one. The value of element e (0..31), and storing one (q 0..15, into zeroed bits).
inline int legacy_nibble(const uint8_t* qs, int e) { return e < 16 ? (qs[e] & 0xF) : (qs[e - 16] >> 4); }
inline void put_legacy_nibble(uint8_t* qs, int e, int q) {
  if (e < 16) qs[e] = uint8_t(qs[e] | q);
  else qs[e - 16] = uint8_t(qs[e - 16] | (q << 4));
}

// The crumb layout (Q2_K / Q3_K qs, TQ2_0 qs): 2-bit value of element e (0..255), and
// storing one (into zeroed bits).
inline int crumb(const uint8_t* qs, int e) {
  const int h = e / 128, r = e % 128;
  return (qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
}
inline void put_crumb(uint8_t* qs, int e, int v) {
  const int h = e / 128, r = e % 128;
  qs[32 * h + r % 32] = uint8_t(qs[32 * h + r % 32] | (v << (2 * (r / 32))));
}

// Q3_K: signed scale (-32..31) of sub-block s (0..15) from the 12 packed bytes.
inline int unpack_scale_q3_k(const uint8_t* scales, int s) {
  const int low4 = s < 8 ? (scales[s] & 0xF) : (scales[s - 8] >> 4);
  const int high2 = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

// ---------------------------------------------------------------------------------
// Level tables of the non-uniform 4-bit types.

// IQ4_NL / IQ4_XS: 16 levels fitted once (by ggml's author) to the distribution of LLM
// weights; they are the format's definition, as a codebook is.
inline constexpr int8_t kIq4nlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// FP4 E2M1 code c (bit 3 sign, bits 2-1 exponent with bias 1, bit 0 mantissa) times 2:
// exponent 0 is subnormal (0 or 0.5), otherwise (1 + m / 2) * 2^(exp - 1).
constexpr int8_t mxfp4_level(int c) {
  const int exp = (c >> 1) & 3, man = c & 1;
  const int twice = exp == 0 ? man : (2 + man) << (exp - 1);
  return int8_t(c & 8 ? -twice : twice);
}
inline constexpr int8_t kMxfp4Levels[16] = {
    mxfp4_level(0), mxfp4_level(1), mxfp4_level(2),  mxfp4_level(3),  mxfp4_level(4),  mxfp4_level(5),
    mxfp4_level(6), mxfp4_level(7), mxfp4_level(8),  mxfp4_level(9),  mxfp4_level(10), mxfp4_level(11),
    mxfp4_level(12), mxfp4_level(13), mxfp4_level(14), mxfp4_level(15)};
static_assert(kMxfp4Levels[7] == 12 && kMxfp4Levels[5] == 6 && kMxfp4Levels[1] == 1 && kMxfp4Levels[9] == -1);

// MXFP4's E8M0 exponent e -> 2^(e - 128) as a float, built from its bits (e = 0, 1 give
// the subnormals 2^-128 and 2^-127). e = 255 is NaN in the OCP spec; ggml reads it as
// 2^127, and so does this.
inline float e8m0_to_float_half(uint8_t e) {
  return bits_to_float(e < 2 ? uint32_t(0x00200000) << e : uint32_t(e - 1) << 23);
}

// IQ4_XS: the 6-bit scale (0..63, with an offset of 32) of sub-block s (0..7).
inline int iq4_xs_scale(const BlockIQ4_XS& b, int s) {
  return ((b.scales_l[s / 2] >> (4 * (s % 2))) & 0xF) | (((b.scales_h >> (2 * s)) & 3) << 4);
}

// TQ1_0: base-3 digit n (0..4) of a packed byte (0, 1 or 2).
constexpr int tq1_trit(uint8_t b, int n) {
  constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const uint8_t shifted = uint8_t(b * kPow3[n]);  // wraps: drops the digits above n
  return (int(shifted) * 3) >> 8;
}

}  // namespace jevons
