// The fast kernels (kernels/matmul.h) against the reference (matmul_reference), on
// every SIMD target this CPU runs, random inputs with fixed seeds and odd sizes.
//
// Tolerances. For integer-quant weights the fast path quantizes each 32 (Q8_0) or
// 256 (Q8_K) activations of a block b to x~ = d_b * q with q = round(x / d_b), where
// d_b = amax_b / 127 (stored as fp16 for Q8_0: relative error <= 2^-11, times |q| <=
// 127 that adds at most 127 * 2^-11 d_b = 0.062 d_b). Hence per element
//     |x - x~| <= (0.5 + 0.062) d_b   (Q8_0)      |x - x~| <= 0.5 d_b (1 + 1e-6)   (Q8_K)
// and for one output  |y_fast - y_ref| <= sum_b e_b sum_{c in b} |w_c| + f32 rounding,
// with e_b the per-element bound above. The tests assert exactly this bound (plus
// 1e-5 sum|w||x| for f32 summation). They also assert the much tighter statement that
// the integer arithmetic itself is exact: y_fast equals the reference applied to the
// rounded activations x~ up to f32 summation (1e-5 relative to sum |w||x~|). For BF16
// weights x~ = bf16(x) (|x - x~| <= 2^-8 |x|); for F32 / F16, 1e-5 sum|w||x|.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/float16.h"
#include "core/large_buffer.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "kernels/ops.h"
#include "kernels/repack.h"
#include "quant/blocks.h"
#include "quant/quants.h"
#include "quant/types.h"

namespace jevons {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> packed;  // x8 layout of the first rows / 8 * 8 rows (repacked weights)
  std::vector<float> deq;       // exact dequantization, row-major
  Tensor t;
};

// Repacked weights (kernels/repack.h). Where the kernels read the x8 layout, the
// repacked rows' bytes in `data` are overwritten with NaN scales, so a kernel that read
// them instead of `packed` would produce NaN.
void repack(Weights& w) {
  const int64_t packed_rows = w.t.rows / kRepackRows * kRepackRows;
  w.packed.resize(size_t(packed_rows) * w.t.row_bytes());
  repack_x8(w.t, w.packed.data());
  w.t.packed = w.packed.data();
  w.t.packed_rows = packed_rows;
  if (matmul_reads_x8(w.t.type)) std::fill(w.bytes.begin(), w.bytes.begin() + std::ptrdiff_t(w.packed.size()), 0xFF);
}

Weights make_weights(TensorType type, int64_t rows, int64_t cols, uint32_t seed, bool repacked = false) {
  Weights w;
  const TypeTraits& tr = type_traits(type);
  std::vector<float> f = random_floats(size_t(rows * cols), seed, 0.5f);
  // A few rows with a larger dynamic range, and one all-zero block.
  for (int64_t c = 0; c < cols; c += 7) f[size_t(c)] *= 8.0f;
  if (cols >= 64) std::fill(f.begin() + 32, f.begin() + 64, 0.0f);
  const size_t rb = row_bytes(type, cols);
  w.bytes.resize(rb * size_t(rows));
  for (int64_t r = 0; r < rows; ++r) tr.from_float(&f[size_t(r * cols)], w.bytes.data() + size_t(r) * rb, cols);
  w.deq.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) tr.to_float(w.bytes.data() + size_t(r) * rb, &w.deq[size_t(r * cols)], cols);
  w.t = Tensor{"w", type, cols, rows, w.bytes.data()};
  if (repacked) repack(w);
  return w;
}

// ggml's x86 quantize_row_q8_0, dequantized: what the fast path multiplies with.
std::vector<float> round_q8_0(const std::vector<float>& x, std::vector<float>* err_bound) {
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const float dr = fp16_to_float(float_to_fp16(d));
    for (int i = 0; i < 32; ++i) out[b * 32 + i] = std::nearbyint(x[b * 32 + i] * id) * dr;
    if (err_bound) (*err_bound)[b] = (0.5f + 127.0f / 2048.0f) * d * 1.0001f;
  }
  return out;
}

// ggml's quantize_row_q8_K_ref, dequantized (via the reference quantizer).
std::vector<float> round_q8_k(const std::vector<float>& x, std::vector<float>* err_bound) {
  std::vector<float> out(x.size());
  std::vector<BlockQ8_K> blocks(x.size() / 256);
  quant::quantize_q8_k(x.data(), blocks.data(), int64_t(x.size()));
  quant::dequantize_q8_k(blocks.data(), out.data(), int64_t(x.size()));
  if (err_bound)
    for (size_t b = 0; b < blocks.size(); ++b) (*err_bound)[b] = 0.5f * std::fabs(blocks[b].d) * 1.0001f;
  return out;
}

enum class ActRounding { kNone, kQ8_0, kQ8_K, kBF16 };

ActRounding rounding_of(TensorType t) {
  switch (t) {
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1: case TensorType::Q8_0:
    case TensorType::IQ4_NL: case TensorType::MXFP4:
      return ActRounding::kQ8_0;
    case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K: case TensorType::Q5_K: case TensorType::Q6_K:
    case TensorType::IQ4_XS: case TensorType::TQ1_0: case TensorType::TQ2_0:
      return ActRounding::kQ8_K;
    case TensorType::BF16:
      return ActRounding::kBF16;
    default:
      return ActRounding::kNone;
  }
}

// Runs matmul (fast) on random data and checks it against the reference, both on the
// exact activations (derived bound) and on the rounded ones (exact integer arithmetic).
void check_matmul(TensorType type, int64_t rows, int64_t cols, int64_t n_tokens, ThreadPool* pool, uint32_t seed,
                  bool repacked = false) {
  SCOPED_TRACE(testing::Message() << type_name(type) << " rows=" << rows << " cols=" << cols << " tokens=" << n_tokens
                                  << " target=" << kernel_target_name() << (repacked ? " repacked" : ""));
  const Weights w = make_weights(type, rows, cols, seed, repacked);
  std::vector<float> x = random_floats(size_t(n_tokens * cols), seed + 1);
  if (cols >= 96) std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero activation block
  for (size_t i = 5; i < x.size(); i += 97) x[i] *= 20.0f;          // outliers

  const ActRounding rnd = rounding_of(type);
  const int64_t blk = rnd == ActRounding::kQ8_K ? 256 : 32;
  std::vector<float> ebound(x.size() / size_t(blk) + 1, 0.0f);
  std::vector<float> xr;
  switch (rnd) {
    case ActRounding::kQ8_0: xr = round_q8_0(x, &ebound); break;
    case ActRounding::kQ8_K: xr = round_q8_k(x, &ebound); break;
    case ActRounding::kBF16:
      xr = x;
      for (float& v : xr) v = bf16_to_float(float_to_bf16(v));
      break;
    case ActRounding::kNone: xr = x; break;
  }

  std::vector<float> y(size_t(n_tokens * rows), NAN), y_ref(y.size()), y_ref_rounded(y.size());
  ASSERT_EQ(kernel_mode(), KernelMode::kFast);
  matmul(w.t, x.data(), n_tokens, y.data(), pool);
  // The reference reads `data`: give it intact rows when the repacked ones were spoiled.
  const Weights intact = repacked ? make_weights(type, rows, cols, seed) : Weights{};
  const Tensor& ref_w = repacked ? intact.t : w.t;
  matmul_reference(ref_w, x.data(), n_tokens, y_ref.data(), nullptr);
  matmul_reference(ref_w, xr.data(), n_tokens, y_ref_rounded.data(), nullptr);

  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const float* wr = &w.deq[size_t(r * cols)];
      const float* xt = &x[size_t(t * cols)];
      const float* xrt = &xr[size_t(t * cols)];
      double mag = 0, mag_r = 0, bound = 0, min_slack = 0;
      if (type == TensorType::Q4_1 || type == TensorType::Q5_1) {
        // ggml's Q8_1 s = fp16(d * sum q) (not fp16(d) * sum q) multiplies the weight
        // min m (|m| <= max |w| of the block): up to 2^-10 |d sum q| apart.
        for (int64_t c0 = 0; c0 < cols; c0 += 32) {
          double wmax = 0, xs = 0;
          for (int64_t c = c0; c < c0 + 32; ++c) {
            wmax = std::max(wmax, double(std::fabs(wr[c])));
            xs += xrt[c];
          }
          min_slack += wmax * std::fabs(xs) * (1.1 / 1024);
        }
      }
      for (int64_t c = 0; c < cols; ++c) {
        mag += std::fabs(double(wr[c]) * xt[c]);
        mag_r += std::fabs(double(wr[c]) * xrt[c]);
        if (rnd == ActRounding::kQ8_0 || rnd == ActRounding::kQ8_K)
          bound += std::fabs(double(wr[c])) * ebound[size_t((t * cols + c) / blk)];
        else if (rnd == ActRounding::kBF16)
          bound += std::fabs(double(wr[c]) * xt[c]) * (1.0 / 256);  // bf16 keeps 8 significant bits: |x - x~| <= 2^-8 |x|
      }
      const size_t i = size_t(t * rows + r);
      ASSERT_TRUE(std::isfinite(y[i])) << "t=" << t << " r=" << r;
      // 1. Exact integer / float arithmetic on the rounded activations.
      EXPECT_NEAR(y[i], y_ref_rounded[i], 1e-5 * mag_r + min_slack + 1e-6) << "t=" << t << " r=" << r;
      // 2. Against the exact reference: the activation rounding bound.
      EXPECT_NEAR(y[i], y_ref[i], bound + 1e-5 * mag + min_slack + 1e-6) << "t=" << t << " r=" << r;
    }
}

