#include "engine/speculative.h"

#include <algorithm>

#include "core/error.h"
#include "engine/sequence.h"
#include "meter/estimate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace jevons::engine {

SpecMethod parse_spec_method(const std::string& name) {
  if (name == "none") return SpecMethod::kNone;
  if (name == "ngram") return SpecMethod::kPromptLookup;
  if (name == "draft") return SpecMethod::kDraftModel;
  if (name == "mtp") return SpecMethod::kMtp;
  fail("unknown speculative method '{}' (none, ngram, draft or mtp)", name);
}

const char* spec_method_name(SpecMethod m) {
  switch (m) {
    case SpecMethod::kPromptLookup: return "ngram";
    case SpecMethod::kDraftModel: return "draft";
    case SpecMethod::kMtp: return "mtp";
    default: return "none";
  }
}

// ---- prompt lookup ----

std::vector<int32_t> prompt_lookup(const std::vector<int32_t>& tokens, int k, int ngram_min, int ngram_max) {
  const int64_t len = int64_t(tokens.size());
  if (k <= 0) return {};
  for (int n = std::min<int64_t>(ngram_max, len - 1); n >= std::max(1, ngram_min); --n) {
    const int32_t* tail = tokens.data() + (len - n);
    // Latest first; the match must end before the last token (something followed it).
    for (int64_t i = len - n - 1; i >= 0; --i) {
      if (!std::equal(tail, tail + n, tokens.data() + i)) continue;
      const int64_t from = i + n, to = std::min<int64_t>(from + k, len);
      return std::vector<int32_t>(tokens.begin() + from, tokens.begin() + to);
    }
  }
  return {};
}

PromptLookupProposer::PromptLookupProposer(int ngram_min, int ngram_max) : ngram_min_(ngram_min), ngram_max_(ngram_max) {
  if (ngram_min < 1 || ngram_max < ngram_min) fail("prompt lookup needs 1 <= ngram-min <= ngram-max, got {} and {}", ngram_min, ngram_max);
}

void PromptLookupProposer::propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) {
  out.assign(seqs.size(), Draft{});
  for (size_t i = 0; i < seqs.size(); ++i) out[i].tokens = prompt_lookup(seqs[i]->tokens(), k[i], ngram_min_, ngram_max_);
}

// ---- draft model ----

namespace {

struct DraftState : ProposerState {
  DraftState(std::shared_ptr<KvBlockPool> pool, int n_ctx, const SamplerParams& sp) : cache(std::move(pool), n_ctx), sampler(sp) {}
  KvCache cache;
  std::vector<int32_t> tokens;  // what cache holds keys and values of
  Sampler sampler;
};

}  // namespace

DraftModelProposer::DraftModelProposer(Model& draft, int parallel, int n_ctx, TensorType kv_type) : draft_(draft), n_ctx_(n_ctx) {
  const ModelConfig& c = draft.config();
  const size_t blocks = size_t(parallel) * size_t((n_ctx + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens);
  pool_ = std::make_shared<KvBlockPool>(c.n_layer, c.cache_k_dim, c.cache_v_dim, blocks, c.cache_heads, 0, kv_type);
}

void DraftModelProposer::propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) {
  out.assign(seqs.size(), Draft{});
  const int n_vocab = draft_.config().n_vocab;
  std::vector<size_t> active;  // sequences still proposing
  std::vector<Model::Chunk> chunks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (k[i] <= 0) continue;
    Sequence& s = *seqs[i];
    if (!s.proposer_state_) {
      SamplerParams sp = s.params().sampling;
      sp.seed = sp.seed * 0x9E3779B97F4A7C15ull + 1;  // its own stream of random numbers
      s.proposer_state_ = std::make_unique<DraftState>(pool_, n_ctx_, sp);
    }
    auto& st = static_cast<DraftState&>(*s.proposer_state_);
    // Keep what the draft computed of the sequence's tokens, and at least the last
    // known token to compute (its logits give the first proposal).
    const std::vector<int32_t>& t = s.tokens();
    size_t common = 0;
    const size_t limit = std::min({st.tokens.size(), size_t(st.cache.n_past()), t.size() - 1});
    while (common < limit && st.tokens[common] == t[common]) ++common;
    st.cache.truncate(int(common));
    st.tokens.assign(t.begin(), t.end());
    if (!st.cache.reserve(int(t.size()))) continue;  // no room: no proposal this step
    active.push_back(i);
    chunks.push_back(Model::Chunk{&st.cache, st.tokens.data() + common, int64_t(t.size() - common)});
  }
  traffic_ = 0;
  const uint64_t kv_bytes = draft_.config().kv_bytes_per_token(pool_->type());
  for (int step = 0; !active.empty(); ++step) {
    logits_.resize(chunks.size() * size_t(n_vocab));
    traffic_ += draft_.weight_bytes_per_token();
    for (const Model::Chunk& c : chunks) traffic_ += meter::forward_traffic_bytes(0, kv_bytes, c.cache->n_past(), c.n);
    draft_.forward_batch(chunks, logits_.data());
    std::vector<size_t> next;
    chunks.clear();
    for (size_t a = 0; a < active.size(); ++a) {
      const size_t i = active[a];
      Sequence& s = *seqs[i];
      auto& st = static_cast<DraftState&>(*s.proposer_state_);
      Draft& d = out[i];
      TokenDistribution q;
      st.sampler.distribution(logits_.data() + a * size_t(n_vocab), n_vocab, st.tokens, &q);
      const int32_t id = st.sampler.draw(q);
      d.tokens.push_back(id);
      if (!st.sampler.greedy()) d.q.push_back(std::move(q));
      // Another step when more are wanted and the cache has room for this one.
      if (int(d.tokens.size()) < k[i] && st.cache.reserve(int(st.tokens.size()) + 1)) {
        st.tokens.push_back(id);
        next.push_back(i);
        chunks.push_back(Model::Chunk{&st.cache, &st.tokens.back(), 1});
      }
    }
    active = std::move(next);
  }
}

