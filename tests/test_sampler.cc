// Sampler: each filter does what it says, and a seed fixes the sequence.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "runtime/sampler.h"

namespace jevons {
namespace {

std::map<int32_t, int> histogram(SamplerParams p, const std::vector<float>& logits, int draws) {
  Sampler s(p);
  std::map<int32_t, int> h;
  for (int k = 0; k < draws; ++k) {
    std::vector<float> l = logits;
    ++h[s.sample(l.data(), int32_t(l.size()))];
  }
  return h;
}

SamplerParams plain(float temp) {
  SamplerParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

TEST(Sampler, GreedyTakesArgmaxLowestIdOnTies) {
  Sampler s(plain(0.0f));
  std::vector<float> l = {1, 5, 3, 5};
  EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplerParams p = plain(1.0f);
  p.top_k = 1;
  const auto h = histogram(p, {0.0f, 2.0f, 1.9f, -1.0f}, 200);
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 1);
}

TEST(Sampler, TopKLimitsCandidates) {
  SamplerParams p = plain(1.0f);
  p.top_k = 2;
  const auto h = histogram(p, {0.0f, 1.0f, 1.0f, 0.9f, -1.0f}, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_TRUE(h.count(1) && h.count(2));
}

TEST(Sampler, TemperatureMatchesSoftmax) {
  // Two tokens with logits differing by ln 3: p = 0.75 / 0.25 at temp 1.
  const auto h = histogram(plain(1.0f), {std::log(3.0f), 0.0f}, 20000);
  EXPECT_NEAR(h.at(0) / 20000.0, 0.75, 0.02);
  // At temp 2 the ratio is sqrt(3): p0 = sqrt3 / (1 + sqrt3) = 0.634.
  const auto h2 = histogram(plain(2.0f), {std::log(3.0f), 0.0f}, 20000);
  EXPECT_NEAR(h2.at(0) / 20000.0, 0.634, 0.02);
}

TEST(Sampler, TopPKeepsSmallestPrefix) {
  // probs 0.5, 0.3, 0.2: top-p 0.7 keeps two tokens.
  SamplerParams p = plain(1.0f);
  p.top_p = 0.7f;
  const auto h = histogram(p, {std::log(0.5f), std::log(0.3f), std::log(0.2f)}, 5000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_NEAR(h.at(0) / 5000.0, 0.5 / 0.8, 0.03);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  // probs 0.6, 0.3, 0.1: min-p 0.2 -> floor 0.12 drops the last.
  SamplerParams p = plain(1.0f);
  p.min_p = 0.2f;
  const auto h = histogram(p, {std::log(0.6f), std::log(0.3f), std::log(0.1f)}, 5000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_EQ(h.size(), 2u);
}

TEST(Sampler, PenaltiesOnRecentTokens) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  s.accept(0);
  std::vector<float> l = {3.0f, 2.0f};  // 3 / 2 = 1.5 < 2
  EXPECT_EQ(s.sample(l.data(), 2), 1);
  EXPECT_FLOAT_EQ(l[0], 1.5f);

  SamplerParams q = plain(0.0f);
  q.presence_penalty = 0.5f;
  q.frequency_penalty = 0.25f;
  Sampler t(q);
  t.accept(0);
  t.accept(0);
  std::vector<float> m = {3.0f, 2.0f};
  t.sample(m.data(), 2);
  EXPECT_FLOAT_EQ(m[0], 3.0f - 0.5f - 2 * 0.25f);
  EXPECT_FLOAT_EQ(m[1], 2.0f);
}

TEST(Sampler, RepeatWindowForgetsOldTokens) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 10.0f;
  p.repeat_last_n = 2;
  Sampler s(p);
  s.accept(0);
  s.accept(5);
  s.accept(6);  // token 0 has left the window
  std::vector<float> l = {3.0f, 2.0f};
  EXPECT_EQ(s.sample(l.data(), 2), 0);
}

TEST(Sampler, SameSeedSameSequence) {
  SamplerParams p = plain(1.0f);
  p.seed = 7;
  std::vector<float> base(50);
  for (size_t i = 0; i < base.size(); ++i) base[i] = float(i % 7) * 0.3f;
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int k = 0; k < 100; ++k) {
      std::vector<float> l = base;
      out.push_back(s.sample(l.data(), 50));
    }
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, RejectsNonsense) {
  SamplerParams p = plain(1.0f);
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = plain(1.0f);
  p.min_p = 2.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = plain(1.0f);
  p.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
}

}  // namespace
}  // namespace jevons