const TensorType kFastTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                 TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                 TensorType::Q5_K, TensorType::Q6_K, TensorType::F32,  TensorType::F16,
                                 TensorType::BF16, TensorType::IQ4_NL, TensorType::MXFP4, TensorType::IQ4_XS,
                                 TensorType::TQ1_0, TensorType::TQ2_0};

// Runs body once per SIMD target compiled in and supported by this CPU.
template <class Body>
void for_each_target(const Body& body) {
  const std::vector<int64_t> targets = kernel_targets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    force_kernel_target(target);
    body();
  }
  force_kernel_target(0);
}

TEST(Kernels, EveryTypeHasAFastPath) {
  for (TensorType t : kFastTypes) EXPECT_TRUE(matmul_has_fast_path(t)) << type_name(t);
  EXPECT_FALSE(matmul_has_fast_path(TensorType::Q8_1));
}

TEST(Kernels, MatmulMatchesReferenceAllTypesAndShapes) {
  ThreadPool pool(3);
  for_each_target([&] {
    for (TensorType type : kFastTypes) {
      const int64_t bs = type_traits(type).block_size;
      std::vector<int64_t> col_options;
      if (bs == 256) col_options = {256, 768};
      else if (bs == 32) col_options = {32, 64, 160};  // odd and even block counts
      else col_options = {172, 64, 7};
      for (int64_t cols : col_options)
        for (int64_t rows : {1, 7, 37})
          for (int64_t n_tokens : {1, 2, 3, 7, 17}) {
            check_matmul(type, rows, cols, n_tokens, rows == 7 ? nullptr : &pool, uint32_t(rows * 1000 + cols + n_tokens));
            if (HasFatalFailure()) return;
          }
    }
  });
}

TEST(Kernels, RepackedWeightsMatchReference) {
  // The x8 kernels (8 rows interleaved) on every target: where a target reads them, the
  // original rows are spoiled (see repack()), so these results come from the repacked
  // bytes; rows past the last full group of 8 come from `data`.
  ThreadPool pool(2);
  for_each_target([&] {
    for (TensorType type : {TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K,
                            TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::BF16, TensorType::F16,
                            TensorType::IQ4_NL, TensorType::MXFP4, TensorType::IQ4_XS}) {
      const int64_t block = type_traits(type).block_size;
      // Floats: fewer columns than the kernel's 4 chains, odd tails of them, and more than
      // one of the prefill tile's 256-column blocks.
      const std::vector<int64_t> col_counts =
          block == 1 ? std::vector<int64_t>{1, 6, 37, 130, 517} : std::vector<int64_t>{block, 2 * block, 5 * block};
      for (int64_t cols : col_counts)
        for (int64_t rows : {8, 13, 40})
          for (int64_t n_tokens : {1, 2, 5, 9, 17}) {
            check_matmul(type, rows, cols, n_tokens, rows == 13 ? nullptr : &pool, uint32_t(rows * 31 + cols + n_tokens), true);
            if (HasFatalFailure()) return;
          }
    }
  });
  kernels::set_vnni_override(1);
  if (std::string(kernel_target_name()).find("VNNI") != std::string::npos)
    for (TensorType type : {TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K,
                            TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL, TensorType::MXFP4,
                            TensorType::IQ4_XS})
      for (int64_t n_tokens : {1, 3, 17}) check_matmul(type, 21, 3 * type_traits(type).block_size, n_tokens, &pool, 23, true);
  kernels::set_vnni_override(-1);
}

TEST(Kernels, RepackedLayoutInterleavesEightRows) {
  // Spelled out for one group: scales first, then 4-byte chunks of the 8 rows in turn.
  Weights w = make_weights(TensorType::Q4_0, 9, 64, 3);
  std::vector<uint8_t> out(8 * w.t.row_bytes());
  repack_x8(w.t, out.data());
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t r = 0; r < 8; ++r) {
      const auto* blk = reinterpret_cast<const BlockQ4_0*>(w.t.row(r)) + b;
      const uint8_t* g = out.data() + size_t(b) * 8 * sizeof(BlockQ4_0);
      EXPECT_EQ(std::memcmp(g + 2 * r, &blk->d, 2), 0) << "block " << b << " row " << r;
      for (int j = 0; j < 4; ++j) EXPECT_EQ(std::memcmp(g + 16 + (8 * j + r) * 4, blk->qs + 4 * j, 4), 0);
    }
}

TEST(Kernels, RepackedFloatsKeepColumnsTogether) {
  // F16: column c of a group is the 8 rows' 2-byte values, one after the other.
  {
    Weights w = make_weights(TensorType::F16, 16, 5, 4);
    std::vector<uint8_t> out(16 * w.t.row_bytes());
    repack_x8(w.t, out.data());
    for (int64_t g = 0; g < 2; ++g)
      for (int64_t c = 0; c < 5; ++c)
        for (int64_t r = 0; r < 8; ++r)
          EXPECT_EQ(std::memcmp(out.data() + size_t((g * 5 + c) * 8 + r) * 2, w.t.row(8 * g + r) + 2 * c, 2), 0)
              << "group " << g << " column " << c << " row " << r;
  }
  // BF16: pair p of a group is the 8 rows' values of columns 2p and 2p+1, row by row
  // (vdpbf16ps' operand); an odd last column follows as F16's columns do.
  for (int64_t cols : {6, 7}) {
    Weights w = make_weights(TensorType::BF16, 16, cols, 5);
    std::vector<uint8_t> out(16 * w.t.row_bytes());
    repack_x8(w.t, out.data());
    for (int64_t g = 0; g < 2; ++g) {
      const uint8_t* group = out.data() + size_t(g * 8 * cols) * 2;
      for (int64_t r = 0; r < 8; ++r) {
        const uint8_t* row = w.t.row(8 * g + r);
        for (int64_t p = 0; p < cols / 2; ++p)
          EXPECT_EQ(std::memcmp(group + size_t(p * 16 + 2 * r) * 2, row + 4 * p, 4), 0)
              << cols << " columns, group " << g << " pair " << p << " row " << r;
        if (cols % 2) {
          EXPECT_EQ(std::memcmp(group + size_t((cols - 1) * 8 + r) * 2, row + 2 * (cols - 1), 2), 0)
              << cols << " columns, group " << g << " last column, row " << r;
        }
      }
    }
  }
}

