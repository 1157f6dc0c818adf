// IEEE half and bfloat16 <-> float conversions (portable, bit exact).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace jevons {

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN (quiet).
inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf/nan
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // subnormal: value = mant * 2^-24
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round to nearest even, with overflow to inf and gradual underflow.
inline uint16_t float_to_fp16(float f) {
  uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;          // nan
  if (u >= 0x477ff000u) return sign | 0x7c00u;         // overflow (>= 65520) -> inf
  if (u < 0x38800000u) {                               // below min normal 2^-14
    if (u < 0x33000000u) return sign;                  // < 2^-25 rounds to 0
    const uint32_t exp = u >> 23;
    const uint32_t mant = (u & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;                  // 14..24
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return sign | uint16_t(half);
  }
  u += 0xfffu + ((u >> 13) & 1u);
  return sign | uint16_t(((u >> 13) - (112u << 10)) & 0xffffu);
}

// Whether an F16 value is also a BF16 value (rounding it to BF16 keeps it): F16 has 11
// significant bits, BF16 8, so a normal F16 value is one when its 3 lowest mantissa bits
// are 0. F16 files converted from BF16 checkpoints hold only such values (a BF16 value
// rounded to F16 keeps at most its own 8 bits, subnormals included). NaN counts as one.
inline bool fp16_is_bf16_value(uint16_t h) {
  const float f = fp16_to_float(h);
  return f != f || bf16_to_float(float_to_bf16(f)) == f;
}

// fp16_is_bf16_value for every one of n values (no alignment needed). With the 3 low
// bits of each 0, values are (a subnormal's mantissa is then a multiple of 8 below
// 1024: at most 7 significant bits), which is checked 128 at a time; a run with any
// of those bits set is checked value by value.
inline bool all_fp16_are_bf16_values(const uint8_t* values, size_t n) {
  constexpr size_t kRun = 128;
  auto one_by_one = [values](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      uint16_t h;
      std::memcpy(&h, values + 2 * i, 2);
      if (!fp16_is_bf16_value(h)) return false;
    }
    return true;
  };
  size_t i = 0;
  for (; i + kRun <= n; i += kRun) {
    uint64_t low_bits = 0;
    for (size_t k = 0; k < kRun / 4; ++k) {
      uint64_t w;
      std::memcpy(&w, values + 2 * i + 8 * k, 8);
      low_bits |= w & 0x0007000700070007ull;
    }
    if (low_bits != 0 && !one_by_one(i, i + kRun)) return false;
  }
  return one_by_one(i, n);
}

}  // namespace jevons