// ---- multi-token prediction ----

namespace {

struct MtpState : ProposerState {
  MtpState(int n_ctx, const Model& m, TensorType kv_type, const SamplerParams& sp)
      : cache(m.new_mtp_cache(n_ctx, kv_type)), sampler(sp) {}
  KvCache cache;                 // index j holds trunk position base + j
  int base = 0;
  int hidden_begin = 0;          // trunk position of the first row of hidden
  std::vector<float> hidden;     // trunk states not consumed yet
  Sampler sampler;
  int processed_end() const { return base + cache.n_past(); }
  void restart(int pos) {
    cache.clear();
    base = hidden_begin = pos;
    hidden.clear();
  }
};

}  // namespace

MtpProposer::MtpProposer(Model& target, int n_ctx, TensorType kv_type) : model_(target), n_ctx_(n_ctx), kv_type_(kv_type) {
  if (target.config().n_mtp < 1)
    fail("--spec mtp: the model has no multi-token prediction layer (DeepSeek-V3/R1 GGUFs that keep them have "
         "blk.N.nextn.* tensors and {}.nextn_predict_layers)", target.config().arch);
}

void MtpProposer::on_computed(Sequence& s, int pos, int64_t n, const float* h) {
  const size_t E = size_t(model_.config().n_embd);
  if (!s.proposer_state_) {
    SamplerParams sp = s.params().sampling;
    sp.seed = sp.seed * 0x9E3779B97F4A7C15ull + 2;
    auto st = std::make_unique<MtpState>(n_ctx_, model_, kv_type_, sp);
    st->restart(pos);
    s.proposer_state_ = std::move(st);
  }
  auto& st = static_cast<MtpState&>(*s.proposer_state_);
  const int hidden_end = st.hidden_begin + int(st.hidden.size() / E);
  if (pos < st.processed_end() || pos > hidden_end) st.restart(pos);  // recomputed, or a gap
  else st.hidden.resize(size_t(pos - st.hidden_begin) * E);          // rows of rejected proposals go
  st.hidden.insert(st.hidden.end(), h, h + size_t(n) * E);
}

void MtpProposer::propose(const std::vector<Sequence*>& seqs, const std::vector<int>& k, std::vector<Draft>& out) {
  out.assign(seqs.size(), Draft{});
  const ModelConfig& c = model_.config();
  const size_t E = size_t(c.n_embd);
  std::vector<Model::MtpChunk> chunks;
  std::vector<size_t> who;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    if (k[i] <= 0 || !s.proposer_state_) continue;
    auto& st = static_cast<MtpState&>(*s.proposer_state_);
    // Positions with a verified state and a known next token.
    const int from = st.processed_end(), last = std::min(s.n_known() - 2, s.n_computed() - 1);
    const int rows = int(st.hidden.size() / E);
    if (from > last || st.hidden_begin != from || rows < last - from + 1 || last - st.base + 1 > n_ctx_) continue;
    chunks.push_back(Model::MtpChunk{&st.cache, s.tokens().data() + from + 1, st.hidden.data(), int64_t(last - from + 1)});
    who.push_back(i);
  }
  traffic_ = 0;
  if (chunks.empty()) return;
  traffic_ = model_.mtp_weight_bytes_per_token();
  for (const Model::MtpChunk& ch : chunks)
    traffic_ += meter::forward_traffic_bytes(0, c.kv_bytes_per_token(kv_type_) / uint64_t(c.n_layer), ch.cache->n_past(), ch.n);
  logits_.resize(chunks.size() * size_t(c.n_vocab));
  model_.forward_mtp(chunks, logits_.data());
  for (size_t j = 0; j < who.size(); ++j) {
    Sequence& s = *seqs[who[j]];
    auto& st = static_cast<MtpState&>(*s.proposer_state_);
    const size_t used = size_t(chunks[j].n);
    st.hidden.erase(st.hidden.begin(), st.hidden.begin() + std::ptrdiff_t(used * E));
    st.hidden_begin += int(used);
    TokenDistribution q;
    st.sampler.distribution(logits_.data() + j * size_t(c.n_vocab), c.n_vocab, s.tokens(), &q);
    out[who[j]].tokens.push_back(st.sampler.draw(q));  // one module: one token a step
    if (!st.sampler.greedy()) out[who[j]].q.push_back(std::move(q));
  }
}

void check_same_vocabulary(const Tokenizer& target, const Tokenizer& draft) {
  // Padded vocabularies of one family differ in size by a few unused ids (llama.cpp
  // allows 128); the ids both have must mean the same text.
  const int32_t n = std::min(target.n_vocab(), draft.n_vocab());
  if (std::abs(target.n_vocab() - draft.n_vocab()) > 128)
    fail("the draft's vocabulary has {} tokens and the target's {}: a draft must share the target's tokenizer", draft.n_vocab(),
         target.n_vocab());
  for (int32_t id = 0; id < n; ++id)
    if (target.piece(id) != draft.piece(id))
      fail("the draft's vocabulary differs from the target's at token {} ('{}' in the target, '{}' in the draft): a draft must share the target's tokenizer",
           id, target.piece(id), draft.piece(id));
}

}  // namespace jevons::engine