TEST(Kernels, Bf16DotAndFmaFormsMatchReference) {
  // Repacked BF16 goes through vdpbf16ps where the CPU has AVX512-BF16, else through
  // FMAs on the columns of its pairs; both against the reference, in decode and prefill
  // tiles, with even and odd column counts and more than one 256-column block.
  ThreadPool pool(2);
  const bool has_dot = std::string(kernel_target_name()).find("+BF16") != std::string::npos;
  for (bool dot : {false, true}) {
    if (dot && !has_dot) continue;
    kernels::set_bf16_dot_off(!dot);
    EXPECT_EQ(std::string(kernel_target_name()).find("+BF16") != std::string::npos, dot);
    for (int64_t cols : {2, 9, 64, 517})
      for (int64_t n_tokens : {1, 3, 7, 40}) {
        check_matmul(TensorType::BF16, 45, cols, n_tokens, &pool, uint32_t(cols * 100 + n_tokens), true);
        if (HasFatalFailure()) break;
      }
  }
  kernels::set_bf16_dot_off(false);
  if (!has_dot) GTEST_SKIP() << "checked the FMA form only: no vdpbf16ps on " << kernel_target_name();
}

TEST(Kernels, F16RoundedToBf16AtRepackRunsTheBf16Kernels) {
  // --f16-as-bf16: an F16 matrix repacked with rounding holds BF16's layout of its
  // values rounded to BF16, and its repacked rows give bit for bit what the BF16
  // matrix of those rounded values gives, through the same kernels (vdpbf16ps where
  // the CPU has it, else the FMA form). Rows past the last group of 8 read the F16
  // values in place, with the same bf16-rounded activations.
  ThreadPool pool(2);
  const bool has_dot = std::string(kernel_target_name()).find("+BF16") != std::string::npos;
  for (int64_t cols : {9, 64, 517}) {
    const int64_t rows = 45;  // 5 groups of 8 and 5 rows in place
    const Weights f16 = make_weights(TensorType::F16, rows, cols, uint32_t(cols));
    // The same values rounded to BF16 (not all of them representable: F16 has 3 more bits).
    std::vector<uint16_t> bf16(size_t(rows * cols));
    size_t changed = 0;
    for (size_t i = 0; i < bf16.size(); ++i) {
      bf16[i] = float_to_bf16(f16.deq[i]);
      changed += bf16_to_float(bf16[i]) != f16.deq[i];
    }
    ASSERT_GT(changed, bf16.size() / 2);
    const Tensor bt{"bf16", TensorType::BF16, cols, rows, reinterpret_cast<const uint8_t*>(bf16.data())};
    std::vector<uint8_t> from_f16(size_t(40) * f16.t.row_bytes()), from_bf16(from_f16.size());
    repack_x8(f16.t, from_f16.data(), 0, -1, true);
    repack_x8(bt, from_bf16.data());
    EXPECT_EQ(from_f16, from_bf16);

    RepackArena rounding, plain, where_exact;
    rounding.set_f16_as_bf16(F16AsBf16::kAlways);
    const Tensor wr = rounding.repack(f16.t, false), wb = plain.repack(bt, false);
    if (!wr.packed) GTEST_SKIP() << "this CPU's kernels read no repacked layout";
    EXPECT_TRUE(wr.packed_as_bf16);
    EXPECT_EQ(rounding.f16_as_bf16_bytes(), from_f16.size());
    EXPECT_EQ(rounding.f16_rounded_bytes(), from_f16.size());
    // By default, values that are not all BF16 values keep the matrix F16.
    EXPECT_FALSE(where_exact.repack(f16.t, false).packed_as_bf16);
    EXPECT_EQ(where_exact.f16_as_bf16_bytes(), 0u);
    for (bool dot : {false, true}) {
      if (dot && !has_dot) continue;
      kernels::set_bf16_dot_off(!dot);
      for (int64_t n_tokens : {1, 7, 40}) {
        SCOPED_TRACE(testing::Message() << "cols=" << cols << " tokens=" << n_tokens << " dot=" << dot);
        const std::vector<float> x = random_floats(size_t(n_tokens * cols), uint32_t(n_tokens), 1.0f);
        std::vector<float> y(size_t(n_tokens * rows)), yb(y.size()), yref(y.size());
        matmul(wr, x.data(), n_tokens, y.data(), &pool);
        matmul(wb, x.data(), n_tokens, yb.data(), &pool);
        std::vector<float> xr = x;
        for (float& v : xr) v = bf16_to_float(float_to_bf16(v));
        matmul_reference(f16.t, xr.data(), n_tokens, yref.data(), nullptr);
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            const size_t i = size_t(t * rows + r);
            if (r < 40) {
              ASSERT_EQ(y[i], yb[i]) << "row " << r << " token " << t;
            } else {
              double mag = 0;
              for (int64_t c = 0; c < cols; ++c) mag += std::fabs(f16.deq[size_t(r * cols + c)] * xr[size_t(t * cols + c)]);
              ASSERT_NEAR(y[i], yref[i], 1e-5 * mag + 1e-30) << "row " << r << " token " << t;
            }
          }
      }
    }
    kernels::set_bf16_dot_off(false);
  }
}

TEST(Kernels, F16OfBf16ValuesRunsTheBf16KernelsByDefault) {
  // An F16 matrix whose values are all BF16 values (an F16 file converted from a BF16
  // checkpoint) is repacked as BF16 by default where the CPU has a BF16 dot product:
  // nothing is rounded, and it gives bit for bit what the BF16 matrix gives. One value
  // in a repacked row that is not a BF16 value keeps it F16; so does kNever.
  ThreadPool pool(2);
  const int64_t rows = 45, cols = 517;
  std::vector<uint16_t> as_bf16(size_t(rows * cols)), as_f16(as_bf16.size());
  std::mt19937 rng(9);
  for (size_t i = 0; i < as_bf16.size(); ++i) {
    as_bf16[i] = float_to_bf16(std::normal_distribution<float>(0, 0.05f)(rng));
    as_f16[i] = float_to_fp16(bf16_to_float(as_bf16[i]));
    ASSERT_EQ(fp16_to_float(as_f16[i]), bf16_to_float(as_bf16[i])) << i;
  }
  const Tensor f16{"f16", TensorType::F16, cols, rows, reinterpret_cast<const uint8_t*>(as_f16.data())};
  const Tensor bf16{"bf16", TensorType::BF16, cols, rows, reinterpret_cast<const uint8_t*>(as_bf16.data())};
  RepackArena where_exact, never, plain;
  never.set_f16_as_bf16(F16AsBf16::kNever);
  const Tensor w = where_exact.repack(f16, false), wb = plain.repack(bf16, false);
  if (!w.packed) GTEST_SKIP() << "this CPU's kernels read no repacked layout";
  EXPECT_FALSE(never.repack(f16, false).packed_as_bf16);
  EXPECT_EQ(where_exact.f16_rounded_bytes(), 0u);
  if (!matmul_uses_bf16_dot()) {
    EXPECT_FALSE(w.packed_as_bf16);  // no gain without the dot product: F16 keeps f32 activations
    GTEST_SKIP() << "no BF16 dot product on " << kernel_target_name();
  }
  ASSERT_TRUE(w.packed_as_bf16);
  EXPECT_EQ(where_exact.f16_as_bf16_bytes(), size_t(40 * cols * 2));
  for (int64_t n_tokens : {1, 7, 40}) {
    const std::vector<float> x = random_floats(size_t(n_tokens * cols), uint32_t(n_tokens), 1.0f);
    std::vector<float> y(size_t(n_tokens * rows)), yb(y.size());
    matmul(w, x.data(), n_tokens, y.data(), &pool);
    matmul(wb, x.data(), n_tokens, yb.data(), &pool);
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < 40; ++r)
        ASSERT_EQ(y[size_t(t * rows + r)], yb[size_t(t * rows + r)]) << "row " << r << " token " << t;
  }
  as_f16[size_t(39 * cols + 5)] = 0x3C01;  // 1 + 2^-10, in the last repacked row
  RepackArena again;
  EXPECT_FALSE(again.repack(f16, false).packed_as_bf16);
  EXPECT_EQ(again.f16_as_bf16_bytes(), 0u);
}

