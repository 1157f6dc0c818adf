// Tests for the tensor element types (src/quant): the traits table, bit-exact
// dequantization of hand-built blocks, and quantize -> dequantize round trips.
//
// The hand-built tests never use blocks.h or the library's unpacking helpers: they
// write raw bytes at the offsets the layout comments give, and compute the expected
// floats from those raw fields, so a packing slip in dequantize.cc shows up here.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/float16.h"
#include "quant/types.h"

namespace jevons {
namespace {

// fp16 bit patterns of a few exact values.
constexpr uint16_t kHalf = 0x3800;         // 0.5
constexpr uint16_t kQuarter = 0x3400;      // 0.25
constexpr uint16_t kTwo = 0x4000;          // 2.0
constexpr uint16_t kMinusOneHalf = 0xBE00; // -1.5

void put_u16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v & 0xFF);
  p[1] = uint8_t(v >> 8);
}

float half_at(const uint8_t* p) { return fp16_to_float(uint16_t(p[0] | (p[1] << 8))); }

std::vector<float> to_float(TensorType t, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(size_t(n), -12345.0f);
  type_traits(t).to_float(bytes.data(), out.data(), n);
  return out;
}

// Random bytes for a whole block (the scale fields get overwritten by the caller).
std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& v : b) v = uint8_t(rng() & 0xFF);
  return b;
}

// ================================================================== traits table

struct Row {
  TensorType type;
  uint32_t id;
  const char* name;
  int64_t block_size;
  size_t type_size;
};

const Row kRows[] = {
    {TensorType::F32, 0, "f32", 1, 4},         {TensorType::F16, 1, "f16", 1, 2},
    {TensorType::Q4_0, 2, "q4_0", 32, 18},     {TensorType::Q4_1, 3, "q4_1", 32, 20},
    {TensorType::Q5_0, 6, "q5_0", 32, 22},     {TensorType::Q5_1, 7, "q5_1", 32, 24},
    {TensorType::Q8_0, 8, "q8_0", 32, 34},     {TensorType::Q8_1, 9, "q8_1", 32, 36},
    {TensorType::Q2_K, 10, "q2_K", 256, 84},   {TensorType::Q3_K, 11, "q3_K", 256, 110},
    {TensorType::Q4_K, 12, "q4_K", 256, 144},  {TensorType::Q5_K, 13, "q5_K", 256, 176},
    {TensorType::Q6_K, 14, "q6_K", 256, 210},  {TensorType::Q8_K, 15, "q8_K", 256, 292},
    {TensorType::BF16, 30, "bf16", 1, 2},
    {TensorType::IQ4_NL, 20, "iq4_nl", 32, 18}, {TensorType::IQ4_XS, 23, "iq4_xs", 256, 136},
    {TensorType::TQ1_0, 34, "tq1_0", 256, 54},  {TensorType::TQ2_0, 35, "tq2_0", 256, 66},
    {TensorType::MXFP4, 39, "mxfp4", 32, 17},
};

TEST(QuantTypes, TableMatchesGgml) {
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.name);
    const TypeTraits* t = find_type_traits(r.id);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, r.type);
    EXPECT_EQ(uint32_t(t->type), r.id);
    EXPECT_STREQ(t->name, r.name);
    EXPECT_EQ(t->block_size, r.block_size);
    EXPECT_EQ(t->type_size, r.type_size);
    EXPECT_NE(t->to_float, nullptr);
    EXPECT_NE(t->from_float, nullptr);
    EXPECT_EQ(&type_traits(r.type), t);
    EXPECT_STREQ(type_name(r.type), r.name);
  }
}

TEST(QuantTypes, UnknownIdsAreRejected) {
  // 4 and 5 were Q4_2/Q4_3 (removed from ggml); 16..19, 21, 22 and 29 are the grid
  // i-quants jevons lacks; 31..33 and 36..38 were removed repacked types; 40 is past the end.
  for (uint32_t id : {4u, 5u, 16u, 19u, 21u, 22u, 29u, 31u, 36u, 40u, 1001u, 0xFFFFFFFFu}) {
    EXPECT_EQ(find_type_traits(id), nullptr) << id;
  }
  EXPECT_THROW(type_traits(TensorType(4)), Error);
  EXPECT_THROW(type_traits(TensorType(16)), Error);
  EXPECT_THROW(row_bytes(TensorType(99), 256), Error);
}

TEST(QuantTypes, LookupByNameIsCaseInsensitive) {
  for (const Row& r : kRows) {
    std::string upper = r.name;
    for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
    ASSERT_NE(type_traits_by_name(r.name), nullptr) << r.name;
    EXPECT_EQ(type_traits_by_name(r.name)->type, r.type);
    EXPECT_EQ(type_traits_by_name(upper), type_traits_by_name(r.name)) << upper;
  }
  EXPECT_EQ(type_traits_by_name("Q4_k")->type, TensorType::Q4_K);
  EXPECT_EQ(type_traits_by_name("BF16")->type, TensorType::BF16);
  for (const char* bad : {"", "q4", "q4_2", "q4_k_m", "f64", "q8_0 ", " f16", "iq2_xxs"}) {
    EXPECT_EQ(type_traits_by_name(bad), nullptr) << "'" << bad << "'";
  }
}

TEST(QuantTypes, RowBytes) {
  EXPECT_EQ(row_bytes(TensorType::F32, 4096), 16384u);
  EXPECT_EQ(row_bytes(TensorType::F16, 4096), 8192u);
  EXPECT_EQ(row_bytes(TensorType::BF16, 10), 20u);
  EXPECT_EQ(row_bytes(TensorType::Q4_0, 4096), 128u * 18);
  EXPECT_EQ(row_bytes(TensorType::Q4_1, 4096), 128u * 20);
  EXPECT_EQ(row_bytes(TensorType::Q5_0, 4096), 128u * 22);
  EXPECT_EQ(row_bytes(TensorType::Q5_1, 4096), 128u * 24);
  EXPECT_EQ(row_bytes(TensorType::Q8_0, 4096), 128u * 34);
  EXPECT_EQ(row_bytes(TensorType::Q8_1, 64), 72u);
  EXPECT_EQ(row_bytes(TensorType::Q2_K, 4096), 16u * 84);
  EXPECT_EQ(row_bytes(TensorType::Q3_K, 4096), 16u * 110);
  EXPECT_EQ(row_bytes(TensorType::Q4_K, 4096), 16u * 144);
  EXPECT_EQ(row_bytes(TensorType::Q5_K, 4096), 16u * 176);
  EXPECT_EQ(row_bytes(TensorType::Q6_K, 4096), 16u * 210);
  EXPECT_EQ(row_bytes(TensorType::Q8_K, 512), 2u * 292);
  EXPECT_EQ(row_bytes(TensorType::Q4_K, 0), 0u);
}

