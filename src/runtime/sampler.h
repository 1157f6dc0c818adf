// Turns logits into the next token id. Order of operations (as in llama.cpp):
// penalties on the raw logits -> greedy if temp <= 0, else top-k -> temperature
// -> softmax -> top-p -> min-p -> draw with the seeded generator.
#pragma once
#include <cstdint>
#include <deque>
#include <random>
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
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  // Picks the next id from n_vocab logits (the logits are modified in place).
  int32_t sample(float* logits, int32_t n_vocab);
  // Records a token (prompt or generated) for the penalties.
  void accept(int32_t id);
  const SamplerParams& params() const { return p_; }

 private:
  void apply_penalties(float* logits, int32_t n_vocab) const;
  double uniform();  // in [0, 1), same sequence on every platform for a seed

  SamplerParams p_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(const float* logits, int32_t n);

}  // namespace jevons
