// Sampler: each filter does what it says, and a seed fixes the sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "core/error.h"
#include "runtime/sampler.h"

namespace jevons {
namespace {

std::map<int32_t, int> histogram(SamplerParams p, const std::vector<float>& logits, int draws) {
  Sampler s(p);
  std::map<int32_t, int> h;
  for (int k = 0; k < draws; ++k) {
    ++h[s.sample(logits.data(), int32_t(logits.size()), {})];
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
  EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
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
  const std::vector<float> l = {3.0f, 2.0f};  // 3 / 2 = 1.5 < 2
  EXPECT_EQ(s.sample(l.data(), 2, std::vector<int32_t>{0}), 1);
  EXPECT_EQ(s.sample(l.data(), 2, {}), 0);  // the history is the caller's: nothing is remembered
  EXPECT_FLOAT_EQ(l[0], 3.0f);              // the logits are not modified

  // The penalised logits are what logprobs_of reports on.
  SamplerParams q = plain(0.0f);
  q.presence_penalty = 0.5f;
  q.frequency_penalty = 0.25f;
  const std::vector<int32_t> history = {0, 0};
  const Logprobs lp = logprobs_of(q, l.data(), 2, history, 0, 2);
  const double l0 = 3.0 - 0.5 - 2 * 0.25, l1 = 2.0;
  EXPECT_NEAR(lp.logprob, l0 - std::log(std::exp(l0) + std::exp(l1)), 1e-6);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 0);
}

TEST(Sampler, RepeatWindowForgetsOldTokens) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 10.0f;
  p.repeat_last_n = 2;
  Sampler s(p);
  const std::vector<float> l = {3.0f, 2.0f};
  EXPECT_EQ(s.sample(l.data(), 2, std::vector<int32_t>{0, 5, 6}), 0);  // token 0 has left the window
  EXPECT_EQ(s.sample(l.data(), 2, std::vector<int32_t>{5, 0, 6}), 1);
}

TEST(Sampler, DistributionIsWhatSampleDrawsFrom) {
  SamplerParams p = plain(1.0f);
  p.top_k = 3;
  Sampler s(p);
  const std::vector<float> l = {0.0f, 2.0f, 1.0f, -1.0f, 1.5f};
  TokenDistribution d;
  s.distribution(l.data(), 5, {}, &d);
  ASSERT_EQ(d.ids, (std::vector<int32_t>{1, 4, 2}));
  const double z = std::exp(2.0) + std::exp(1.5) + std::exp(1.0);
  EXPECT_NEAR(d.prob(1), std::exp(2.0) / z, 1e-12);
  EXPECT_NEAR(d.prob(2), std::exp(1.0) / z, 1e-12);
  EXPECT_EQ(d.prob(0), 0.0);
}

// Pearson's chi-square statistic of observed counts against probabilities, over the
// tokens with probability > 0; a token drawn with probability 0 makes it infinite.
double chi_square(const std::map<int32_t, int>& counts, const TokenDistribution& p, int n) {
  double x2 = 0;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double e = p.probs[i] * n;
    const auto it = counts.find(p.ids[i]);
    const double o = it == counts.end() ? 0 : it->second;
    x2 += (o - e) * (o - e) / e;
  }
  for (auto [id, c] : counts)
    if (p.prob(id) == 0 && c > 0) return INFINITY;
  return x2;
}