// ================================================================== float types

TEST(QuantFloat, F16AndBf16) {
  const std::vector<float> x = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 1e-7f, 3.14159265f, 1e30f};
  const int64_t n = int64_t(x.size());
  std::vector<uint8_t> h(size_t(n) * 2), b(size_t(n) * 2), f(size_t(n) * 4);
  type_traits(TensorType::F16).from_float(x.data(), h.data(), n);
  type_traits(TensorType::BF16).from_float(x.data(), b.data(), n);
  type_traits(TensorType::F32).from_float(x.data(), f.data(), n);
  // Raw bits, little-endian.
  EXPECT_EQ(h[4] | h[5] << 8, 0x3C00);   // 1.0
  EXPECT_EQ(h[6] | h[7] << 8, 0xC100);   // -2.5
  EXPECT_EQ(h[8] | h[9] << 8, 0x7BFF);   // 65504, the largest half
  EXPECT_EQ(h[14] | h[15] << 8, 0x7C00); // 1e30 overflows to inf
  EXPECT_EQ(b[4] | b[5] << 8, 0x3F80);   // 1.0
  EXPECT_EQ(b[12] | b[13] << 8, 0x4049); // pi rounds to 3.140625
  const auto hf = to_float(TensorType::F16, h, n);
  const auto bf = to_float(TensorType::BF16, b, n);
  const auto ff = to_float(TensorType::F32, f, n);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(ff[i], x[i]);
    EXPECT_EQ(hf[i], fp16_to_float(float_to_fp16(x[i])));
    EXPECT_EQ(bf[i], bf16_to_float(float_to_bf16(x[i])));
  }
  EXPECT_TRUE(std::signbit(hf[1]));
  EXPECT_EQ(hf[3], -2.5f);
  EXPECT_NEAR(hf[6], 3.14159265f, 3.14159265f / 2048);
  EXPECT_EQ(bf[6], 3.140625f);
  EXPECT_TRUE(std::isinf(hf[7]));
}

TEST(QuantFloat, WhichF16ValuesAreBf16Values) {
  // Every F16 value against an oracle that does not round: a finite nonzero value is a
  // BF16 value when its significand has at most 8 bits (F16's exponents all fit BF16's).
  auto oracle = [](uint16_t h) {
    const double f = fp16_to_float(h);
    if (std::isnan(f) || std::isinf(f) || f == 0) return true;
    int e;
    const double scaled = std::ldexp(std::frexp(f, &e), 8);
    return scaled == std::trunc(scaled);
  };
  int exact = 0;
  for (uint32_t u = 0; u < 65536; ++u) {
    const uint16_t h = uint16_t(u);
    ASSERT_EQ(fp16_is_bf16_value(h), oracle(h)) << std::hex << u;
    ASSERT_EQ(all_fp16_are_bf16_values(reinterpret_cast<const uint8_t*>(&h), 1), oracle(h)) << std::hex << u;
    exact += oracle(h);
  }
  EXPECT_GT(exact, 65536 / 8);  // normals with 3 low bits 0, and most subnormals
  EXPECT_LT(exact, 65536 / 4);

  // Runs: 300 BF16 values from 1 byte past an aligned address, then one value that is
  // not one at places inside the 128-value runs and in the tail; subnormals with low
  // bits set that are BF16 values (0x0001 = 2^-24, 0x0003) pass.
  std::vector<uint8_t> buf(2 * 300 + 1);
  uint8_t* v = buf.data() + 1;
  auto put = [v](size_t i, uint16_t h) { std::memcpy(v + 2 * i, &h, 2); };
  std::mt19937 rng(5);
  for (size_t i = 0; i < 300; ++i) put(i, float_to_fp16(bf16_to_float(float_to_bf16(std::normal_distribution<float>(0, 1)(rng)))));
  ASSERT_TRUE(all_fp16_are_bf16_values(v, 300));
  put(17, 0x0001);
  put(250, 0x8003);
  EXPECT_TRUE(all_fp16_are_bf16_values(v, 300));
  for (size_t at : {0, 127, 128, 255, 256, 299}) {
    uint16_t saved;
    std::memcpy(&saved, v + 2 * at, 2);
    put(at, 0x3C01);  // 1 + 2^-10
    EXPECT_FALSE(all_fp16_are_bf16_values(v, 300)) << at;
    EXPECT_TRUE(all_fp16_are_bf16_values(v, at)) << at;  // the values before it
    put(at, saved);
  }
}

// ================================================================== hand-built legacy blocks

TEST(QuantDequant, Q4_0HandBuilt) {
  std::vector<uint8_t> blk(18);
  put_u16(&blk[0], kHalf);
  for (int j = 0; j < 16; ++j) blk[2 + j] = uint8_t(j | ((15 - j) << 4));
  const auto y = to_float(TensorType::Q4_0, blk, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;              // low nibble: element j
    EXPECT_EQ(y[16 + j], (15 - j - 8) * 0.5f) << j;    // high nibble: element j + 16
  }
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[16], 3.5f);
}

TEST(QuantDequant, Q4_1HandBuilt) {
  std::vector<uint8_t> blk(20);
  put_u16(&blk[0], kQuarter);
  put_u16(&blk[2], kMinusOneHalf);
  for (int j = 0; j < 16; ++j) blk[4 + j] = uint8_t((j * 3 % 16) | (((j * 5 + 1) % 16) << 4));
  const auto y = to_float(TensorType::Q4_1, blk, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j * 3 % 16) * 0.25f - 1.5f) << j;
    EXPECT_EQ(y[16 + j], ((j * 5 + 1) % 16) * 0.25f - 1.5f) << j;
  }
}

TEST(QuantDequant, Q5_0HandBuilt) {
  std::vector<uint8_t> blk(22);
  put_u16(&blk[0], kHalf);
  const uint8_t qh[4] = {0x5A, 0x00, 0xFF, 0x81};  // bit e (little-endian) = element e
  std::memcpy(&blk[2], qh, 4);
  for (int j = 0; j < 16; ++j) blk[6 + j] = uint8_t((j * 7 % 16) | ((j ^ 9) << 4));
  const auto y = to_float(TensorType::Q5_0, blk, 32);
  for (int e = 0; e < 32; ++e) {
    const int low = e < 16 ? (e * 7 % 16) : ((e - 16) ^ 9);
    const int high = (qh[e / 8] >> (e % 8)) & 1;
    EXPECT_EQ(y[e], float(low + 16 * high - 16) * 0.5f) << e;
  }
  // Spot checks by hand: element 1 has its fifth bit (0x5A bit 1), low nibble 7.
  EXPECT_EQ(y[1], (7 + 16 - 16) * 0.5f);
  // Element 31: high nibble of qs[15] = 15^9 = 6, fifth bit = bit 7 of 0x81 = 1.
  EXPECT_EQ(y[31], (6 + 16 - 16) * 0.5f);
  // Element 8: qh byte 1 is 0 -> no fifth bit; low nibble 8*7%16 = 8.
  EXPECT_EQ(y[8], (8 - 16) * 0.5f);
}