TEST(Kernels, RepackingInPartsEqualsRepackingWhole) {
  // Load-time repacking splits large tensors into group ranges, one per thread; the
  // parts must land exactly where the whole would put them.
  for (TensorType type : {TensorType::Q4_0, TensorType::Q5_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                          TensorType::Q5_K, TensorType::Q6_K, TensorType::BF16}) {
    SCOPED_TRACE(type_name(type));
    const Weights w = make_weights(type, 8 * 7 + 3, 512, 11);
    std::vector<uint8_t> whole(size_t(8 * 7) * w.t.row_bytes()), parts(whole.size(), 0);
    repack_x8(w.t, whole.data());
    for (auto [g0, g1] : {std::pair<int64_t, int64_t>{3, 7}, {0, 1}, {1, 3}}) repack_x8(w.t, parts.data(), g0, g1);
    EXPECT_EQ(parts, whole);
  }
  // A tensor large enough (8 MiB) that RepackArena splits it over the cores.
  const int64_t rows = 8 * 257, cols = 2048;
  std::vector<uint16_t> big(size_t(rows * cols));
  for (size_t i = 0; i < big.size(); ++i) big[i] = uint16_t(i * 2654435761u >> 7);
  const Tensor t{"big", TensorType::BF16, cols, rows, reinterpret_cast<const uint8_t*>(big.data())};
  RepackArena arena;
  const Tensor packed = arena.repack(t);
  if (!packed.packed) GTEST_SKIP() << "this CPU's kernels read no repacked layout";
  std::vector<uint8_t> expected(size_t(rows) * t.row_bytes());
  repack_x8(t, expected.data());
  EXPECT_EQ(packed.packed_rows, rows);
  EXPECT_EQ(std::memcmp(packed.packed, expected.data(), expected.size()), 0);
}

TEST(Kernels, RepackArenaPacksTensorsBackToBackInChunks) {
  // 1 MiB chunks: the first two tensors share one, the third (larger than a chunk) gets
  // its own, the fourth no longer fits the first chunk's rest and starts another.
  RepackArena arena(size_t(1) << 20);
  std::vector<Weights> ws;
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{8 * 40, 512}, {8 * 20, 1024}, {8 * 300, 512}, {8 * 120, 512}})
    ws.push_back(make_weights(TensorType::BF16, rows, cols, int(rows)));
  std::vector<Tensor> packed;
  for (const Weights& w : ws) packed.push_back(arena.repack(w.t));
  if (!packed[0].packed) GTEST_SKIP() << "this CPU's kernels read no repacked layout";
  for (size_t i = 0; i < ws.size(); ++i) {
    SCOPED_TRACE(i);
    std::vector<uint8_t> expected(size_t(ws[i].t.rows) * ws[i].t.row_bytes());
    repack_x8(ws[i].t, expected.data());
    EXPECT_EQ(std::memcmp(packed[i].packed, expected.data(), expected.size()), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(packed[i].packed) % 64, 0u);
  }
  EXPECT_EQ(packed[1].packed, packed[0].packed + size_t(8 * 40) * ws[0].t.row_bytes());
  EXPECT_EQ(arena.bytes(), size_t(8 * 40 * 1024 + 8 * 20 * 2048 + 8 * 300 * 1024 + 8 * 120 * 1024));
  EXPECT_EQ(arena.copied_bytes(), 0u);

  // A type without a repacked layout is copied unchanged (into huge pages), and read
  // from there: the original is overwritten to prove it.
  Weights q4_1 = make_weights(TensorType::Q4_1, 37, 512, 9);
  ASSERT_FALSE(has_x8_layout(TensorType::Q4_1));
  const Tensor copied = arena.repack(q4_1.t);
  if (!huge_pages_requested()) {
    EXPECT_EQ(copied.data, q4_1.t.data);
    return;
  }
  ASSERT_NE(copied.data, q4_1.t.data);
  EXPECT_EQ(copied.packed, nullptr);
  EXPECT_EQ(arena.copied_bytes(), q4_1.bytes.size());
  EXPECT_EQ(std::memcmp(copied.data, q4_1.bytes.data(), q4_1.bytes.size()), 0);
  const std::vector<float> x = random_floats(512, 3, 1.0f);
  std::vector<float> original(37), after(37);
  matmul(q4_1.t, x.data(), 1, original.data(), nullptr);
  std::fill(q4_1.bytes.begin(), q4_1.bytes.end(), uint8_t(0xFF));
  matmul(copied, x.data(), 1, after.data(), nullptr);
  EXPECT_EQ(after, original);
}

TEST(LargeBuffer, AlignsToHugePagesAndMoves) {
  const size_t big = (size_t(3) << 20) + 5;
  LargeBuffer a(big, "test buffer");
  ASSERT_NE(a.data(), nullptr);
  EXPECT_GE(a.size(), big);
  if (huge_pages_requested()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % (size_t(2) << 20), 0u);
    EXPECT_EQ(a.size() % (size_t(2) << 20), 0u);
  }
  std::memset(a.data(), 0x5A, a.size());  // all of it is ours (ASan checks the bounds)
  LargeBuffer small(100, "test buffer");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data()) % 64, 0u);
  EXPECT_GE(small.size(), 100u);
  uint8_t* p = a.data();
  LargeBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  small = std::move(b);
  EXPECT_EQ(small.data(), p);
  EXPECT_EQ(small.data()[big - 1], 0x5A);
  EXPECT_THROW(LargeBuffer(SIZE_MAX - 10, "an impossible buffer"), Error);
}

// Repacks 8 rows x 2 blocks of a quant type and calls check(blk, d, chunk) for each row's
// block: blk the original, d the row's repacked d (the fp16 fields of the 8 rows come
// first, `halves` of them per row), chunk(j) the address of the row's repacked chunk j.
template <class Block, class Check>
void check_repacked_blocks(TensorType type, size_t halves, const Check& check) {
  Weights w = make_weights(type, 8, 512, 6);
  std::vector<uint8_t> out(8 * w.t.row_bytes());
  repack_x8(w.t, out.data());
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t r = 0; r < 8; ++r) {
      SCOPED_TRACE(testing::Message() << "block " << b << " row " << r);
      const auto* blk = reinterpret_cast<const Block*>(w.t.row(r)) + b;
      const uint8_t* g = out.data() + size_t(b) * 8 * sizeof(Block);
      EXPECT_EQ(std::memcmp(g + 2 * r, &blk->d, 2), 0);
      check(*blk, g + 2 * r, [&](int j) { return g + 16 * halves + (8 * size_t(j) + size_t(r)) * 4; });
    }
}