// The rejection rule keeps the target's distribution, whatever proposes: tokens drawn
// from a draft distribution q (accepted with min(1, p/q), else drawn from max(0, p - q))
// and tokens proposed with certainty. 5 candidates (4 degrees of freedom): the 0.1%
// critical value is 18.47. A rule that is wrong in either of its halves fails it.
TEST(Sampler, VerificationKeepsTheTargetDistribution) {
  SamplerParams sp = plain(1.0f);
  const std::vector<float> target = {1.0f, 0.2f, -0.5f, 0.8f, 0.0f};
  const std::vector<float> draft = {0.1f, 1.5f, 0.3f, -1.0f, 0.6f};
  Sampler s(sp);
  TokenDistribution p, q;
  s.distribution(target.data(), 5, {}, &p);
  s.distribution(draft.data(), 5, {}, &q);
  constexpr int kN = 40000;
  constexpr double kCritical = 18.47;
  sp.seed = 11;
  Sampler rng(sp);
  std::map<int32_t, int> with_q, certain, accept_always, resample_from_p;
  for (int i = 0; i < kN; ++i) {
    const int32_t x = rng.draw(q);
    ++with_q[rng.verify(p, x, &q).token];
    ++certain[rng.verify(p, 3, nullptr).token];
    ++accept_always[x];  // broken: no verification at all
    // Broken: the acceptance is right, but a rejection draws from p instead of the residual.
    const bool accept = rng.uniform() * q.prob(x) < p.prob(x);
    ++resample_from_p[accept ? x : rng.draw(p)];
  }
  EXPECT_LT(chi_square(with_q, p, kN), kCritical);
  EXPECT_LT(chi_square(certain, p, kN), kCritical);
  EXPECT_GT(chi_square(accept_always, p, kN), kCritical);
  EXPECT_GT(chi_square(resample_from_p, p, kN), kCritical);
}

TEST(Sampler, GreedyVerificationAcceptsOnlyTheArgmax) {
  Sampler s(plain(0.0f));
  const std::vector<float> l = {0.5f, 2.0f, 1.0f};
  TokenDistribution p;
  s.distribution(l.data(), 3, {}, &p);
  EXPECT_TRUE(s.verify(p, 1, nullptr).accepted);
  const Verdict v = s.verify(p, 2, nullptr);
  EXPECT_FALSE(v.accepted);
  EXPECT_EQ(v.token, 1);
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
    for (int k = 0; k < 100; ++k) out.push_back(s.sample(base.data(), 50, {}));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

// distribution_among() is distribution() over logits whose refused tokens are -inf:
// same candidates, same probabilities; or false when it cannot tell within its checks.
TEST(Sampler, DistributionAmongAllowedIsTheMaskedOne) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const int32_t n = 3000;
  int answered = 0, declined = 0;
  for (int trial = 0; trial < 200; ++trial) {
    SamplerParams p;
    p.temperature = trial % 4 == 0 ? 0.0f : 0.9f;
    p.top_k = trial % 5 == 1 ? 0 : 1 + trial % 50;
    p.top_p = trial % 3 == 0 ? 1.0f : 0.9f;
    p.min_p = trial % 2 == 0 ? 0.0f : 0.05f;
    p.repeat_penalty = trial % 7 == 0 ? 1.3f : 1.0f;
    const Sampler s(p);
    std::vector<float> logits(size_t(n), 0.0f);
    for (float& l : logits) l = trial % 9 == 0 ? float(int(normal(rng))) : normal(rng);  // some with ties
    std::vector<int32_t> history;
    for (int k = 0; k < 20; ++k) history.push_back(int32_t(rng() % n));
    const int every = 1 + trial % 40;  // allowed: one token in `every`
    const auto allowed = [&](int32_t id) { return (id * 7919) % every == 0; };
    TokenDistribution lazy, full;
    if (!s.distribution_among(logits.data(), n, history, allowed, 256, &lazy)) {
      ++declined;
      continue;
    }
    ++answered;
    std::vector<float> masked = logits;
    for (int32_t i = 0; i < n; ++i)
      if (!allowed(i)) masked[size_t(i)] = -INFINITY;
    s.distribution(masked.data(), n, history, &full);
    ASSERT_EQ(lazy.ids, full.ids) << "trial " << trial;
    ASSERT_EQ(lazy.probs.size(), full.probs.size());
    for (size_t i = 0; i < lazy.probs.size(); ++i) EXPECT_NEAR(lazy.probs[i], full.probs[i], 1e-12) << "trial " << trial;
  }
  EXPECT_GT(answered, 60);  // greedy, or a small top-k with a dense enough mask
  EXPECT_GT(declined, 20);   // top-k off, or too few allowed tokens among the best 256
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