TEST(QuantDequant, Q5_1HandBuilt) {
  std::vector<uint8_t> blk(24);
  put_u16(&blk[0], kQuarter);
  put_u16(&blk[2], kTwo);
  const uint8_t qh[4] = {0x01, 0x80, 0x0F, 0xF0};
  std::memcpy(&blk[4], qh, 4);
  for (int j = 0; j < 16; ++j) blk[8 + j] = uint8_t(((15 - j) & 0xF) | ((j * 11 % 16) << 4));
  const auto y = to_float(TensorType::Q5_1, blk, 32);
  for (int e = 0; e < 32; ++e) {
    const int low = e < 16 ? (15 - e) : ((e - 16) * 11 % 16);
    const int high = (qh[e / 8] >> (e % 8)) & 1;
    EXPECT_EQ(y[e], float(low + 16 * high) * 0.25f + 2.0f) << e;
  }
  EXPECT_EQ(y[0], (15 + 16) * 0.25f + 2.0f);  // the largest level
  EXPECT_EQ(y[16], 16 * 0.25f + 2.0f);  // low nibble 0, fifth bit 1 (0x0F bit 0)
}

TEST(QuantDequant, Q8_0AndQ8_1HandBuilt) {
  std::vector<uint8_t> q80(34), q81(36);
  put_u16(&q80[0], kHalf);
  put_u16(&q81[0], kQuarter);
  put_u16(&q81[2], 0x1234);  // s: a cached sum, must not affect the values
  for (int e = 0; e < 32; ++e) {
    const int v = (e * 37 % 256) - 128;  // covers -128 and 127
    q80[2 + e] = uint8_t(int8_t(v));
    q81[4 + e] = uint8_t(int8_t(v));
  }
  q80[2] = uint8_t(int8_t(-128));
  q81[4 + 31] = uint8_t(int8_t(127));
  const auto y0 = to_float(TensorType::Q8_0, q80, 32);
  const auto y1 = to_float(TensorType::Q8_1, q81, 32);
  for (int e = 0; e < 32; ++e) {
    EXPECT_EQ(y0[e], float(int8_t(q80[2 + e])) * 0.5f) << e;
    EXPECT_EQ(y1[e], float(int8_t(q81[4 + e])) * 0.25f) << e;
  }
  EXPECT_EQ(y0[0], -64.0f);
  EXPECT_EQ(y1[31], 31.75f);
}

TEST(QuantDequant, LegacyMultiBlockRow) {
  // Three Q8_0 blocks with different scales: each block must use its own d.
  std::vector<uint8_t> row(3 * 34);
  const uint16_t ds[3] = {kHalf, kTwo, kMinusOneHalf};
  for (int b = 0; b < 3; ++b) {
    put_u16(&row[34 * b], ds[b]);
    for (int e = 0; e < 32; ++e) row[34 * b + 2 + e] = uint8_t(e + b);
  }
  const auto y = to_float(TensorType::Q8_0, row, 96);
  EXPECT_EQ(y[5], 5 * 0.5f);
  EXPECT_EQ(y[32 + 5], 6 * 2.0f);
  EXPECT_EQ(y[64 + 31], 33 * -1.5f);
}

// ================================================================== hand-built K-quant blocks
// Each test writes a few bytes chosen by hand and checks values computed by hand from
// the formula in blocks.h; every other element is checked against the value its
// all-zero bits imply.

TEST(QuantDequant, Q2_KHandBuilt) {
  // bytes 0-15 scales (low nibble scale, high nibble min), 16-79 qs, 80 d, 82 dmin
  std::vector<uint8_t> blk(84, 0);
  for (int s = 0; s < 16; ++s) blk[s] = uint8_t(s | ((15 - s) << 4));  // sc = s, m = 15 - s
  put_u16(&blk[80], kHalf);
  put_u16(&blk[82], kQuarter);
  const int qs = 16;
  blk[qs + 5] = 0xE4;       // 0b11'10'01'00: elements 5, 37, 69, 101 get q = 0, 1, 2, 3
  blk[qs + 32 + 7] = 0x1B;  // 0b00'01'10'11: elements 135, 167, 199, 231 get 3, 2, 1, 0
  blk[qs + 21] = 0x03;      // element 21 gets q = 3
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = -0.25f * float(15 - e / 16);  // q = 0
  want[5] = 0.5f * 0 * 0 - 0.25f * 15;   // -3.75
  want[37] = 1.0f * 1 - 3.25f;           // s=2: dl = 1.0, ml = 13/4
  want[69] = 2.0f * 2 - 2.75f;           // s=4
  want[101] = 3.0f * 3 - 2.25f;          // s=6
  want[135] = 4.0f * 3 - 1.75f;          // s=8
  want[167] = 5.0f * 2 - 1.25f;          // s=10
  want[199] = 6.0f * 1 - 0.75f;          // s=12
  want[231] = 7.0f * 0 - 0.25f;          // s=14
  want[21] = 0.5f * 3 - 3.5f;            // s=1
  const auto y = to_float(TensorType::Q2_K, blk, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], want[e]) << "element " << e;
  EXPECT_EQ(y[101], 6.75f);
  EXPECT_EQ(y[21], -2.0f);
}

