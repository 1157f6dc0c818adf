// The engine: the one generation loop of jevons. `run`, `chat` and `serve` (through
// scheduler.h) all generate by adding Sequences and calling step().
//
// A step (vLLM v1's scheduler, gemma.cpp's one loop behind a callback):
//   1. drop cancelled sequences; admit waiting ones while fewer than `parallel` run
//      (no KV is reserved: blocks are taken as tokens are computed);
//   2. give each running sequence, oldest first, the tokens it has not computed yet: the
//      token it sampled last, or a chunk of its prompt within the step's prompt budget
//      (so a long prompt never stalls running streams). A prompt first adopts whatever
//      leading blocks the prefix cache holds (kv_cache.h), and waits a step when an
//      older sequence is computing the same block now (the n choices of one request
//      share one prefill that way);
//   3. when the pool has no block left for a sequence, preempt the youngest: its
//      blocks go back (the full ones stay in the prefix cache while they last) and it
//      resumes later from where it was, recomputing only what was evicted;
//   4. one Model::forward_batch for all of it (every weight read once);
//   5. publish newly full blocks to the prefix cache; sample every sequence whose
//      known tokens are all computed, detokenize, match stop strings, split reasoning,
//      apply the thinking budget, and emit deltas through its sink.
//
// Energy: the meter's joules over a step are shared among its sequences in proportion
// to the tokens each put into it (prompt and generated apart), so that concurrent
// sequences' energies add up to the machine's.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "engine/kv_disk.h"
#include "engine/sequence.h"
#include "engine/speculative.h"
#include "meter/meter.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "tokenizer/tokenizer.h"

