#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <unordered_map>

#include "core/error.h"

namespace jevons {
namespace {

bool has_penalties(const SamplerParams& p) {
  return p.repeat_last_n > 0 && (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f);
}

// The logits with the penalties applied: `logits` itself when no penalty applies, else
// a copy in `buf` with the last repeat_last_n tokens of history penalised.
const float* penalised(const SamplerParams& p, const float* logits, int32_t n_vocab, std::span<const int32_t> history,
                       std::vector<float>& buf) {
  const bool penalties = has_penalties(p) && !history.empty();
  if (!penalties && p.logit_bias.empty()) return logits;
  buf.assign(logits, logits + n_vocab);
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < n_vocab) buf[size_t(id)] += bias;
  if (!penalties) return buf.data();
  const size_t n = std::min(history.size(), size_t(p.repeat_last_n));
  std::unordered_map<int32_t, int> count;
  for (int32_t id : history.subspan(history.size() - n)) ++count[id];
  for (auto [id, c] : count) {
    if (id < 0 || id >= n_vocab) continue;
    float& l = buf[size_t(id)];
    l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
    l -= p.presence_penalty + float(c) * p.frequency_penalty;
  }
  return buf.data();
}

}  // namespace

int32_t argmax(const float* logits, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

double TokenDistribution::prob(int32_t id) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == id) return probs[i];
  return 0.0;
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  if (!std::isfinite(p.temperature)) fail("temperature must be a finite number");
  if (p.top_p <= 0.0f) fail("top-p must be > 0 (use 1 to turn it off), got {}", p.top_p);
  if (p.min_p < 0.0f || p.min_p > 1.0f) fail("min-p must be in [0, 1], got {}", p.min_p);
  if (p.repeat_penalty <= 0.0f) fail("repeat penalty must be > 0 (1 turns it off), got {}", p.repeat_penalty);
  if (p.repeat_last_n < 0) fail("repeat-last-n must be >= 0, got {}", p.repeat_last_n);
}

double Sampler::uniform() { return double(rng_() >> 11) * (1.0 / 9007199254740992.0); }

void Sampler::distribution(const float* logits_in, int32_t n_vocab, std::span<const int32_t> history,
                           TokenDistribution* out) const {
  std::vector<float> buf;
  const float* logits = penalised(p_, logits_in, n_vocab, history, buf);
  out->ids.clear();
  out->probs.clear();
  if (greedy()) {
    out->ids.push_back(argmax(logits, n_vocab));
    out->probs.push_back(1.0);
    return;
  }
  // Candidates sorted by logit, descending (stable: lower id first on ties).
  std::vector<int32_t>& ids = out->ids;
  ids.resize(static_cast<size_t>(n_vocab));
  std::iota(ids.begin(), ids.end(), 0);
  const auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (p_.top_k > 0 && p_.top_k < n_vocab) {
    std::partial_sort(ids.begin(), ids.begin() + p_.top_k, ids.end(), by_logit);
    ids.resize(size_t(p_.top_k));
  } else {
    std::sort(ids.begin(), ids.end(), by_logit);
  }
  normalise(logits, out);
}

// Softmax at the given temperature over out->ids (sorted by logit, descending), then
// top-p and min-p.
void Sampler::normalise(const float* logits, TokenDistribution* out) const {
  const std::vector<int32_t>& ids = out->ids;
  // Softmax at the given temperature.
  std::vector<double>& prob = out->probs;
  prob.resize(ids.size());
  const double mx = logits[ids[0]];
  double sum = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) sum += prob[i] = std::exp((double(logits[ids[i]]) - mx) / p_.temperature);
  for (double& pr : prob) pr /= sum;
  // top-p: smallest prefix whose mass reaches p (always at least one token).
  size_t keep = prob.size();
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    size_t k = 0;
    while (k < keep) {
      cum += prob[k++];
      if (cum >= p_.top_p) break;
    }
    keep = k;
  }
  // min-p: drop tokens far less likely than the best one.
  if (p_.min_p > 0.0f) {
    const double floor = p_.min_p * prob[0];
    size_t k = 1;
    while (k < keep && prob[k] >= floor) ++k;
    keep = k;
  }
  out->ids.resize(keep);
  prob.resize(keep);
  const double total = std::accumulate(prob.begin(), prob.end(), 0.0);
  for (double& pr : prob) pr /= total;
}