TEST(QuantDequant, Q3_KHandBuilt) {
  // bytes 0-31 hmask, 32-95 qs, 96-107 scales, 108 d
  std::vector<uint8_t> blk(110, 0);
  const uint8_t scales[12] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xBA,
                              0xDC, 0xFE, 0xE4, 0x1B, 0x00, 0xFF};
  std::memcpy(&blk[96], scales, 12);
  put_u16(&blk[108], kHalf);
  // The sixteen 6-bit scales, decoded by hand (value - 32):
  //  s  low4 (byte, nibble)   high2 (byte 8 + s%4, bits 2*(s/4))   6-bit  scale
  //  0  0x10 lo = 0           0xE4 b0-1 = 0                          0    -32
  //  1  0x32 lo = 2           0x1B b0-1 = 3                         50     18
  //  2  0x54 lo = 4           0x00      = 0                          4    -28
  //  3  0x76 lo = 6           0xFF b0-1 = 3                         54     22
  //  4  0x98 lo = 8           0xE4 b2-3 = 1                         24     -8
  //  5  0xBA lo = 10          0x1B b2-3 = 2                         42     10
  //  6  0xDC lo = 12          0x00      = 0                         12    -20
  //  7  0xFE lo = 14          0xFF b2-3 = 3                         62     30
  //  8  0x10 hi = 1           0xE4 b4-5 = 2                         33      1
  //  9  0x32 hi = 3           0x1B b4-5 = 1                         19    -13
  // 10  0x54 hi = 5           0x00      = 0                          5    -27
  // 11  0x76 hi = 7           0xFF b4-5 = 3                         55     23
  // 12  0x98 hi = 9           0xE4 b6-7 = 3                         57     25
  // 13  0xBA hi = 11          0x1B b6-7 = 0                         11    -21
  // 14  0xDC hi = 13          0x00      = 0                         13    -19
  // 15  0xFE hi = 15          0xFF b6-7 = 3                         63     31
  const int sc[16] = {-32, 18, -28, 22, -8, 10, -20, 30, 1, -13, -27, 23, 25, -21, -19, 31};
  const int qs = 32;
  // Element 250: half 1, r = 122, crumb 3 of qs[32 + 26], third bit = hmask[26] bit 7.
  blk[qs + 32 + 26] = 0x80;  // crumb 3 = 2 (element 250); crumb 2 = 0 (element 218)
  blk[26] = 0x80;            // element 250's third bit set: q = 2 - 0
  // Element 33: half 0, r = 33, crumb 1 of qs[1]; third bit = hmask[1] bit 1.
  blk[qs + 1] = 0x0C;        // crumb 1 = 3
  blk[1] = 0x02;             // set: q = 3
  // Element 1: crumb 0 of qs[1] = 0, hmask[1] bit 0 clear: q = 0 - 4 (the default).
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5f * float(sc[e / 16]) * -4.0f;  // all bits 0
  want[250] = 0.5f * 31 * 2;     // 31
  want[218] = 0.5f * -21 * -4;   // 42 (s = 13)
  want[33] = 0.5f * -28 * 3;     // -42 (s = 33 / 16 = 2)
  const auto y = to_float(TensorType::Q3_K, blk, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], want[e]) << "element " << e;
  EXPECT_EQ(y[250], 31.0f);
  EXPECT_EQ(y[218], 42.0f);
  EXPECT_EQ(y[33], -42.0f);
  EXPECT_EQ(y[1], 64.0f);  // s = 0: 0.5 * -32 * -4
}

// The 12 scale bytes shared by the Q4_K and Q5_K tests, and what they decode to.
//  byte 0 = 0xC3: sc0 = 3,  top bits 3 -> sc4 high   byte 4 = 0x81: m0 = 1,  top 2 -> m4 high
//  byte 1 = 0x05: sc1 = 5,  top 0      -> sc5 high   byte 5 = 0x02: m1 = 2,  top 0 -> m5 high
//  byte 2 = 0x4A: sc2 = 10, top 1      -> sc6 high   byte 6 = 0x00: m2 = 0,  top 0 -> m6 high
//  byte 3 = 0x3F: sc3 = 63, top 0      -> sc7 high   byte 7 = 0xC7: m3 = 7,  top 3 -> m7 high
//  byte 8  = 0x9A: sc4 = 0xA | 3 << 4 = 58,  m4 = 9 | 2 << 4 = 41
//  byte 9  = 0x21: sc5 = 1,                  m5 = 2
//  byte 10 = 0x0F: sc6 = 15 | 1 << 4 = 31,   m6 = 0
//  byte 11 = 0x54: sc7 = 4,                  m7 = 5 | 3 << 4 = 53
constexpr uint8_t kK4Scales[12] = {0xC3, 0x05, 0x4A, 0x3F, 0x81, 0x02,
                                   0x00, 0xC7, 0x9A, 0x21, 0x0F, 0x54};
constexpr int kK4Sc[8] = {3, 5, 10, 63, 58, 1, 31, 4};
constexpr int kK4M[8] = {1, 2, 0, 7, 41, 2, 0, 53};

TEST(QuantDequant, Q4_KHandBuilt) {
  // bytes 0 d, 2 dmin, 4-15 scales, 16-143 qs
  std::vector<uint8_t> blk(144, 0);
  put_u16(&blk[0], kHalf);
  put_u16(&blk[2], kQuarter);
  std::memcpy(&blk[4], kK4Scales, 12);
  const int qs = 16;
  blk[qs + 0] = 0x21;       // element 0 (s0) = 1, element 32 (s1) = 2
  blk[qs + 32 + 4] = 0x90;  // element 100 (group 1, r = 36 -> high nibble, s3) = 9
  blk[qs + 64 + 2] = 0x7C;  // element 130 (s4) = 12, element 162 (s5) = 7
  blk[qs + 96 + 31] = 0xF0; // element 255 (s7) = 15, element 223 (s6) = 0
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = -0.25f * float(kK4M[e / 32]);  // q = 0
  want[0] = 0.5f * 3 * 1 - 0.25f * 1;      // 1.25
  want[32] = 0.5f * 5 * 2 - 0.25f * 2;     // 4.5
  want[100] = 0.5f * 63 * 9 - 0.25f * 7;   // 281.75
  want[130] = 0.5f * 58 * 12 - 0.25f * 41; // 337.75: sub-block 4, high scale bits elsewhere
  want[162] = 0.5f * 1 * 7 - 0.25f * 2;    // 3.0
  want[255] = 0.5f * 4 * 15 - 0.25f * 53;  // 16.75
  // A second block in the same row: same header, every q = 1 (all nibbles 0x1), so every
  // element shows its sub-block's scale and min.
  std::vector<uint8_t> row(2 * 144);
  std::memcpy(&row[0], blk.data(), 144);
  std::memcpy(&row[144], blk.data(), 16);
  std::memset(&row[144 + 16], 0x11, 128);
  for (int e = 0; e < 256; ++e) want.push_back(0.5f * float(kK4Sc[e / 32]) - 0.25f * float(kK4M[e / 32]));
  const auto y = to_float(TensorType::Q4_K, row, 512);
  for (int e = 0; e < 512; ++e) EXPECT_EQ(y[e], want[e]) << "element " << e;
  EXPECT_EQ(y[130], 337.75f);
  EXPECT_EQ(y[255], 16.75f);
  EXPECT_EQ(y[223], 0.0f);             // sc6 = 31 but q = 0, and m6 = 0
  EXPECT_EQ(y[256 + 4 * 32], 18.75f);  // sub-block 4: 0.5 * 58 - 0.25 * 41
  EXPECT_EQ(y[256 + 7 * 32], -11.25f); // sub-block 7: 0.5 * 4 - 0.25 * 53
}