TEST(Kernels, RepackedQ5_0TransposesItsFifthBits) {
  // Q5_0: chunk 0 holds the 32 flag bits rearranged per nibble chunk (bit c of byte i:
  // element 4c + i; bit 4 + c: element 16 + 4c + i), then come the nibbles.
  check_repacked_blocks<BlockQ5_0>(TensorType::Q5_0, 1, [](const BlockQ5_0& blk, const uint8_t*, auto chunk) {
    for (int e = 0; e < 32; ++e) {
      const bool flag = (blk.qh[e / 8] >> (e % 8)) & 1;
      const int c = e % 16 / 4, i = e % 4, bit = e < 16 ? c : 4 + c;
      EXPECT_EQ(bool((chunk(0)[i] >> bit) & 1), flag) << "element " << e;
    }
    for (int j = 0; j < 4; ++j) EXPECT_EQ(std::memcmp(chunk(1 + j), blk.qs + 4 * j, 4), 0);
  });
}

TEST(Kernels, RepackedQ4KKeepsScalesAsChunks) {
  // Q4_K has two fp16 fields (d, dmin); its 12 scale bytes are the first 3 chunks.
  check_repacked_blocks<BlockQ4_K>(TensorType::Q4_K, 2, [](const BlockQ4_K& blk, const uint8_t* d, auto chunk) {
    EXPECT_EQ(std::memcmp(d + 16, &blk.dmin, 2), 0);
    for (int j = 0; j < 3; ++j) EXPECT_EQ(std::memcmp(chunk(j), blk.scales + 4 * j, 4), 0);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(std::memcmp(chunk(3 + j), blk.qs + 4 * j, 4), 0);
  });
}

TEST(Kernels, RepackedQ5KKeepsItsFifthBitsBetweenScalesAndCodes) {
  // Q5_K is Q4_K's layout with the 32 bytes of 5th bits (qh) as 8 chunks after the scales.
  check_repacked_blocks<BlockQ5_K>(TensorType::Q5_K, 2, [](const BlockQ5_K& blk, const uint8_t* d, auto chunk) {
    EXPECT_EQ(std::memcmp(d + 16, &blk.dmin, 2), 0);
    for (int j = 0; j < 3; ++j) EXPECT_EQ(std::memcmp(chunk(j), blk.scales + 4 * j, 4), 0);
    for (int j = 0; j < 8; ++j) EXPECT_EQ(std::memcmp(chunk(3 + j), blk.qh + 4 * j, 4), 0);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(std::memcmp(chunk(11 + j), blk.qs + 4 * j, 4), 0);
  });
}

TEST(Kernels, RepackedQ6KPutsItsChunksInReadingOrder) {
  // Q6_K's fp16 d ends its block: in the x8 layout the 8 rows' d come first, then the
  // 4 chunks of scales, then (ql, ql, qh) chunk triples in the order the kernel reads them.
  check_repacked_blocks<BlockQ6_K>(TensorType::Q6_K, 1, [](const BlockQ6_K& blk, const uint8_t*, auto chunk) {
    for (int j = 0; j < 4; ++j) EXPECT_EQ(std::memcmp(chunk(j), blk.scales + 4 * j, 4), 0);
    int j = 4;
    for (int h = 0; h < 2; ++h)
      for (int c = 0; c < 8; ++c, j += 3) {
        EXPECT_EQ(std::memcmp(chunk(j), blk.ql + 64 * h + 4 * c, 4), 0) << "h " << h << " c " << c;
        EXPECT_EQ(std::memcmp(chunk(j + 1), blk.ql + 64 * h + 32 + 4 * c, 4), 0) << "h " << h << " c " << c;
        EXPECT_EQ(std::memcmp(chunk(j + 2), blk.qh + 32 * h + 4 * c, 4), 0) << "h " << h << " c " << c;
      }
    EXPECT_EQ(j, 52);
  });
}

TEST(Kernels, RepackedQ3KPutsItsChunksInReadingOrder) {
  // Q3_K: d[8], the 3 chunks of packed scales, then per half and c4 (c = 4 half + c4)
  // the chunk triple qs (h = 0), qs (h = 1), hmask, all holding bytes 4c .. 4c + 3.
  check_repacked_blocks<BlockQ3_K>(TensorType::Q3_K, 1, [](const BlockQ3_K& blk, const uint8_t*, auto chunk) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(std::memcmp(chunk(j), blk.scales + 4 * j, 4), 0);
    int j = 3;
    for (int c = 0; c < 8; ++c, j += 3) {
      EXPECT_EQ(std::memcmp(chunk(j), blk.qs + 4 * c, 4), 0) << "c " << c;
      EXPECT_EQ(std::memcmp(chunk(j + 1), blk.qs + 32 + 4 * c, 4), 0) << "c " << c;
      EXPECT_EQ(std::memcmp(chunk(j + 2), blk.hmask + 4 * c, 4), 0) << "c " << c;
    }
    EXPECT_EQ(j, 27);
  });
}

TEST(Kernels, RepackedQ2KPutsItsChunksInReadingOrder) {
  // Q2_K: d[8], dmin[8], the 4 scale chunks, then per half and c4 (c = 4 half + c4) the
  // chunk pair qs (h = 0), qs (h = 1), both holding bytes 4c .. 4c + 3.
  check_repacked_blocks<BlockQ2_K>(TensorType::Q2_K, 2, [](const BlockQ2_K& blk, const uint8_t* d, auto chunk) {
    EXPECT_EQ(std::memcmp(d + 16, &blk.dmin, 2), 0);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(std::memcmp(chunk(j), blk.scales + 4 * j, 4), 0);
    int j = 4;
    for (int c = 0; c < 8; ++c, j += 2) {
      EXPECT_EQ(std::memcmp(chunk(j), blk.qs + 4 * c, 4), 0) << "c " << c;
      EXPECT_EQ(std::memcmp(chunk(j + 1), blk.qs + 32 + 4 * c, 4), 0) << "c " << c;
    }
    EXPECT_EQ(j, 20);
  });
}

TEST(Kernels, RowSlicesKeepWholeRepackedGroups) {
  Weights w = make_weights(TensorType::Q8_0, 37, 96, 4, true);
  const Tensor a = w.t.row_slice(16, 21);  // rows 16..36: groups at 16 and 24, then rows 32..36 from data
  EXPECT_EQ(a.packed, w.t.packed + 16 * w.t.row_bytes());
  EXPECT_EQ(a.packed_rows, 16);
  const Tensor b = w.t.row_slice(4, 16);  // not on a group boundary
  EXPECT_EQ(b.packed, nullptr);
  EXPECT_EQ(b.packed_rows, 0);
  const Tensor c = w.t.row_slice(32, 5);  // past the last full group
  EXPECT_EQ(c.packed, nullptr);
  if (!matmul_reads_x8(TensorType::Q8_0)) return;
  // The slice's results come from the repacked groups plus its own tail rows.
  const Weights intact = make_weights(TensorType::Q8_0, 37, 96, 4);
  const std::vector<float> x = random_floats(3 * 96, 5);
  std::vector<float> y(3 * 21), y_ref(3 * 21);
  matmul(a, x.data(), 3, y.data(), nullptr);
  matmul(intact.t.row_slice(16, 21), x.data(), 3, y_ref.data(), nullptr);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 1e-4f * (1.0f + std::fabs(y_ref[i]))) << i;
}