bool Sampler::distribution_among(const float* logits_in, int32_t n_vocab, std::span<const int32_t> history,
                                 const std::function<bool(int32_t)>& allowed, int32_t max_checks,
                                 TokenDistribution* out) const {
  const int32_t want = greedy() ? 1 : p_.top_k;
  if (want <= 0 || want >= n_vocab || max_checks <= 0) return false;  // every allowed token counts
  std::vector<float> buf;
  const float* logits = penalised(p_, logits_in, n_vocab, history, buf);
  // The best max_checks tokens, in the order distribution() ranks them: a heap whose
  // front is the worst kept, so that most tokens are turned away by one comparison.
  const auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  const size_t m = size_t(std::min(max_checks, n_vocab));
  std::vector<int32_t> best;
  best.reserve(m);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (best.size() < m) {
      best.push_back(i);
      std::push_heap(best.begin(), best.end(), better);
    } else if (better(i, best.front())) {
      std::pop_heap(best.begin(), best.end(), better);
      best.back() = i;
      std::push_heap(best.begin(), best.end(), better);
    }
  }
  std::sort_heap(best.begin(), best.end(), better);
  out->ids.clear();
  out->probs.clear();
  for (int32_t id : best)
    if (allowed(id)) {
      out->ids.push_back(id);
      if (int32_t(out->ids.size()) == want) break;
    }
  if (int32_t(out->ids.size()) < want && m < size_t(n_vocab)) return false;  // an allowed token may rank lower
  if (out->ids.empty()) return false;
  if (greedy()) {
    out->probs.push_back(1.0);
    return true;
  }
  normalise(logits, out);
  return true;
}

int32_t Sampler::draw(const TokenDistribution& p) {
  if (p.ids.size() == 1) return p.ids[0];
  double r = uniform();
  for (size_t i = 0; i < p.probs.size(); ++i) {
    r -= p.probs[i];
    if (r < 0.0) return p.ids[i];
  }
  return p.ids.back();
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab, std::span<const int32_t> history) {
  TokenDistribution p;
  distribution(logits, n_vocab, history, &p);
  return draw(p);
}

Verdict Sampler::verify(const TokenDistribution& p, int32_t x, const TokenDistribution* q) {
  const double px = p.prob(x);
  if (p.ids.size() == 1) return Verdict{p.ids[0] == x, p.ids[0]};  // greedy (or one candidate left)
  const double qx = q ? q->prob(x) : 1.0;
  // qx == 0 cannot come from a draw of q; treat it as a certain proposal.
  if (px > 0.0 && (qx <= 0.0 || px >= qx || uniform() * qx < px)) return Verdict{true, x};
  // Rejected: draw from the normalised residual max(0, p - q).
  std::vector<double> residual(p.probs.size());
  double total = 0.0;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double qi = q ? q->prob(p.ids[i]) : (p.ids[i] == x ? 1.0 : 0.0);
    total += residual[i] = std::max(0.0, p.probs[i] - qi);
  }
  if (!(total > 0.0)) return Verdict{false, draw(p)};  // p == q: unreachable in exact arithmetic
  double r = uniform() * total;
  for (size_t i = 0; i < residual.size(); ++i) {
    r -= residual[i];
    if (r < 0.0 && residual[i] > 0.0) return Verdict{false, p.ids[i]};
  }
  for (size_t i = residual.size(); i-- > 0;)
    if (residual[i] > 0.0) return Verdict{false, p.ids[i]};
  return Verdict{false, p.ids[0]};
}

Logprobs logprobs_of(const SamplerParams& params, const float* logits_in, int32_t n_vocab, std::span<const int32_t> history,
                     int32_t id, int top) {
  std::vector<float> buf;
  const float* logits = penalised(params, logits_in, n_vocab, history, buf);
  float mx = logits[0];
  for (int32_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  const double lse = double(mx) + std::log(sum);
  Logprobs lp;
  lp.logprob = id >= 0 && id < n_vocab ? float(double(logits[id]) - lse) : -INFINITY;
  if (top > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(n_vocab));
    std::iota(idx.begin(), idx.end(), 0);
    const int k = std::min(top, int(n_vocab));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
    for (int i = 0; i < k; ++i) lp.top.emplace_back(idx[size_t(i)], float(double(logits[idx[size_t(i)]]) - lse));
  }
  return lp;
}

}  // namespace jevons