TEST(QuantDequant, Q5_KHandBuilt) {
  // bytes 0 d, 2 dmin, 4-15 scales, 16-47 qh, 48-175 qs
  std::vector<uint8_t> blk(176, 0);
  put_u16(&blk[0], kHalf);
  put_u16(&blk[2], kQuarter);
  std::memcpy(&blk[4], kK4Scales, 12);
  const int qh = 16, qs = 48;
  blk[qs + 0] = 0x21;       // element 0 = 1, element 32 = 2 (low 4 bits)
  blk[qs + 64 + 2] = 0x7C;  // element 130 = 12, element 162 = 7
  blk[qs + 96 + 31] = 0xF0; // element 255 = 15
  blk[qh + 2] = 0x30;       // fifth bit for e % 32 == 2 in sub-blocks 4, 5: elements 130, 162
  blk[qh + 31] = 0x80;      // element 255 (sub-block 7)
  blk[qh + 0] = 0x02;       // element 32 (sub-block 1); element 0 keeps bit 0 clear
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = -0.25f * float(kK4M[e / 32]);
  want[0] = 0.5f * 3 * 1 - 0.25f * 1;         // 1.25
  want[32] = 0.5f * 5 * 18 - 0.25f * 2;       // 44.5
  want[130] = 0.5f * 58 * 28 - 0.25f * 41;    // 801.75
  want[162] = 0.5f * 1 * 23 - 0.25f * 2;      // 11.0
  want[255] = 0.5f * 4 * 31 - 0.25f * 53;     // 48.75
  want[98] = 0.5f * 63 * 0 - 0.25f * 7;       // e % 32 == 2 in sub-block 3: bit 3 clear
  const auto y = to_float(TensorType::Q5_K, blk, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], want[e]) << "element " << e;
  EXPECT_EQ(y[130], 801.75f);
  EXPECT_EQ(y[255], 48.75f);
}

TEST(QuantDequant, Q6_KHandBuilt) {
  // bytes 0-127 ql, 128-191 qh, 192-207 int8 scales, 208 d
  std::vector<uint8_t> blk(210, 0);
  const int8_t sc[16] = {1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 127, -128};
  std::memcpy(&blk[192], sc, 16);
  put_u16(&blk[208], kHalf);
  const int ql = 0, qh = 128;
  // First half, l = 0: ql[0] holds elements 0 (low) and 64 (high), ql[32] holds 32 and 96;
  // qh[0] holds their high bits at 0-1 (e0), 2-3 (e32), 4-5 (e64), 6-7 (e96).
  blk[ql + 0] = 0x5A;
  blk[ql + 32] = 0x3C;
  blk[qh + 0] = 0xE4;  // 0b11'10'01'00
  // Second half, l = 17: ql[64 + 17] holds elements 145 (low) and 209 (high),
  // ql[64 + 32 + 17] holds 177 (low) and 241 (high); qh[32 + 17] their high bits.
  blk[ql + 64 + 17] = 0x01;
  blk[ql + 96 + 17] = 0xF0;
  blk[qh + 32 + 17] = 0xC0;  // element 241's high bits = 3
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5f * float(sc[e / 16]) * -32.0f;  // q = 0 - 32
  want[0] = 0.5f * 1 * (0xA + 0 - 32);       // -11
  want[32] = 0.5f * 2 * (0xC + 16 - 32);     // -4
  want[64] = 0.5f * 3 * (0x5 + 32 - 32);     // 7.5
  want[96] = 0.5f * 4 * (0x3 + 48 - 32);     // 38
  want[145] = 0.5f * -5 * (1 - 32);          // 77.5
  want[241] = 0.5f * -128 * (15 + 48 - 32);  // -1984
  const auto y = to_float(TensorType::Q6_K, blk, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], want[e]) << "element " << e;
  EXPECT_EQ(y[0], -11.0f);
  EXPECT_EQ(y[96], 38.0f);
  EXPECT_EQ(y[241], -1984.0f);
  EXPECT_EQ(y[209], 112.0f);  // 0.5 * -7 * -32
}

TEST(QuantDequant, Q8_KHandBuilt) {
  // bytes 0-3 fp32 d, 4-259 int8 qs, 260-291 int16 bsums (not used by to_float)
  std::vector<uint8_t> blk(292, 0xAB);
  const float d = -0.25f;
  std::memcpy(&blk[0], &d, 4);
  for (int e = 0; e < 256; ++e) blk[4 + e] = uint8_t(int8_t(e - 128));
  const auto y = to_float(TensorType::Q8_K, blk, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], -0.25f * float(e - 128)) << e;
}

// ================================================================== spec decoders
// Independent per-element decoders written straight from the layout comments, run on
// random bytes (with sane fp16 scales) and compared with to_float bit for bit.

float spec_q2_k(const uint8_t* b, int e) {
  const int s = e / 16, h = e / 128, r = e % 128;
  const int q = (b[16 + 32 * h + r % 32] >> (2 * (r / 32))) & 3;
  return (half_at(b + 80) * float(b[s] & 0xF)) * float(q) - half_at(b + 82) * float(b[s] >> 4);
}

float spec_q3_k(const uint8_t* b, int e) {
  const uint8_t* sc = b + 96;
  const int s = e / 16, h = e / 128, r = e % 128;
  const int low4 = s < 8 ? (sc[s] & 0xF) : (sc[s - 8] >> 4);
  const int high2 = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
  const int scale = (low4 | (high2 << 4)) - 32;
  const int low2 = (b[32 + 32 * h + r % 32] >> (2 * (r / 32))) & 3;
  const int hbit = (b[r % 32] >> (4 * h + r / 32)) & 1;
  return (half_at(b + 108) * float(scale)) * float(low2 - (hbit ? 0 : 4));
}

void spec_k4_scale_min(const uint8_t* sc, int j, int& scale, int& min) {
  if (j < 4) {
    scale = sc[j] & 63;
    min = sc[j + 4] & 63;
  } else {
    scale = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
    min = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
  }
}

float spec_q4_k(const uint8_t* b, int e) {
  int scale, min;
  spec_k4_scale_min(b + 4, e / 32, scale, min);
  const int g = e / 64, r = e % 64;
  const uint8_t byte = b[16 + 32 * g + r % 32];
  const int q = r < 32 ? byte & 0xF : byte >> 4;
  return (half_at(b) * float(scale)) * float(q) - half_at(b + 2) * float(min);
}

float spec_q5_k(const uint8_t* b, int e) {
  int scale, min;
  const int s = e / 32;
  spec_k4_scale_min(b + 4, s, scale, min);
  const int g = e / 64, r = e % 64;
  const uint8_t byte = b[48 + 32 * g + r % 32];
  const int q = (r < 32 ? byte & 0xF : byte >> 4) | (((b[16 + e % 32] >> s) & 1) << 4);
  return (half_at(b) * float(scale)) * float(q) - half_at(b + 2) * float(min);
}

float spec_q6_k(const uint8_t* b, int e) {
  const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
  const uint8_t lo = b[64 * h + 32 * (k & 1) + l];
  const int low4 = k < 2 ? lo & 0xF : lo >> 4;
  const int high2 = (b[128 + 32 * h + l] >> (2 * k)) & 3;
  return (half_at(b + 208) * float(int8_t(b[192 + e / 16]))) * float((low4 | high2 << 4) - 32);
}