TEST(Kernels, TokenResultDoesNotDependOnTheBatch) {
  // The server batches tokens of different requests into one matmul; each token's
  // result must be bit-identical to computing it alone (a greedy stream must not change
  // with the traffic around it). Every tile shape sums in the same order.
  ThreadPool pool(2);
  for_each_target([&] {
    for (TensorType type : kFastTypes) {
      SCOPED_TRACE(testing::Message() << kernel_target_name() << " " << type_name(type));
      const int64_t block = type_traits(type).block_size;
      // Float columns: over two of the prefill tile's column blocks, and an odd tail.
      const int64_t rows = 37, cols = block == 256 ? 768 : block == 1 ? 517 : 160 + 32 * 3, n_tokens = 11;
      for (bool repacked : {false, true}) {
        if (repacked && !has_x8_layout(type)) continue;
        SCOPED_TRACE(repacked ? "repacked" : "");
        const Weights w = make_weights(type, rows, cols, 9, repacked);
        const std::vector<float> x = random_floats(size_t(n_tokens * cols), 10);
        std::vector<float> batch(static_cast<size_t>(n_tokens * rows)), alone(static_cast<size_t>(rows));
        matmul(w.t, x.data(), n_tokens, batch.data(), &pool);
        for (int64_t t = 0; t < n_tokens; ++t) {
          matmul(w.t, &x[size_t(t * cols)], 1, alone.data(), &pool);
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(batch[size_t(t * rows + r)], alone[size_t(r)]) << "token " << t << " row " << r;
        }
      }
    }
  });
}

TEST(Kernels, SiluMulMatchesReference) {
  // Odd lengths (a vector tail), and gates far out in both directions (exp's range).
  for_each_target([&] {
    for (int64_t n : {1, 7, 8, 9, 31, 100, 1029}) {
      SCOPED_TRACE(testing::Message() << kernel_target_name() << " n=" << n);
      std::vector<float> gate = random_floats(size_t(n), 21), up = random_floats(size_t(n), 22);
      for (size_t i = 0; i < gate.size(); ++i) gate[i] *= 12.0f;  // silu's bend and both tails
      if (n > 4) gate[0] = -300.0f, gate[1] = 300.0f, gate[2] = 0.0f, gate[3] = -90.0f;
      std::vector<float> fast = gate, ref = gate;
      silu_mul(fast.data(), up.data(), n);
      silu_mul_reference(ref.data(), up.data(), n);
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(fast[i], ref[i], 4e-7f * std::fabs(ref[i]) + 1e-30f) << i << " gate " << gate[i];
    }
  });
}

// Key (or value) rows for the attention tests: n rows of `dim` floats read at row + offset.
// Scattered: each row its own allocation, as the oracle's layout. In runs: 16 rows next
// to each other (row j + 1 at row j + dim, as the paged KV cache's head-major blocks keep
// a head's rows), the runs far apart; the kernel reads those in place, not packed.
// With `steep`, every 7th row is scaled by 4: on keys, the scores then rise steeply, and
// the online softmax rescales its sums at each new maximum.
struct AttentionRows {
  std::vector<std::vector<float>> storage;
  std::vector<const float*> rows;
  AttentionRows(int64_t n, int dim, int offset, bool in_runs, uint32_t seed, bool steep) {
    constexpr int64_t kRun = 16;
    const int64_t run_floats = kRun * dim + offset + 4099;  // runs apart by an odd gap
    if (in_runs) storage.push_back(random_floats(size_t((n + kRun - 1) / kRun * run_floats), seed));
    for (int64_t j = 0; j < n; ++j) {
      float* row;
      if (in_runs) {
        row = storage[0].data() + j / kRun * run_floats + j % kRun * dim;
      } else {
        storage.push_back(random_floats(size_t(dim + offset), uint32_t(seed + j)));
        row = storage.back().data();
      }
      if (steep && j % 7 == 3)
        for (int d = 0; d < dim; ++d) row[offset + d] *= 4.0f;
      rows.push_back(row);
      any.push_back(row);
    }
  }
  std::vector<const void*> any;  // the same rows, as the typed attention API takes them
};

TEST(Kernels, AttentionMatchesReference) {
  // Odd head sizes (not multiples of the vector width), a single key, keys whose scores
  // rise and fall steeply (the online softmax rescales its sums at every new maximum),
  // rows scattered in memory or in runs as the paged KV cache has them, and groups of
  // query heads sharing the keys and values (GQA: one head, half a vector of heads, a
  // full one, more than a vector), each head checked against the reference alone.
  for_each_target([&] {
    for (bool in_runs : {false, true})
      for (auto [dk, dv] : {std::pair{64, 64}, std::pair{37, 5}, std::pair{576, 512}, std::pair{128, 128}})
        for (int64_t n_kv : {1, 2, 9, 40, 300})
          for (int n_heads : {1, 3, 8, 12}) {
            SCOPED_TRACE(testing::Message() << kernel_target_name() << " dk=" << dk << " dv=" << dv << " n_kv=" << n_kv
                                            << " heads=" << n_heads << (in_runs ? " rows in runs" : " rows scattered"));
            const std::vector<float> q = random_floats(size_t(n_heads * dk), uint32_t(dk + n_kv));
            const AttentionRows k(n_kv, dk, 3, in_runs, 1000, true), v(n_kv, dv, 2, in_runs, 5000, false);
            const float scale = 1.0f / std::sqrt(float(dk));
            std::vector<float> out(size_t(n_heads * dv), NAN), ref(static_cast<size_t>(dv));
            attention_heads(q.data(), n_heads, TensorType::F32, k.any.data(), 3, v.any.data(), 2, n_kv, dk, dv, scale,
                            out.data());
            for (int h = 0; h < n_heads; ++h) {
              attention_head_reference(&q[size_t(h * dk)], k.rows.data(), 3, v.rows.data(), 2, n_kv, dk, dv, scale,
                                       ref.data());
              for (int d = 0; d < dv; ++d)
                ASSERT_NEAR(out[size_t(h * dv + d)], ref[size_t(d)], 2e-5f * (1.0f + std::fabs(ref[size_t(d)])))
                    << "head " << h << " d " << d;
            }
          }
  });
}

TEST(Kernels, AttentionCausalBlockEqualsOneQueryAtATime) {
  // Prefill attends a block of consecutive tokens at once; each token's heads must come out
  // bit-identical to attending alone (as decode does), and nothing between the strided
  // outputs may be written. Blocks that cross several key chunks, and a single head. With
  // the rows in runs, one query alone reads them in place while the block packs them.
  for (KernelMode mode : {KernelMode::kFast, KernelMode::kReference}) {
    ScopedKernelMode scoped(mode);
    for_each_target([&] {
      for (bool in_runs : {false, true})
        for (auto [dk, dv] : {std::pair{64, 64}, std::pair{37, 5}})
          for (int64_t n_kv : {1, 7, 70, 200})
            for (int n_heads : {1, 3})
              for (int n_queries : {1, 2, 9}) {
                SCOPED_TRACE(testing::Message() << kernel_target_name() << " dk=" << dk << " n_kv=" << n_kv << " heads="
                                                << n_heads << " queries=" << n_queries << (in_runs ? " rows in runs" : ""));
                const int64_t q_stride = n_heads * dk + 5, out_stride = n_heads * dv + 3, keys = n_kv + n_queries - 1;
                const std::vector<float> q = random_floats(size_t(n_queries * q_stride), uint32_t(dk + n_kv + n_queries));
                const AttentionRows k(keys, dk, 3, in_runs, 100, true), v(keys, dv, 2, in_runs, 700, false);
                const float scale = 0.125f;
                std::vector<float> out(size_t(n_queries * out_stride), NAN), alone(size_t(n_heads * dv));
                attention_causal_block(q.data(), q_stride, n_queries, n_heads, TensorType::F32, k.any.data(), 3,
                                       v.any.data(), 2, n_kv, dk, dv, scale, out.data(), out_stride);
                for (int i = 0; i < n_queries; ++i) {
                  attention_heads(&q[size_t(i * q_stride)], n_heads, TensorType::F32, k.any.data(), 3, v.any.data(), 2,
                                  n_kv + i, dk, dv, scale, alone.data());
                  for (int64_t d = 0; d < out_stride; ++d) {
                    const float got = out[size_t(i * out_stride + d)];
                    if (d < n_heads * dv) ASSERT_EQ(got, alone[size_t(d)]) << "query " << i << " element " << d;
                    else ASSERT_TRUE(std::isnan(got)) << "query " << i << " wrote the gap at " << d;
                  }
                }
              }
    });
  }
}

