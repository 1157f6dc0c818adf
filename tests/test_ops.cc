// Reference ops against hand-computed values, and the thread pool's coverage.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <numeric>

#include "core/float16.h"
#include "core/thread_pool.h"
#include "kernels/ops.h"

namespace jevons {
namespace {

TEST(Ops, RmsNorm) {
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f};
  float out[4];
  rms_norm(x, w, 4, 0.0f, out);
  const float inv = 1.0f / std::sqrt(30.0f / 4.0f);
  EXPECT_NEAR(out[0], 1 * inv, 1e-6);
  EXPECT_NEAR(out[2], 3 * inv * 2, 1e-6);
  EXPECT_NEAR(out[3], 4 * inv * 0.5f, 1e-6);
}

TEST(Ops, RopeStylesRotateTheRightPairs) {
  RopeConfig rc;
  rc.n_rot = 4;
  rc.freq_base = 10000.0f;
  // Pair i rotates by pos * base^(-2i/n_rot): i=0 -> pos, i=1 -> pos/100.
  const float pos = 3.0f;
  const float a0 = pos, a1 = pos / 100.0f;
  float adj[6] = {1, 0, 0, 1, 7, 8};  // head_dim 6: dims 4,5 pass through
  rc.style = RopeStyle::kAdjacentPairs;
  rope(adj, 1, 6, 3, rc, nullptr);
  EXPECT_NEAR(adj[0], std::cos(a0), 1e-6);
  EXPECT_NEAR(adj[1], std::sin(a0), 1e-6);
  EXPECT_NEAR(adj[2], -std::sin(a1), 1e-6);
  EXPECT_NEAR(adj[3], std::cos(a1), 1e-6);
  EXPECT_EQ(adj[4], 7.0f);
  EXPECT_EQ(adj[5], 8.0f);

  float half[4] = {1, 0, 0, 1};  // pairs (0,2) and (1,3)
  rc.style = RopeStyle::kHalves;
  rope(half, 1, 4, 3, rc, nullptr);
  EXPECT_NEAR(half[0], std::cos(a0), 1e-6);
  EXPECT_NEAR(half[2], std::sin(a0), 1e-6);
  EXPECT_NEAR(half[1], -std::sin(a1), 1e-6);
  EXPECT_NEAR(half[3], std::cos(a1), 1e-6);
}

TEST(Ops, RopeLinearScalingAndFreqFactors) {
  RopeConfig rc;
  rc.n_rot = 2;
  rc.freq_scale = 0.25f;  // linear factor 4: position 8 rotates like position 2
  float x[2] = {1, 0};
  rope(x, 1, 2, 8, rc, nullptr);
  EXPECT_NEAR(x[0], std::cos(2.0f), 1e-6);
  RopeConfig plain;
  plain.n_rot = 2;
  const float ff[1] = {4.0f};  // llama3-style factor divides the frequency
  float y[2] = {1, 0};
  rope(y, 1, 2, 8, plain, ff);
  EXPECT_NEAR(y[0], std::cos(2.0f), 1e-6);
}

TEST(Ops, AttentionIsSoftmaxWeightedValues) {
  // q.k = {0, ln 3} with scale 1 -> weights 1/4, 3/4.
  const float q[1] = {1.0f};
  const float k[2] = {0.0f, std::log(3.0f)};
  const float v[4] = {4, 0, 0, 8};  // v_j has 2 dims
  float out[2];
  const float* k_rows[2] = {k, k + 1};
  const float* v_rows[2] = {v, v + 2};
  attention_head_reference(q, k_rows, 0, v_rows, 0, 2, 1, 2, 1.0f, out);
  EXPECT_NEAR(out[0], 1.0f, 1e-5);
  EXPECT_NEAR(out[1], 6.0f, 1e-5);
}

TEST(Ops, MatmulOverTypesAndTokens) {
  // 3 x 32 matrix in f16; two tokens.
  std::vector<uint16_t> w(3 * 32);
  std::vector<float> wf(3 * 32), x(2 * 32);
  for (size_t i = 0; i < w.size(); ++i) {
    wf[i] = float(int(i % 11) - 5) * 0.125f;
    w[i] = float_to_fp16(wf[i]);
  }
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 5) - 2);
  Tensor t{"w", TensorType::F16, 32, 3, reinterpret_cast<const uint8_t*>(w.data())};
  std::vector<float> y(6);
  ThreadPool pool(2);
  matmul(t, x.data(), 2, y.data(), &pool);
  for (int tok = 0; tok < 2; ++tok)
    for (int r = 0; r < 3; ++r) {
      double want = 0;
      for (int c = 0; c < 32; ++c) want += wf[size_t(r * 32 + c)] * x[size_t(tok * 32 + c)];
      EXPECT_NEAR(y[size_t(tok * 3 + r)], want, 1e-5);
    }
}

TEST(ThreadPool, CoversEveryIndexOnceRepeatedly) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 5, 100, 1001}) {
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
  EXPECT_GE(physical_core_count(), 1);
}

TEST(Float16, ConversionsRoundTrip) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) EXPECT_EQ(fp16_to_float(float_to_fp16(f)), f);
  EXPECT_TRUE(std::isinf(fp16_to_float(float_to_fp16(1e6f))));
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)), 1.0f);  // ties to even
  EXPECT_EQ(bf16_to_float(float_to_bf16(3.140625f)), 3.140625f);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

}  // namespace
}  // namespace jevons