struct SpecCase {
  TensorType type;
  size_t block_bytes;
  std::vector<size_t> half_offsets;  // fp16 fields to replace with sane values
  float (*spec)(const uint8_t*, int);
};

// Random blocks (with sane values in their fp16 fields) decoded by to_float and by the spec.
template <size_t N>
void check_spec_cases(const SpecCase (&cases)[N], int elements = 256) {
  const uint16_t halves[] = {0x2E66 /*~0.1*/, 0x1E4C /*~0.006*/, 0x3C00, 0xB0CD /*~-0.15*/};
  uint32_t seed = 1;
  for (const SpecCase& c : cases) {
    SCOPED_TRACE(type_name(c.type));
    const int nblocks = 3;
    std::vector<uint8_t> row;
    for (int b = 0; b < nblocks; ++b) {
      auto blk = random_bytes(c.block_bytes, seed++);
      for (size_t k = 0; k < c.half_offsets.size(); ++k) {
        put_u16(&blk[c.half_offsets[k]], halves[(b + k) % 4]);
      }
      row.insert(row.end(), blk.begin(), blk.end());
    }
    const auto y = to_float(c.type, row, elements * nblocks);
    for (int b = 0; b < nblocks; ++b) {
      for (int e = 0; e < elements; ++e) {
        ASSERT_EQ(y[size_t(elements) * b + e], c.spec(&row[c.block_bytes * b], e)) << "block " << b << " element " << e;
      }
    }
  }
}

TEST(QuantDequant, KQuantsMatchLayoutSpecOnRandomBlocks) {
  const SpecCase cases[] = {
      {TensorType::Q2_K, 84, {80, 82}, spec_q2_k},
      {TensorType::Q3_K, 110, {108}, spec_q3_k},
      {TensorType::Q4_K, 144, {0, 2}, spec_q4_k},
      {TensorType::Q5_K, 176, {0, 2}, spec_q5_k},
      {TensorType::Q6_K, 210, {208}, spec_q6_k},
  };
  check_spec_cases(cases);
}

// The table-level and ternary types, each element from the byte offsets of the layout
// (blocks.h), with the levels written out here rather than taken from blocks.h.
const int kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

float spec_iq4_nl(const uint8_t* b, int e) {
  const uint8_t byte = b[2 + e % 16];
  return half_at(b) * float(kIq4Levels[e < 16 ? byte & 0xF : byte >> 4]);
}

float spec_iq4_xs(const uint8_t* b, int e) {
  const int s = e / 32, r = e % 32;
  const int scales_h = b[2] | b[3] << 8;
  const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | (((scales_h >> (2 * s)) & 3) << 4);
  const uint8_t byte = b[8 + 16 * s + r % 16];
  return (half_at(b) * float(ls - 32)) * float(kIq4Levels[r < 16 ? byte & 0xF : byte >> 4]);
}

// E2M1 from its definition (sign, exponent bias 1, subnormal at exponent 0), E8M0 = 2^(e-127).
float spec_mxfp4(const uint8_t* b, int e) {
  const uint8_t byte = b[1 + e % 16];
  const int c = e < 16 ? byte & 0xF : byte >> 4;
  const int exp = (c >> 1) & 3, man = c & 1;
  const float mag = exp == 0 ? 0.5f * float(man) : (1.0f + 0.5f * float(man)) * std::ldexp(1.0f, exp - 1);
  return (c & 8 ? -mag : mag) * std::ldexp(1.0f, int(b[0]) - 127);
}

