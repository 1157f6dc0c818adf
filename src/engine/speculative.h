// Speculative decoding: a proposer guesses the next k tokens of a sequence cheaply, the
// target model scores all of them in one batched pass (reading every weight once, as
// one decoded token does), and Engine::step keeps the longest prefix that verification
// accepts (Sampler::verify: greedy output identical to plain greedy, sampled output
// distributed exactly as the target's), then rolls the KV back past it.
//
// Proposers:
//  - prompt lookup (Saxena 2023; llama.cpp's n-gram lookup): the tokens that followed
//    the latest earlier occurrence of the sequence's last n tokens in its own context;
//    no model, no cost, strong where text repeats (code edits, quotes, extraction);
//  - a draft model: a smaller model with the same vocabulary and its own KV, k greedy
//    or sampled steps for all speculating sequences at once;
//  - DeepSeek's multi-token prediction module (Model::forward_mtp): the target's own
//    next-next-token head, fed with the target's hidden states; one token per step.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/sampler.h"

namespace jevons {
class Model;
class Tokenizer;
}  // namespace jevons

namespace jevons::engine {

class Sequence;

enum class SpecMethod { kNone, kPromptLookup, kDraftModel, kMtp };

struct SpeculativeOptions {
  SpecMethod method = SpecMethod::kNone;
  int max_draft = 8;     // k: tokens proposed per step at most
  bool adaptive = true;  // k follows the acceptance (see Engine::step); false: always max_draft
  int ngram_min = 1, ngram_max = 4;  // prompt lookup: the longest match of these lengths wins
  Model* draft = nullptr;            // kDraftModel: the draft (same vocabulary as the target)
};

// "none", "ngram" (prompt lookup), "draft" or "mtp"; an Error naming the choices otherwise.
SpecMethod parse_spec_method(const std::string& name);
const char* spec_method_name(SpecMethod m);

// Proposed tokens and, for each, the distribution it was drawn from (empty: proposed
// with certainty, q(x) = 1).
struct Draft {
  std::vector<int32_t> tokens;
  std::vector<TokenDistribution> q;
};

// What a proposer keeps per sequence (a draft model's KV); dropped with the sequence.
struct ProposerState {
  virtual ~ProposerState() = default;
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  // Up to k[i] tokens to follow the known tokens of seqs[i], for all of them at once.
  virtual void propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) = 0;
  // Whether it reads the target's final hidden states (the engine then has the model
  // keep them and calls on_computed after every pass).
  virtual bool reads_hidden() const { return false; }
  // s computed positions [pos, pos + n), proposals not yet verified included, with these
  // hidden states (n x n_embd).
  virtual void on_computed(Sequence& s, int pos, int64_t n, const float* hidden) {
    (void)s, (void)pos, (void)n, (void)hidden;
  }
  // Bytes the last propose() read from memory (weights, KV): the energy estimate's input.
  virtual uint64_t traffic_bytes() const { return 0; }
};

// The longest n-gram (ngram_max down to ngram_min) ending the tokens that occurred
// before, latest occurrence first; up to k of the tokens that followed it.
std::vector<int32_t> prompt_lookup(const std::vector<int32_t>& tokens, int k, int ngram_min, int ngram_max);

class PromptLookupProposer : public Proposer {
 public:
  PromptLookupProposer(int ngram_min, int ngram_max);
  void propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) override;

 private:
  int ngram_min_, ngram_max_;
};

// The draft model's KV per sequence: its own block pool of `parallel` full contexts.
// Each proposal first brings the draft's cache up to the sequence's known tokens (the
// longest common prefix with what it computed is kept: rejected drafts roll back by
// truncation), then runs k steps for all sequences in one batch each.
class DraftModelProposer : public Proposer {
 public:
  DraftModelProposer(Model& draft, int parallel, int n_ctx, TensorType kv_type);
  void propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) override;
  uint64_t traffic_bytes() const override { return traffic_; }

 private:
  Model& draft_;
  std::shared_ptr<KvBlockPool> pool_;
  int n_ctx_;
  std::vector<float> logits_;
  uint64_t traffic_ = 0;
};

// The target's MTP module as the proposer. Per sequence it keeps the module's KV cache
// and the trunk's hidden states of positions the module has not consumed yet: position
// i needs h_i and the token t_{i+1}, so each step consumes the positions up to the
// next-to-last known token, whose row predicts the token after the last. Where the
// trunk's states are missing (a prefix-cache hit), the module's context starts after
// the gap (RoPE is relative: a shifted start changes no score); verification keeps the
// output exact whatever the module sees.
class MtpProposer : public Proposer {
 public:
  MtpProposer(Model& target, int n_ctx, TensorType kv_type);
  void propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) override;
  bool reads_hidden() const override { return true; }
  void on_computed(Sequence& s, int pos, int64_t n, const float* hidden) override;
  uint64_t traffic_bytes() const override { return traffic_; }

 private:
  Model& model_;
  int n_ctx_;
  TensorType kv_type_;
  std::vector<float> logits_;
  uint64_t traffic_ = 0;
};

// Throws Error naming the first token whose text differs when the draft's vocabulary is
// not the target's (ids must mean the same text for verification to be meaningful).
void check_same_vocabulary(const Tokenizer& target, const Tokenizer& draft);

}  // namespace jevons::engine
