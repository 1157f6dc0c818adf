#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "core/error.h"

namespace jevons {

int32_t argmax(const float* logits, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  if (!std::isfinite(p.temperature)) fail("temperature must be a finite number");
  if (p.top_p <= 0.0f) fail("top-p must be > 0 (use 1 to turn it off), got {}", p.top_p);
  if (p.min_p < 0.0f || p.min_p > 1.0f) fail("min-p must be in [0, 1], got {}", p.min_p);
  if (p.repeat_penalty <= 0.0f) fail("repeat penalty must be > 0 (1 turns it off), got {}", p.repeat_penalty);
  if (p.repeat_last_n < 0) fail("repeat-last-n must be >= 0, got {}", p.repeat_last_n);
}

void Sampler::accept(int32_t id) {
  if (p_.repeat_last_n == 0) return;
  recent_.push_back(id);
  while (int(recent_.size()) > p_.repeat_last_n) recent_.pop_front();
}

double Sampler::uniform() { return double(rng_() >> 11) * (1.0 / 9007199254740992.0); }

void Sampler::apply_penalties(float* logits, int32_t n_vocab) const {
  if (recent_.empty() || (p_.repeat_penalty == 1.0f && p_.presence_penalty == 0.0f && p_.frequency_penalty == 0.0f)) return;
  std::unordered_map<int32_t, int> count;
  for (int32_t id : recent_) ++count[id];
  for (auto [id, n] : count) {
    if (id < 0 || id >= n_vocab) continue;
    float& l = logits[id];
    l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    l -= p_.presence_penalty + float(n) * p_.frequency_penalty;
  }
}

int32_t Sampler::sample(float* logits, int32_t n_vocab) {
  apply_penalties(logits, n_vocab);
  if (p_.temperature <= 0.0f) return argmax(logits, n_vocab);

  // Candidates sorted by logit, descending (stable: lower id first on ties).
  std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
  std::iota(ids.begin(), ids.end(), 0);
  const auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = ids.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < keep) {
    keep = size_t(p_.top_k);
    std::partial_sort(ids.begin(), ids.begin() + long(keep), ids.end(), by_logit);
    ids.resize(keep);
  } else {
    std::sort(ids.begin(), ids.end(), by_logit);
  }

  // Softmax at the given temperature.
  std::vector<double> prob(ids.size());
  const double mx = logits[ids[0]];
  double sum = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) sum += prob[i] = std::exp((double(logits[ids[i]]) - mx) / p_.temperature);
  for (double& pr : prob) pr /= sum;

  // top-p: smallest prefix whose mass reaches p (always at least one token).
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    size_t k = 0;
    while (k < prob.size()) {
      cum += prob[k++];
      if (cum >= p_.top_p) break;
    }
    prob.resize(k);
  }
  // min-p: drop tokens far less likely than the best one.
  if (p_.min_p > 0.0f) {
    const double floor = p_.min_p * prob[0];
    size_t k = 1;
    while (k < prob.size() && prob[k] >= floor) ++k;
    prob.resize(k);
  }

  const double total = std::accumulate(prob.begin(), prob.end(), 0.0);
  double r = uniform() * total;
  for (size_t i = 0; i < prob.size(); ++i) {
    r -= prob[i];
    if (r < 0.0) return ids[i];
  }
  return ids[prob.size() - 1];
}

}  // namespace jevons