float spec_tq2_0(const uint8_t* b, int e) {
  const int t = (b[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
  return float(t - 1) * half_at(b + 64);
}

// TQ1_0: a byte b is the fraction b / 256 written in base 3; its first 5 digits are those
// of floor(243 b / 256), the first one most significant. (Any byte decodes: 243..255 too.)
float spec_tq1_0(const uint8_t* b, int e) {
  int byte, digit;
  if (e < 160) byte = b[e % 32], digit = e / 32;
  else if (e < 240) byte = b[32 + (e - 160) % 16], digit = (e - 160) / 16;
  else byte = b[48 + (e - 240) % 4], digit = (e - 240) / 4;
  int v = byte * 243 / 256;
  for (int n = 4; n > digit; --n) v /= 3;
  return float(v % 3 - 1) * half_at(b + 52);
}

TEST(QuantDequant, TableAndTernaryTypesMatchLayoutSpecOnRandomBlocks) {
  const SpecCase cases[] = {
      {TensorType::IQ4_XS, 136, {0}, spec_iq4_xs},
      {TensorType::TQ2_0, 66, {64}, spec_tq2_0},
      {TensorType::TQ1_0, 54, {52}, spec_tq1_0},
  };
  check_spec_cases(cases);
  const SpecCase small_cases[] = {
      {TensorType::IQ4_NL, 18, {0}, spec_iq4_nl},
      {TensorType::MXFP4, 17, {}, spec_mxfp4},
  };
  check_spec_cases(small_cases, 32);
}

// ggml's TQ1_0 packing, by hand: digits (2, 0, 1, 2, 1) = 2*81 + 0 + 9 + 6 + 1 = 178 are
// stored as ceil(178 * 256 / 243) = 188.
TEST(QuantQuantize, Tq1_0PacksTritsAsAFraction) {
  std::vector<float> x(256, 0.0f);
  const int digits[5] = {2, 0, 1, 2, 1};
  for (int n = 0; n < 5; ++n) x[32 * n + 3] = float(digits[n] - 1);  // qs[3], digit n
  std::vector<uint8_t> blk(54);
  type_traits(TensorType::TQ1_0).from_float(x.data(), blk.data(), 256);
  EXPECT_EQ(blk[3], 188);
  EXPECT_EQ(blk[0], (121 * 256 + 242) / 243);  // all zeros: digits 1 1 1 1 1 = 121
  EXPECT_EQ(half_at(&blk[52]), 1.0f);
  EXPECT_EQ(to_float(TensorType::TQ1_0, blk, 256), x);
}

// MXFP4 quantization, by hand: amax 5 gives the exponent floor(log2 5) - 2 = 0, i.e. a
// scale of 1 for the E2M1 values: 5 -> 4 or 6 (tie: the first, 4), 0.3 -> 0.5, -2.6 -> -3.
TEST(QuantQuantize, Mxfp4FollowsTheOcpScheme) {
  std::vector<float> x(32, 0.0f);
  x[0] = 5.0f;
  x[1] = 0.3f;
  x[17] = -2.6f;
  x[18] = 1.25f;  // between 1 and 1.5: 1.5 is nearer? |1.25-1| = |1.25-1.5|: the first, 1
  std::vector<uint8_t> blk(17);
  type_traits(TensorType::MXFP4).from_float(x.data(), blk.data(), 32);
  EXPECT_EQ(blk[0], 127);
  const auto y = to_float(TensorType::MXFP4, blk, 32);
  EXPECT_EQ(y[0], 4.0f);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[17], -3.0f);
  EXPECT_EQ(y[18], 1.0f);
  EXPECT_EQ(y[2], 0.0f);
}

// ================================================================== quantizers

// ggml's reference scheme, by hand: Q4_0 takes d = (signed extreme) / -8.
TEST(QuantQuantize, Q4_0FollowsGgmlScheme) {
  std::vector<float> x(32, 0.0f);
  x[0] = -4.0f;  // the extreme: d = -4 / -8 = 0.5
  x[1] = 1.0f;   // 1/0.5 + 8.5 = 10.5 -> truncated to 10
  x[2] = 2.2f;   // 4.4 + 8.5 = 12.9 -> 12
  x[17] = 4.0f;  // 8 + 8.5 = 16.5 -> 16, clamped to 15 (the opposite extreme loses d)
  x[18] = -0.3f; // -0.6 + 8.5 = 7.9 -> 7
  std::vector<uint8_t> blk(18);
  type_traits(TensorType::Q4_0).from_float(x.data(), blk.data(), 32);
  EXPECT_EQ(blk[0] | blk[1] << 8, 0x3800);
  EXPECT_EQ(blk[2 + 0], 0x00 | (8 << 4));   // element 0 = 0, element 16 (x = 0) = 8
  EXPECT_EQ(blk[2 + 1], 10 | (15 << 4));    // element 1 = 10, element 17 = 15
  EXPECT_EQ(blk[2 + 2], 12 | (7 << 4));     // element 2 = 12, element 18 = 7
  const auto y = to_float(TensorType::Q4_0, blk, 32);
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(y[17], 3.5f);
  EXPECT_EQ(y[18], -0.5f);
}

TEST(QuantQuantize, Q8_0AndQ8_1FollowGgmlScheme) {
  std::vector<float> x(32, 0.0f);
  x[3] = 63.5f;   // amax: d = 0.5
  x[4] = 1.25f;   // 2.5 rounds away from zero -> 3
  x[5] = -1.25f;  // -> -3
  x[6] = 0.2f;    // 0.4 -> 0
  std::vector<uint8_t> b0(34), b1(36);
  type_traits(TensorType::Q8_0).from_float(x.data(), b0.data(), 32);
  type_traits(TensorType::Q8_1).from_float(x.data(), b1.data(), 32);
  EXPECT_EQ(b0[0] | b0[1] << 8, 0x3800);
  EXPECT_EQ(int8_t(b0[2 + 3]), 127);
  EXPECT_EQ(int8_t(b0[2 + 4]), 3);
  EXPECT_EQ(int8_t(b0[2 + 5]), -3);
  EXPECT_EQ(int8_t(b0[2 + 6]), 0);
  EXPECT_EQ(b1[0] | b1[1] << 8, 0x3800);
  EXPECT_EQ(half_at(&b1[2]), 0.5f * 127);  // s = d * sum(q) = 0.5 * (127 + 3 - 3)
  EXPECT_EQ(std::memcmp(&b0[2], &b1[4], 32), 0);
}

TEST(QuantQuantize, Q8_KFollowsGgmlScheme) {
  std::vector<float> x(256, 0.0f);
  x[0] = 2.0f;    // extreme: iscale = -127 / 2 = -63.5
  x[1] = -1.0f;   // 63.5 -> 64 (ties to even)
  x[2] = 1.0f;    // -63.5 -> -64
  x[17] = 0.5f;   // -31.75 -> -32
  std::vector<uint8_t> blk(292);
  type_traits(TensorType::Q8_K).from_float(x.data(), blk.data(), 256);
  float d;
  std::memcpy(&d, &blk[0], 4);
  EXPECT_EQ(d, 1.0f / -63.5f);
  EXPECT_EQ(int8_t(blk[4 + 0]), -127);
  EXPECT_EQ(int8_t(blk[4 + 1]), 64);
  EXPECT_EQ(int8_t(blk[4 + 2]), -64);
  EXPECT_EQ(int8_t(blk[4 + 17]), -32);
  int16_t bsums[16];
  std::memcpy(bsums, &blk[260], 32);
  EXPECT_EQ(bsums[0], -127 + 64 - 64);
  EXPECT_EQ(bsums[1], -32);
  for (int g = 2; g < 16; ++g) EXPECT_EQ(bsums[g], 0);
}

const TensorType kAllTypes[] = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0, TensorType::Q8_1, TensorType::Q2_K,
    TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K,
    TensorType::IQ4_NL, TensorType::IQ4_XS, TensorType::MXFP4, TensorType::TQ1_0, TensorType::TQ2_0,
};

std::vector<float> round_trip(TensorType t, const std::vector<float>& x) {
  const TypeTraits& tr = type_traits(t);
  std::vector<uint8_t> q(row_bytes(t, int64_t(x.size())), 0xCD);  // garbage: all bytes must be written
  tr.from_float(x.data(), q.data(), int64_t(x.size()));
  std::vector<float> y(x.size());
  tr.to_float(q.data(), y.data(), int64_t(x.size()));
  return y;
}

TEST(QuantQuantize, ZerosStayZeros) {
  const std::vector<float> x(512, 0.0f);
  for (TensorType t : kAllTypes) {
    const auto y = round_trip(t, x);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], 0.0f) << type_name(t) << " " << i;
  }
}

// Round-trip error bounds, as a fraction of the max |x| of the block (the super-block
// of 256 for K-quants). For the legacy types they follow from the scheme: a step of
// d gives at most d/2, or a whole d for the value clamped on the short side of the
// signed types, plus fp16 rounding of d and m (relative 2^-11, times up to 2^bits).
// For the K-quants, whose sub-block scales are themselves quantized, the bounds are
// empirical (the test prints the measured values), about 1.3x what this row gives:
// in units of the ideal half step of the sub-block grid (1/3, 1/8, 1/15, 1/31, 1/64
// of amax for Q2_K..Q6_K) the worst element errs by about 1.0, 1.3, 1.0, 1.2, 1.05.
struct Bound {
  TensorType type;
  double max_err;  // max |y - x| / block amax
  double rms_err;  // rms((y - x) / amax) / rms(x / amax), each element over its block's amax
};