namespace jevons::engine {

struct EngineOptions {
  int parallel = 8;              // sequences computed together at most
  int n_ctx = 4096;              // context per sequence
  size_t kv_budget_bytes = 0;    // the block pool; 0: exactly one full context
  int prefill_chunk = 128;       // prompt tokens per step while others decode
  int prefill_chunk_idle = 512;  // when nothing else is decoding
  bool prefix_cache = true;      // adopt cached blocks of equal prefixes
  TensorType kv_type = TensorType::F16;  // KV elements: F16 (llama.cpp's default), BF16, Q8_0 or F32
  std::string kv_cache_dir;      // non-empty: the prefix cache's disk tier (kv_disk.h)
  uint64_t kv_cache_disk_max = 0;  // its size cap in bytes (0: none)
  uint64_t model_identity = 0;   // model_identity() of the weights: binds cached blocks to them
  SpeculativeOptions spec;       // speculative decoding (speculative.h); off by default
};

struct EngineStats {
  int64_t running = 0, waiting = 0;
  KvPoolStats kv;
  int64_t steps = 0;
  int64_t prompt_tokens = 0;    // prompt tokens computed (not counting cache hits)
  int64_t cached_tokens = 0;    // prompt tokens found in the prefix cache
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t drafted_tokens = 0, accepted_tokens = 0;  // speculative decoding
  double draft_cost = 0;    // a proposed token's time over a plain decode step's (measured; ngram: about 0)
  double verify_extra = 0;  // each verified token's extra time in the target's pass, over a plain step
  double propose_s = 0;   // seconds spent proposing
  double verify_s = 0;    // seconds of the forward passes that verified proposals
  int64_t verify_steps = 0;
  double joules = 0, busy_s = 0;
  double prefill_joules = 0;    // of the tokens computed without sampling (prompts, recomputation)
  double decode_tokens_per_s = 0;  // recent (exponential average over steps)
  int64_t batch_tokens_last = 0;
  size_t kv_block_bytes = 0;
  bool disk_tier = false;
  KvDiskStats disk;
  // Joules one prompt token costs to compute, as measured so far (0 before any).
  double prefill_j_per_token() const { return prompt_tokens > 0 ? prefill_joules / double(prompt_tokens) : 0; }
};

class Engine {
 public:
  static constexpr int kMaxDraft = 64;  // --draft-max at most
  // model, tokenizer and meter must outlive the engine. Throws Error when the budget
  // holds less than one full context.
  Engine(Model& model, const Tokenizer& tokenizer, meter::Meter& meter, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a sequence. Throws Error when its prompt cannot fit the context.
  void add(std::unique_ptr<Sequence> s);
  bool idle() const { return running_.empty() && waiting_.empty(); }
  // One forward pass over what is scheduled now (see above). Nothing to do: returns.
  void step();
  // Steps until every sequence added so far has finished.
  void run_until_idle();
  // Ends every sequence (running or waiting) with this finish reason.
  void finish_all(const char* reason);

  // Thread-safe.
  EngineStats stats() const;
  const EngineOptions& options() const { return opt_; }
  const Tokenizer& tokenizer() const { return tok_; }
  Model& model() { return model_; }
  KvBlockPool& pool() { return *pool_; }
  // Full-context sequences the KV budget holds at once.
  int full_contexts() const;
  // Replaces the proposer that EngineOptions::spec chose (tests; new proposers).
  void set_proposer(std::unique_ptr<Proposer> p);

 private:
  void admit(Sequence& s);
  void adopt_cached_prefix(Sequence& s);
  void publish_full_blocks(Sequence& s);
  void save_to_disk(Sequence& s);
  void preempt(Sequence& s);
  // Chooses the token that follows `logits` (a forced token, the verdict on a proposed
  // `draft` token drawn from q, or a draw), detokenizes and delivers it.
  struct Outcome {
    bool alive;       // false: the sequence has finished
    bool took_draft;  // the token is the proposed one
  };
  Outcome on_logits(Sequence& s, const float* logits, const int32_t* draft = nullptr, const TokenDistribution* q = nullptr);
  // Proposals for the sequences that may sample after this step (indexed as running_).
  std::vector<Draft> propose();
  // How many tokens s proposes next, from its acceptance so far (see step()).
  int next_draft_k(Sequence& s) const;
  double verify_cost(int k) const;
  // Constrained decoding (GenParams::grammar): tokens the sequence may still generate,
  // whether the grammar lets `id` come next, and a draw from the masked logits (-1:
  // the grammar allows none).
  int tokens_left(const Sequence& s) const;
  bool grammar_allows(const Sequence& s, int32_t id) const;
  int32_t constrained_draw(Sequence& s, const float* logits);
  static constexpr int32_t kLazyMaskChecks = 256;  // best-ranked tokens asked about before a full mask
  void finish(Sequence& s, const char* reason, const char* detail);
  void remove_finished();

  Model& model_;
  const Tokenizer& tok_;
  meter::Meter& meter_;
  EngineOptions opt_;
  std::shared_ptr<KvBlockPool> pool_;
  std::unique_ptr<KvDiskCache> disk_;
  std::vector<int32_t> think_close_ids_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in order of arrival
  std::deque<std::unique_ptr<Sequence>> waiting_;
  uint64_t next_arrival_ = 0;
  std::vector<float> logits_;
  std::unique_ptr<Proposer> proposer_;
  std::unique_ptr<GrammarMatcher::TokenTrie> trie_;  // the vocabulary, once a grammar needs a mask
  std::vector<bool> allowed_;
  std::vector<float> masked_;
  std::atomic<double> draft_cost_{0}, propose_s_total_{0}, verify_s_total_{0};
  std::atomic<double> plain_step_s_{0}, verify_extra_{0};  // next_draft_k's costs (see there)
  std::array<double, kMaxDraft + 1> verify_cost_{};          // v(k), 0: not measured yet
  std::atomic<int64_t> verify_steps_{0};  // a proposed token's time over the target's step time (exponential average)
  double propose_s_ = 0;   // this step's proposals: seconds, and the most tokens asked of one sequence
  int propose_k_ = 0;

  std::atomic<int64_t> n_running_{0}, n_waiting_{0}, steps_{0}, prompt_tokens_{0}, cached_tokens_{0}, generated_tokens_{0},
      preemptions_{0}, batch_tokens_last_{0}, drafted_{0}, accepted_{0};
  std::atomic<double> joules_{0}, busy_s_{0}, prefill_joules_{0}, decode_tps_{0};
};

// Salt of a model's KV blocks: equal tokens give equal keys and values only for the
// same weights and KV layout and element type (kv_cache.h).
uint64_t kv_salt(const Model& model, TensorType kv_type = TensorType::F32, uint64_t model_identity = 0);

// "f32", "f16", "bf16" or "q8_0" -> the type; Error naming the choices otherwise.
TensorType parse_kv_type(const std::string& name);

}  // namespace jevons::engine
