// Turns logits into the next token id, in two parts: the distribution the next token
// is drawn from, and the draw. Order of operations (as in llama.cpp): penalties on the
// raw logits -> greedy if temp <= 0, else top-k -> temperature -> softmax -> top-p ->
// min-p -> draw with the seeded generator.
//
// Keeping the two apart is what speculative decoding needs (Leviathan et al. 2023,
// Chen et al. 2023): p(token) of a proposed token under the target's distribution, and
// the rejection rule that keeps the output distributed exactly as the target's.
// The penalties read the sequence's own tokens (a history passed in, not kept here), so
// they roll back with the sequence when drafted tokens are rejected.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace jevons {

struct SamplerParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;     // 1: off; >1 divides positive logits of recent tokens
  int repeat_last_n = 64;          // how many recent tokens the penalties look at
  float presence_penalty = 0.0f;   // subtracted once per token seen
  float frequency_penalty = 0.0f;  // subtracted per occurrence
  uint64_t seed = 0;
  // Added to the logits before anything else (OpenAI's logit_bias; -100 bans a token).
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// The distribution of the next token: its candidates, most likely first (ties: lower
// id first), with probabilities that sum to 1. Greedy: one candidate of probability 1.
struct TokenDistribution {
  std::vector<int32_t> ids;
  std::vector<double> probs;
  // p(id): 0 for a token that is not a candidate.
  double prob(int32_t id) const;
};

// What verification made of one proposed token.
struct Verdict {
  bool accepted = false;
  int32_t token = -1;  // the proposed token when accepted, else the one drawn instead
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  const SamplerParams& params() const { return p_; }
  bool greedy() const { return p_.temperature <= 0.0f; }

  // The distribution of the next token after `history` (the sequence's tokens so far,
  // whose last repeat_last_n the penalties look at), from n_vocab logits.
  void distribution(const float* logits, int32_t n_vocab, std::span<const int32_t> history, TokenDistribution* out) const;
  // The same distribution with only the tokens `allowed` says yes to (as if the others'
  // logits were -inf), found by asking about the best-ranked tokens one by one. False
  // when that would take more than max_checks questions, or when top-k is off (every
  // allowed token counts): the caller then masks the logits and calls distribution().
  bool distribution_among(const float* logits, int32_t n_vocab, std::span<const int32_t> history,
                          const std::function<bool(int32_t)>& allowed, int32_t max_checks,
                          TokenDistribution* out) const;
  // A draw from it (greedy: its one candidate, no random number used).
  int32_t draw(const TokenDistribution& p);
  // distribution() then draw().
  int32_t sample(const float* logits, int32_t n_vocab, std::span<const int32_t> history);

  // Speculative verification of a token x proposed from q (null: proposed with
  // certainty, as prompt lookup does): accepted with probability min(1, p(x) / q(x));
  // otherwise a token is drawn from the normalised max(0, p - q). The token that comes
  // out is distributed exactly as p (greedy: accepted iff x is p's argmax).
  Verdict verify(const TokenDistribution& p, int32_t x, const TokenDistribution* q);

  double uniform();  // in [0, 1), same sequence on every platform for a seed

 private:
  void normalise(const float* logits, TokenDistribution* out) const;
  SamplerParams p_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(const float* logits, int32_t n);

// log p(id) under the model's own distribution: softmax of the logits at temperature 1,
// after the penalties of `params` over `history` (what OpenAI's logprobs report), and
// the `top` most likely tokens with theirs.
struct Logprobs {
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};
Logprobs logprobs_of(const SamplerParams& params, const float* logits, int32_t n_vocab, std::span<const int32_t> history,
                     int32_t id, int top);

}  // namespace jevons
