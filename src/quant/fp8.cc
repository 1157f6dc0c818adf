// FP8 E4M3 (OCP "E4M3FN": 1 sign, 4 exponent bits with bias 7, 3 mantissa bits;
// no infinities, 0x7f/0xff are NaN, largest finite value 448).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "quant/quants.h"

namespace jevons {

float fp8_e4m3_to_float(uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 0xf, mant = v & 0x7;
  float x;
  if (exp == 0xf && mant == 0x7) return NAN;
  if (exp == 0) x = std::ldexp(float(mant), -9);  // subnormal: mant/8 * 2^-6
  else x = std::ldexp(1.0f + float(mant) / 8.0f, exp - 7);
  return sign ? -x : x;
}

}  // namespace jevons

namespace jevons::quant {

void dequantize_f8_e4m3(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp8_e4m3_to_float(b[i]);
}

// Round to nearest (ties to the even code), saturating at +-448. Codes 0..126 are
// the non-negative values in increasing order, so a binary search finds the neighbours.
static uint8_t encode_e4m3(float x) {
  static const std::array<float, 127> values = [] {
    std::array<float, 127> v{};
    for (int c = 0; c < 127; ++c) v[size_t(c)] = fp8_e4m3_to_float(uint8_t(c));
    return v;
  }();
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  const auto hi = std::lower_bound(values.begin(), values.end(), a);
  if (hi == values.end()) return sign | 126;  // saturate
  const int h = int(hi - values.begin());
  if (h == 0) return sign;
  const float dl = a - values[size_t(h - 1)], dh = values[size_t(h)] - a;
  const int code = dl < dh ? h - 1 : dh < dl ? h : ((h - 1) % 2 == 0 ? h - 1 : h);
  return sign | uint8_t(code);
}

void quantize_f8_e4m3(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) b[i] = encode_e4m3(src[i]);
}

}  // namespace jevons::quant