constexpr double kHalfUlp = 1.0 / 2048;  // fp16 relative rounding
const Bound kBounds[] = {
    {TensorType::Q8_0, 0.5 / 127 + kHalfUlp, 0.005},
    {TensorType::Q8_1, 0.5 / 127 + kHalfUlp, 0.005},
    {TensorType::Q8_K, 0.5 / 127 * 1.001, 0.005},
    {TensorType::Q4_0, 1.0 / 8 + kHalfUlp, 0.075},
    {TensorType::Q4_1, 1.0 / 15 + 3 * kHalfUlp, 0.06},
    {TensorType::Q5_0, 1.0 / 16 + kHalfUlp, 0.038},
    {TensorType::Q5_1, 1.0 / 31 + 3 * kHalfUlp, 0.03},
    {TensorType::Q2_K, 0.42, 0.19},
    {TensorType::Q3_K, 0.21, 0.12},
    {TensorType::Q4_K, 0.09, 0.05},
    {TensorType::Q5_K, 0.05, 0.025},
    {TensorType::Q6_K, 0.022, 0.015},
    // Non-uniform levels: the widest gap (24 of 127, at the ends) bounds the error; the
    // measured values are 0.143 / 0.063 (IQ4_NL) and 0.137 / 0.060 (IQ4_XS).
    {TensorType::IQ4_NL, 0.16, 0.075},
    {TensorType::IQ4_XS, 0.16, 0.075},
    // The OCP scale 2^(floor(log2 amax) - 2) puts amax between 4 and 8 scale units, and
    // E2M1 stops at 6: a block's extreme can lose up to a quarter of amax (ggml does the same).
    {TensorType::MXFP4, 0.25 + kHalfUlp, 0.16},
    // Ternary: anything under amax / 2 becomes 0.
    {TensorType::TQ1_0, 0.5 + kHalfUlp, 0.46},
    {TensorType::TQ2_0, 0.5 + kHalfUlp, 0.46},
};

// A test row of 64 super-blocks with varied statistics: gaussian, uniform, one-sided,
// heavy outliers, small magnitudes, and blocks whose sub-blocks differ wildly in scale.
// (Magnitudes stay where fp16 scales are normal numbers: for blocks so small that d
// becomes an fp16 subnormal, ggml's formats themselves lose relative precision.)
std::vector<float> test_row() {
  std::mt19937 rng(20240607);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> x(256 * 64);
  for (int b = 0; b < 64; ++b) {
    float* v = &x[256 * b];
    for (int i = 0; i < 256; ++i) {
      switch (b % 8) {
        case 0: v[i] = gauss(rng) * 0.02f; break;                      // weight-like
        case 1: v[i] = uni(rng); break;
        case 2: v[i] = 3.0f + uni(rng); break;                          // all positive
        case 3: v[i] = -5.0f + 0.5f * uni(rng); break;                  // all negative
        case 4: v[i] = gauss(rng) * (i % 37 == 0 ? 20.0f : 1.0f); break;  // outliers
        case 5: v[i] = gauss(rng) * 0.01f; break;                      // small
        case 6: v[i] = gauss(rng) * std::pow(2.0f, float(i / 32 - 4)); break;  // sub-block scales
        default: v[i] = gauss(rng) * 100.0f; break;
      }
    }
  }
  return x;
}

TEST(QuantQuantize, RoundTripErrorWithinBounds) {
  const std::vector<float> x = test_row();
  for (const Bound& bound : kBounds) {
    SCOPED_TRACE(type_name(bound.type));
    const int64_t bs = type_traits(bound.type).block_size;
    const auto y = round_trip(bound.type, x);
    double worst = 0.0, sum_err2 = 0.0, sum_x2 = 0.0;
    for (size_t b = 0; b < x.size(); b += size_t(bs)) {
      double amax = 0.0;
      for (int64_t i = 0; i < bs; ++i) amax = std::max(amax, double(std::fabs(x[b + i])));
      for (int64_t i = 0; i < bs; ++i) {
        const double err = std::fabs(double(y[b + i]) - double(x[b + i]));
        ASSERT_TRUE(std::isfinite(y[b + i]));
        worst = std::max(worst, err / amax);
        sum_err2 += err * err / (amax * amax);  // normalized per block: scale-free
        sum_x2 += double(x[b + i]) * x[b + i] / (amax * amax);
      }
    }
    const double rms = std::sqrt(sum_err2 / sum_x2);
    EXPECT_LE(worst, bound.max_err);
    EXPECT_LE(rms, bound.rms_err);
    std::printf("[          ] %-5s max err %.5f of block amax (bound %.5f), rms err %.5f (bound %.5f)\n",
                type_name(bound.type), worst, bound.max_err, rms, bound.rms_err);
  }
}

TEST(QuantQuantize, FloatTypesRoundTrip) {
  const std::vector<float> x = test_row();
  const auto f32 = round_trip(TensorType::F32, x);
  const auto f16 = round_trip(TensorType::F16, x);
  const auto bf16 = round_trip(TensorType::BF16, x);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(f32[i], x[i]);
    // Relative to the value, except that halves below 2^-14 are subnormal (absolute).
    ASSERT_LE(std::fabs(f16[i] - x[i]), std::max(std::fabs(x[i]) / 2048.0f, 1.0f / (1 << 25))) << i;
    ASSERT_LE(std::fabs(bf16[i] - x[i]), std::fabs(x[i]) / 256.0f) << i;
  }
}

// Values already on a block's grid come back exactly (the quantizer picks the grid of
// the extreme value, and the others are integer multiples of it).
TEST(QuantQuantize, ExactlyRepresentableValuesSurvive) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = 0.25f * float((i * 5) % 15 - 7);  // -1.75 .. 1.75
  x[10] = -2.0f;                                                        // extreme: -8 * 0.25
  x[42] = -2.0f;
  const auto q4 = round_trip(TensorType::Q4_0, x);
  const auto q5 = round_trip(TensorType::Q5_0, x);  // d = 0.125, also exact
  const auto q8 = round_trip(TensorType::Q8_0, x);  // d = 2/127 is not exact in fp16
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(q4[i], x[i]) << i;
    EXPECT_EQ(q5[i], x[i]) << i;
    EXPECT_NEAR(q8[i], x[i], 2.0f / 127 / 2 + 2.0f / 2048) << i;
  }
}

// Every quantizer must write every byte of its output deterministically (round_trip
// pre-fills garbage, so two runs with different garbage must agree).
TEST(QuantQuantize, OutputIsDeterministicAndComplete) {
  const std::vector<float> x = test_row();
  for (TensorType t : kAllTypes) {
    const TypeTraits& tr = type_traits(t);
    std::vector<uint8_t> a(row_bytes(t, int64_t(x.size())), 0x00);
    std::vector<uint8_t> b(a.size(), 0xFF);
    tr.from_float(x.data(), a.data(), int64_t(x.size()));
    tr.from_float(x.data(), b.data(), int64_t(x.size()));
    EXPECT_EQ(a, b) << type_name(t);
  }
}

}  // namespace
}  // namespace jevons