TEST(Kernels, AttentionReadsF16AndBf16RowsAsStored) {
  // KV caches of F16 / BF16 elements: the kernel widens the rows as it reads them, so it
  // must give what the reference gives on the same rows widened exactly, for one query
  // in place and for causal blocks (bit-identical to their queries alone), with offsets.
  for (TensorType type : {TensorType::F16, TensorType::BF16})
    for_each_target([&] {
      for (auto [dk, dv] : {std::pair{64, 64}, std::pair{37, 5}, std::pair{576, 512}})
        for (int64_t n_kv : {1, 9, 130})
          for (int n_heads : {1, 4})
            for (int n_queries : {1, 3}) {
              SCOPED_TRACE(testing::Message() << type_name(type) << " " << kernel_target_name() << " dk=" << dk
                                              << " n_kv=" << n_kv << " heads=" << n_heads << " queries=" << n_queries);
              const int64_t keys = n_kv + n_queries - 1;
              auto make = [&](int dim, int offset, uint32_t seed, std::vector<uint16_t>& store, std::vector<float>& wide) {
                const std::vector<float> f = random_floats(size_t(keys * (dim + offset)), seed);
                store.resize(f.size());
                wide.resize(f.size());
                for (size_t i = 0; i < f.size(); ++i) {
                  store[i] = type == TensorType::F16 ? float_to_fp16(f[i]) : float_to_bf16(f[i]);
                  wide[i] = type == TensorType::F16 ? fp16_to_float(store[i]) : bf16_to_float(store[i]);
                }
              };
              std::vector<uint16_t> ks, vs;
              std::vector<float> kw, vw;
              make(dk, 3, 11, ks, kw);
              make(dv, 2, 12, vs, vw);
              std::vector<const void*> k_rows, v_rows;
              std::vector<const float*> k_ref, v_ref;
              for (int64_t j = 0; j < keys; ++j) {
                k_rows.push_back(&ks[size_t(j * (dk + 3))]);
                v_rows.push_back(&vs[size_t(j * (dv + 2))]);
                k_ref.push_back(&kw[size_t(j * (dk + 3))]);
                v_ref.push_back(&vw[size_t(j * (dv + 2))]);
              }
              const int64_t q_stride = int64_t(n_heads) * dk, out_stride = int64_t(n_heads) * dv;
              const std::vector<float> q = random_floats(size_t(n_queries * q_stride), uint32_t(dk + n_kv));
              const float scale = 1.0f / std::sqrt(float(dk));
              std::vector<float> out(static_cast<size_t>(n_queries * out_stride)), alone(static_cast<size_t>(out_stride)), ref(static_cast<size_t>(dv));
              attention_causal_block(q.data(), q_stride, n_queries, n_heads, type, k_rows.data(), 3, v_rows.data(), 2, n_kv,
                                     dk, dv, scale, out.data(), out_stride);
              for (int i = 0; i < n_queries; ++i) {
                attention_heads(&q[size_t(i * q_stride)], n_heads, type, k_rows.data(), 3, v_rows.data(), 2, n_kv + i, dk,
                                dv, scale, alone.data());
                for (int h = 0; h < n_heads; ++h) {
                  attention_head_reference(&q[size_t(i * q_stride + h * dk)], k_ref.data(), 3, v_ref.data(), 2, n_kv + i,
                                           dk, dv, scale, ref.data());
                  for (int d = 0; d < dv; ++d) {
                    const float got = out[size_t(i * out_stride + h * dv + d)];
                    ASSERT_EQ(got, alone[size_t(h * dv + d)]) << "query " << i << " head " << h << " d " << d;
                    ASSERT_NEAR(got, ref[size_t(d)], 2e-5f * (1.0f + std::fabs(ref[size_t(d)]))) << "head " << h << " d " << d;
                  }
                }
              }
            }
    });
}

TEST(Kernels, AttentionReadsQ8_0RowsAsStored) {
  // A Q8_0 KV cache: rows of 34-byte blocks (f16 scale, 32 int8), offsets in whole
  // blocks. The kernel dequantizes each chunk once; it must match the reference on the
  // same rows dequantized by the type's reference conversion, and causal blocks must
  // equal their queries alone, bit for bit.
  const TypeTraits& q8 = type_traits(TensorType::Q8_0);
  for_each_target([&] {
    for (auto [dk, dv] : {std::pair{64, 64}, std::pair{576, 512}, std::pair{128, 32}})
      for (int64_t n_kv : {1, 9, 130})
        for (int n_heads : {1, 4})
          for (int n_queries : {1, 3}) {
            SCOPED_TRACE(testing::Message() << kernel_target_name() << " dk=" << dk << " n_kv=" << n_kv << " heads=" << n_heads
                                            << " queries=" << n_queries);
            const int64_t keys = n_kv + n_queries - 1;
            const int k_off = 32, v_off = 64;
            auto make = [&](int dim, int offset, uint32_t seed, std::vector<uint8_t>& store, std::vector<float>& wide) {
              const int64_t n = dim + offset;
              const std::vector<float> f = random_floats(size_t(keys * n), seed);
              const size_t rb = row_bytes(TensorType::Q8_0, n);
              store.resize(size_t(keys) * rb);
              wide.resize(f.size());
              for (int64_t j = 0; j < keys; ++j) {
                q8.from_float(&f[size_t(j * n)], &store[size_t(j) * rb], n);
                q8.to_float(&store[size_t(j) * rb], &wide[size_t(j * n)], n);
              }
              return rb;
            };
            std::vector<uint8_t> ks, vs;
            std::vector<float> kw, vw;
            const size_t krb = make(dk, k_off, 21, ks, kw), vrb = make(dv, v_off, 22, vs, vw);
            std::vector<const void*> k_rows, v_rows;
            std::vector<const float*> k_ref, v_ref;
            for (int64_t j = 0; j < keys; ++j) {
              k_rows.push_back(&ks[size_t(j) * krb]);
              v_rows.push_back(&vs[size_t(j) * vrb]);
              k_ref.push_back(&kw[size_t(j * (dk + k_off))]);
              v_ref.push_back(&vw[size_t(j * (dv + v_off))]);
            }
            const int64_t q_stride = int64_t(n_heads) * dk, out_stride = int64_t(n_heads) * dv;
            const std::vector<float> q = random_floats(size_t(n_queries * q_stride), uint32_t(dk + n_kv));
            const float scale = 1.0f / std::sqrt(float(dk));
            std::vector<float> out(static_cast<size_t>(n_queries * out_stride)), alone(static_cast<size_t>(out_stride)),
                ref(static_cast<size_t>(dv));
            attention_causal_block(q.data(), q_stride, n_queries, n_heads, TensorType::Q8_0, k_rows.data(), k_off, v_rows.data(),
                                   v_off, n_kv, dk, dv, scale, out.data(), out_stride);
            for (int i = 0; i < n_queries; ++i) {
              attention_heads(&q[size_t(i * q_stride)], n_heads, TensorType::Q8_0, k_rows.data(), k_off, v_rows.data(), v_off,
                              n_kv + i, dk, dv, scale, alone.data());
              for (int h = 0; h < n_heads; ++h) {
                attention_head_reference(&q[size_t(i * q_stride + h * dk)], k_ref.data(), k_off, v_ref.data(), v_off, n_kv + i,
                                         dk, dv, scale, ref.data());
                for (int d = 0; d < dv; ++d) {
                  const float got = out[size_t(i * out_stride + h * dv + d)];
                  ASSERT_EQ(got, alone[size_t(h * dv + d)]) << "query " << i << " head " << h << " d " << d;
                  ASSERT_NEAR(got, ref[size_t(d)], 2e-5f * (1.0f + std::fabs(ref[size_t(d)]))) << "head " << h << " d " << d;
                }
              }
            }
          }
  });
}

