// A Sequence: one stream of tokens being generated, everything the one generation
// loop (engine.h) needs to advance it, and where its output goes.
//
// Its state is one counter against its tokens (vLLM v1): tokens() holds every token
// known (the prompt, then each one generated), n_computed() how many of them have
// keys and values in its KV blocks. A step computes some of the rest: a chunk of a
// prompt, the one token sampled last, or (after a prefix-cache hit or a preemption)
// whatever is missing. When the known tokens are all computed, the logits of the last
// one give the next token. There are no prefill and decode phases to keep apart.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/speculative.h"
#include "engine/text_stream.h"
#include "meter/accounting.h"
#include "runtime/grammar.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace jevons::engine {

struct GenParams {
  SamplerParams sampling;
  int max_tokens = -1;  // -1: up to the context
  std::vector<std::string> stop;
  int top_logprobs = -1;  // -1: no logprobs; 0..20: logprobs with that many alternatives
  bool split_reasoning = true;      // <think>...</think> -> reasoning (false: all is content)
  bool reasoning_at_start = false;  // the prompt opened a <think> block
  int max_reasoning_tokens = -1;    // -1: no budget
  double max_reasoning_joules = -1;
  std::string think_close = "\n</think>\n\n";  // inserted when the budget is reached
  bool ignore_eos = false;  // end-of-generation tokens do not stop it (benchmarks: a fixed length)
  bool speculate = true;    // use the engine's proposer, if it has one (a request may turn it off)
  // Constrained decoding: the answer (the text after any thought) must be in this
  // grammar's language; sampling masks what cannot continue it, and the output is
  // closed within max_tokens and the context (runtime/grammar.h). Such a sequence
  // does not speculate.
  std::shared_ptr<const Grammar> grammar;
};

struct TokenLogprob {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// A piece of one sequence's output.
struct Delta {
  int choice = 0;
  std::string content, reasoning;
  std::vector<TokenLogprob> logprobs;
};

struct SequenceResult {
  std::string finish_reason;  // "stop", "length", "cancelled", "error"
  std::string detail;         // for people: "end of text", "stop string", "max tokens", "context full", ...
  int completion_tokens = 0, reasoning_tokens = 0;
  int cached_tokens = 0;      // prompt tokens found in the prefix cache (not computed)
  int preemptions = 0;        // times its blocks were taken back for others
  int drafted_tokens = 0;     // speculative decoding: tokens proposed and verified
  int accepted_tokens = 0;    // of which the target accepted
  int rejections = 0;         // verification passes that refused a proposal (acceptance rate: accepted / (accepted + rejections))
  int sampling_passes = 0;    // forward passes that gave it tokens (completion_tokens / this: tokens per pass)
  bool budget_hit = false;
  std::vector<int32_t> tokens;  // generated
  meter::PhaseEnergy prefill, decode;
  double reasoning_j = 0;
};

// Where a sequence's output goes. Called on the thread that runs the engine's steps.
struct SequenceSink {
  std::function<void(Delta&&)> on_delta;
  std::function<void(SequenceResult&&)> on_finish;
  std::function<void(int32_t)> on_token;  // every generated token id, before its text (may be empty)
  std::function<bool()> cancelled;  // may be empty: never cancelled
};

class Sequence {
 public:
  // prompt: at least one token. choice: the index reported in its deltas.
  Sequence(std::vector<int32_t> prompt, const GenParams& params, const Tokenizer& tok, SequenceSink sink, int choice = 0);

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int n_prompt() const { return n_prompt_; }
  int n_computed() const { return cache_ ? cache_->n_past() : 0; }
  int n_known() const { return int(tokens_.size()); }
  int choice() const { return choice_; }
  const GenParams& params() const { return params_; }
  const SequenceResult& result() const { return result_; }
  bool finished() const { return finished_; }
  bool cancelled() const { return sink_.cancelled && sink_.cancelled(); }
  // Order of admission (lower: earlier, kept when blocks run short).
  uint64_t arrival = 0;

 private:
  friend class Engine;
  friend class DraftModelProposer;
  friend class MtpProposer;
  ReasoningSplitter::Out route(const std::string& text);
  ReasoningSplitter::Out route_finish();
  bool in_reasoning() const { return params_.split_reasoning && splitter_.in_reasoning(); }

  std::vector<int32_t> tokens_;
  int n_prompt_;
  int choice_;
  GenParams params_;
  SequenceSink sink_;
  std::optional<KvCache> cache_;  // while admitted (holds its blocks)
  int n_published_ = 0;           // leading blocks already offered to the prefix cache
  Sampler sampler_;
  std::unique_ptr<ProposerState> proposer_state_;  // while admitted, if the proposer keeps any
  double spec_accepted_ = 0, spec_rejected_ = 0;  // decayed counts of verdicts (the acceptance rate)
  int spec_idle_passes_ = 0;                      // passes without proposals since speculation stopped paying
  int verified_end_ = -1;  // during verification: positions of the cache that hold accepted tokens
  StreamDecoder decoder_;
  StopMatcher stop_;
  ReasoningSplitter splitter_;
  std::optional<GrammarMatcher> matcher_;  // with params_.grammar
  std::deque<int32_t> forced_;  // tokens to emit instead of sampling (closing a thought)
  bool closing_thought_ = false;
  bool finished_ = false;
  bool had_logits_ = false;  // has been sampled from at least once (prefill time ends)
  SequenceResult result_;
};

}  // namespace jevons::engine