TEST(Kernels, VnniCodePathsMatchReference) {
  // The AVX-512 VNNI variants of the kernels (real vpdpbusd on AVX-512 machines, an
  // exact emulation on AVX2 ones); skipped where the best target is neither.
  kernels::set_vnni_override(1);
  const std::string target = kernel_target_name();
  if (target.find("VNNI") == std::string::npos) {
    kernels::set_vnni_override(-1);
    GTEST_SKIP() << "no VNNI code path for " << target;
  }
  ThreadPool pool(2);
  for (TensorType type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
                          TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q6_K, TensorType::IQ4_NL,
                          TensorType::MXFP4})
    for (int64_t n_tokens : {1, 3, 17}) check_matmul(type, 13, type_traits(type).block_size == 256 ? 512 : 96, n_tokens, &pool, 21);
  kernels::set_vnni_override(-1);
}

TEST(Kernels, LargerMatmulAcrossTokenBlocks) {
  // More tokens than one activation block (those whose activations fit 256 KiB: about
  // 25 at 4096 columns) and rows spread over 2 threads.
  ThreadPool pool(2);
  for (TensorType type : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K, TensorType::BF16,
                          TensorType::IQ4_XS, TensorType::MXFP4})
    check_matmul(type, 45, 4096, 70, &pool, 77);
}

TEST(Kernels, ReferenceModeIsExactlyTheReference) {
  ThreadPool pool(2);
  for (TensorType type : {TensorType::Q4_0, TensorType::Q4_K, TensorType::BF16, TensorType::F32}) {
    const Weights w = make_weights(type, 19, 512, 5);
    const std::vector<float> x = random_floats(size_t(3 * 512), 6);
    std::vector<float> y(3 * 19), y_ref(3 * 19);
    {
      ScopedKernelMode mode(KernelMode::kReference);
      EXPECT_EQ(kernel_mode(), KernelMode::kReference);
      matmul(w.t, x.data(), 3, y.data(), &pool);
    }
    EXPECT_EQ(kernel_mode(), KernelMode::kFast);
    matmul_reference(w.t, x.data(), 3, y_ref.data(), &pool);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], y_ref[i]) << type_name(type) << " i=" << i;
  }
}

TEST(Kernels, TypesWithoutFastPathFallBackToReference) {
  const Weights w = make_weights(TensorType::Q8_1, 5, 256, 9);
  const std::vector<float> x = random_floats(2 * 256, 10);
  std::vector<float> y(10), y_ref(10);
  matmul(w.t, x.data(), 2, y.data(), nullptr);
  matmul_reference(w.t, x.data(), 2, y_ref.data(), nullptr);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], y_ref[i]);
}

TEST(Kernels, ActivationQuantizersMatchGgml) {
  std::vector<float> x = random_floats(1024, 11);
  std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // an all-zero Q8_K block
  x[700] = -40.0f;                                     // a negative max
  x[3] = 0.5f * 127.0f / 127.0f;
  for_each_target([&] {
    SCOPED_TRACE(kernel_target_name());
    // Q8_0 (x86 ggml scheme: d = amax/127 in fp16, q = rint(x * 127/amax)).
    std::vector<kernels::ActQ8> a(1024 / 32);
    ASSERT_TRUE(kernels::quantize_act_q8(x.data(), 1024, a.data()));
    for (size_t b = 0; b < a.size(); ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
      const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        const int q = int(std::nearbyint(x[b * 32 + i] * id));
        ASSERT_EQ(a[b].qs[i], q) << "block " << b << " element " << i;
        sum += q;
      }
      EXPECT_EQ(a[b].d, fp16_to_float(float_to_fp16(d)));
      EXPECT_EQ(a[b].sum, sum);
      EXPECT_EQ(a[b].s, fp16_to_float(float_to_fp16(d * float(sum))));
    }
    // Q8_K: bit-identical to the reference quantizer.
    std::vector<kernels::ActQ8K> k(1024 / 256);
    std::vector<BlockQ8_K> ref(1024 / 256);
    ASSERT_TRUE(kernels::quantize_act_q8k(x.data(), 1024, k.data()));
    quant::quantize_q8_k(x.data(), ref.data(), 1024);
    for (size_t b = 0; b < k.size(); ++b) {
      EXPECT_EQ(k[b].d, ref[b].d) << "block " << b;
      for (int i = 0; i < 256; ++i) ASSERT_EQ(k[b].qs[i], ref[b].qs[i]) << "block " << b << " element " << i;
      for (int g = 0; g < 16; ++g) EXPECT_EQ(k[b].bsums[g], ref[b].bsums[g]);
      for (int g = 0; g < 8; ++g) EXPECT_EQ(k[b].bsums32[g], ref[b].bsums[2 * g] + ref[b].bsums[2 * g + 1]);
    }
  });
}

TEST(Kernels, ThreadCountDoesNotChangeResults) {
  // Rows are split in disjoint chunks and every output is computed by one thread in
  // a fixed order: results are bit-identical for any pool size.
  const Weights w = make_weights(TensorType::Q4_K, 53, 512, 12);
  const std::vector<float> x = random_floats(size_t(5 * 512), 13);
  std::vector<float> y1(5 * 53), y3(5 * 53);
  ThreadPool pool(3);
  matmul(w.t, x.data(), 5, y1.data(), nullptr);
  matmul(w.t, x.data(), 5, y3.data(), &pool);
  for (size_t i = 0; i < y1.size(); ++i) EXPECT_EQ(y1[i], y3[i]);
}

TEST(ThreadPool, ManyQuickJobsWithAndWithoutSpinning) {
  for (const char* spin : {"0", "200"}) {
    setenv("JEVONS_SPIN_US", spin, 1);
    ThreadPool pool(3);
    std::atomic<int64_t> total{0};
    for (int rep = 0; rep < 2000; ++rep) {
      const int64_t n = 1 + rep % 9;
      pool.parallel_for(n, [&](int64_t b, int64_t e) { total += e - b; });
      ASSERT_EQ(total.load(), n) << "spin " << spin << " rep " << rep;
      total = 0;
    }
  }
  unsetenv("JEVONS_SPIN_US");
}

TEST(ThreadPool, StealingCoversEveryIndexOnce) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 5, 64, 1000})
      for (int64_t grain : {1, 3, 16, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for_stealing(n, grain, [&](int64_t b, int64_t e) {
          EXPECT_LE(e - b, grain);
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[size_t(i)].load(), 1) << threads << " threads, n " << n << ", grain " << grain << ", index " << i;
      }
  }
}

TEST(ThreadPool, IdleThreadsTakeTheRestOfASlowThreadsChunk) {
  // The calling thread owns [0, 50) and stalls in its first piece [0, 10) until the
  // other thread has run a piece of that chunk (only stealing does that), or 10 s.
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> stolen{false};
  std::atomic<int64_t> total{0};
  pool.parallel_for_stealing(100, 10, [&](int64_t b, int64_t e) {
    if (b == 0) {
      for (int i = 0; i < 10000 && !stolen.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else if (e <= 50 && std::this_thread::get_id() != caller) {
      stolen = true;
    }
    total += e - b;
  });
  EXPECT_TRUE(stolen.load());
  EXPECT_EQ(total.load(), 100);
}

}  // namespace
}  // namespace jevons
