#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "meter/estimate.h"

namespace jevons::engine {
namespace {

constexpr int kBlock = KvBlockPool::kBlockTokens;

size_t blocks_for(int64_t positions) { return size_t((positions + kBlock - 1) / kBlock); }

void add_to(std::atomic<double>& a, double v) { a.store(a.load() + v); }  // one writer: the engine thread

TokenLogprob to_logprob(const Tokenizer& tok, const Logprobs& l) {
  auto text = [&tok](int32_t id) { return id >= 0 && id < tok.n_vocab() ? tok.piece(id) : std::string(); };
  TokenLogprob lp;
  lp.logprob = l.logprob;
  for (auto [id, v] : l.top) lp.top.emplace_back(text(id), v);
  return lp;
}

}  // namespace

TensorType parse_kv_type(const std::string& name) {
  if (name == "f32") return TensorType::F32;
  if (name == "f16") return TensorType::F16;
  if (name == "bf16") return TensorType::BF16;
  if (name == "q8_0") return TensorType::Q8_0;
  fail("unknown KV cache type '{}' (f32, f16, bf16 or q8_0)", name);
}

uint64_t kv_salt(const Model& model, TensorType kv_type, uint64_t model_identity) {
  const ModelConfig& c = model.config();
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
    h ^= h >> 29;
  };
  for (char ch : c.arch) mix(uint64_t(uint8_t(ch)));
  for (int v : {c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim_k, c.head_dim_v, c.n_vocab, c.cache_k_dim,
                c.cache_v_dim, c.cache_heads})
    mix(uint64_t(uint32_t(v)));
  mix(model.weight_bytes_per_token());
  mix(uint64_t(kv_type));
  mix(model_identity);
  return h;
}

// ---- Sequence ----

Sequence::Sequence(std::vector<int32_t> prompt, const GenParams& params, const Tokenizer& tok, SequenceSink sink, int choice)
    : tokens_(std::move(prompt)), n_prompt_(int(tokens_.size())), choice_(choice), params_(params), sink_(std::move(sink)),
      sampler_(params.sampling), decoder_(tok), stop_(params.stop), splitter_(params.reasoning_at_start) {
  if (tokens_.empty()) fail("the prompt is empty");
  if (params_.grammar) {
    matcher_.emplace(params_.grammar);
    params_.speculate = false;
  }
}

ReasoningSplitter::Out Sequence::route(const std::string& text) {
  if (params_.split_reasoning) return splitter_.push(text);
  return ReasoningSplitter::Out{"", text};
}

ReasoningSplitter::Out Sequence::route_finish() {
  if (params_.split_reasoning) return splitter_.finish();
  return {};
}

// ---- Engine ----

Engine::Engine(Model& model, const Tokenizer& tokenizer, meter::Meter& meter, EngineOptions options)
    : model_(model), tok_(tokenizer), meter_(meter), opt_(options) {
  if (opt_.parallel < 1) fail("--parallel must be at least 1");
  if (opt_.n_ctx < 1) fail("the context must hold at least one token");
  const ModelConfig& c = model_.config();
  const size_t block_bytes = KvBlockPool::block_bytes(c.n_layer, c.cache_k_dim, c.cache_v_dim, opt_.kv_type);
  const size_t one_context = blocks_for(opt_.n_ctx);
  const size_t n_blocks = opt_.kv_budget_bytes == 0 ? one_context : opt_.kv_budget_bytes / block_bytes;
  if (n_blocks < one_context)
    fail("the KV budget of {:.1f} MiB holds {} tokens, less than one full context of {} ({:.1f} MiB): raise --kv-budget or lower -c",
         double(opt_.kv_budget_bytes) / 1048576.0, n_blocks * size_t(kBlock), opt_.n_ctx,
         double(one_context * block_bytes) / 1048576.0);
  pool_ = std::make_shared<KvBlockPool>(c.n_layer, c.cache_k_dim, c.cache_v_dim, n_blocks, c.cache_heads,
                                        kv_salt(model_, opt_.kv_type, opt_.model_identity), opt_.kv_type);
  if (!opt_.kv_cache_dir.empty())
    disk_ = std::make_unique<KvDiskCache>(opt_.kv_cache_dir, opt_.kv_cache_disk_max, pool_->salt(), pool_->bytes_per_block());
  think_close_ids_ = tok_.encode("\n</think>\n\n", false, true);
  const SpeculativeOptions& sp = opt_.spec;
  if (sp.method != SpecMethod::kNone && (sp.max_draft < 1 || sp.max_draft > kMaxDraft))
    fail("--draft-max must be between 1 and {}, got {}", kMaxDraft, sp.max_draft);
  if (sp.method == SpecMethod::kPromptLookup) proposer_ = std::make_unique<PromptLookupProposer>(sp.ngram_min, sp.ngram_max);
  if (sp.method == SpecMethod::kDraftModel) {
    if (!sp.draft) fail("speculative decoding with a draft model needs one (--draft MODEL)");
    proposer_ = std::make_unique<DraftModelProposer>(*sp.draft, opt_.parallel, opt_.n_ctx, opt_.kv_type);
  }
  if (sp.method == SpecMethod::kMtp) proposer_ = std::make_unique<MtpProposer>(model_, opt_.n_ctx, opt_.kv_type);
  model_.keep_hidden(proposer_ && proposer_->reads_hidden());
}

void Engine::set_proposer(std::unique_ptr<Proposer> p) {
  proposer_ = std::move(p);
  model_.keep_hidden(proposer_ && proposer_->reads_hidden());
}

Engine::~Engine() { model_.keep_hidden(false); }

int Engine::full_contexts() const { return int(pool_->total_blocks() / blocks_for(opt_.n_ctx)); }

void Engine::add(std::unique_ptr<Sequence> s) {
  if (s->n_known() > opt_.n_ctx)
    fail("the prompt is {} tokens but the context holds {} (raise -c)", s->n_known(), opt_.n_ctx);
  s->arrival = next_arrival_++;
  waiting_.push_back(std::move(s));
  n_waiting_.store(int64_t(waiting_.size()));
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.running = n_running_.load();
  s.waiting = n_waiting_.load();
  s.kv = pool_->stats();
  s.steps = steps_.load();
  s.prompt_tokens = prompt_tokens_.load();
  s.cached_tokens = cached_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  s.preemptions = preemptions_.load();
  s.drafted_tokens = drafted_.load();
  s.accepted_tokens = accepted_.load();
  s.draft_cost = draft_cost_.load();
  s.verify_extra = verify_extra_.load();
  s.propose_s = propose_s_total_.load();
  s.verify_s = verify_s_total_.load();
  s.verify_steps = verify_steps_.load();
  s.joules = joules_.load();
  s.busy_s = busy_s_.load();
  s.prefill_joules = prefill_joules_.load();
  s.decode_tokens_per_s = decode_tps_.load();
  s.batch_tokens_last = batch_tokens_last_.load();
  s.kv_block_bytes = pool_->bytes_per_block();
  s.disk_tier = disk_ != nullptr;
  if (disk_) s.disk = disk_->stats();
  return s;
}

void Engine::admit(Sequence& s) {
  s.cache_.emplace(pool_, opt_.n_ctx);
  s.n_published_ = 0;
  adopt_cached_prefix(s);
}

// Adopts the longest chain of cached blocks that continues what s holds. At least the
// last known token is left to compute: its logits give the next token.
void Engine::adopt_cached_prefix(Sequence& s) {
  if (!opt_.prefix_cache) return;
  KvCache& cache = *s.cache_;
  if (cache.n_past() != int(cache.blocks_held()) * kBlock || s.n_published_ != int(cache.blocks_held())) return;
  const int before = cache.n_past();
  uint64_t parent_hash = 0, parent_check = 0;
  for (size_t i = 0; i < cache.blocks_held(); ++i) {
    parent_hash = pool_->block_hash(parent_hash, s.tokens_.data() + i * kBlock);
    if (disk_) parent_check = KvDiskCache::check_hash(parent_check, s.tokens_.data() + i * kBlock);
  }
  while (cache.n_past() + kBlock <= s.n_known() - 1) {
    const int32_t* toks = s.tokens_.data() + cache.n_past();
    const uint64_t h = pool_->block_hash(parent_hash, toks);
    const uint64_t check = disk_ ? KvDiskCache::check_hash(parent_check, toks) : 0;
    const int parent = cache.blocks_held() > 0 ? cache.block_table().back() : -1;
    int b = pool_->lookup(h, parent, toks);
    if (b < 0 && disk_ && disk_->contains(h)) {
      // The disk tier: into a fresh block, published as if computed here.
      b = pool_->allocate();
      if (b < 0) break;
      if (!disk_->load(h, check, parent_hash, toks, pool_->block_data(b))) {
        pool_->release(b);
        break;
      }
      pool_->publish(b, h, parent, toks);
    }
    if (b < 0) break;
    cache.adopt(b);
    ++s.n_published_;
    parent_hash = h;
    parent_check = check;
  }
  const int got = cache.n_past() - before;
  if (got > 0) {
    // Only prompt tokens count as cached input (a resumed sequence re-finds its own output too).
    const int prompt_got = std::max(0, std::min(cache.n_past(), s.n_prompt_) - std::max(before, 0));
    if (!s.had_logits_) s.result_.cached_tokens += prompt_got;
    if (!s.had_logits_) cached_tokens_.fetch_add(prompt_got);
  }
}

void Engine::publish_full_blocks(Sequence& s) {
  if (!opt_.prefix_cache) return;
  KvCache& cache = *s.cache_;
  const int full = cache.n_past() / kBlock;
  if (s.n_published_ >= full) return;
  uint64_t parent_hash = 0;
  for (int i = 0; i < s.n_published_; ++i) parent_hash = pool_->block_hash(parent_hash, s.tokens_.data() + size_t(i) * kBlock);
  const std::vector<int>& table = cache.block_table();
  for (int i = s.n_published_; i < full; ++i) {
    const int32_t* toks = s.tokens_.data() + size_t(i) * kBlock;
    const uint64_t h = pool_->block_hash(parent_hash, toks);
    const int parent = i > 0 ? table[size_t(i - 1)] : -1;
    if (!pool_->publish(table[size_t(i)], h, parent, toks)) {
      // An equal block (same tokens after the same chain) is cached already: hold that
      // one instead, so that chains continue through it. The contents are the same bits.
      const int same = pool_->lookup(h, parent, toks);
      if (same >= 0) cache.replace_block(size_t(i), same);
    }
    parent_hash = h;
  }
  s.n_published_ = full;
}

// Writes the sequence's full blocks that the disk tier lacks (its prompt and output,
// for a later request or process to find).
void Engine::save_to_disk(Sequence& s) {
  if (!disk_ || !opt_.prefix_cache) return;
  const std::vector<int>& table = s.cache_->block_table();
  uint64_t parent_hash = 0, parent_check = 0;
  for (int i = 0; i < s.n_published_; ++i) {
    const int32_t* toks = s.tokens_.data() + size_t(i) * kBlock;
    const uint64_t h = pool_->block_hash(parent_hash, toks), check = KvDiskCache::check_hash(parent_check, toks);
    if (!disk_->contains(h) && !disk_->save(h, check, parent_hash, toks, pool_->block_data(table[size_t(i)]))) return;
    parent_hash = h;
    parent_check = check;
  }
}

void Engine::preempt(Sequence& s) {
  s.proposer_state_.reset();
  s.cache_.reset();  // its blocks go back; the published ones stay cached while they last
  s.n_published_ = 0;
  ++s.result_.preemptions;
  preemptions_.fetch_add(1);
}

void Engine::finish(Sequence& s, const char* reason, const char* detail) {
  if (s.finished_) return;
  s.finished_ = true;
  // Flush what the decoder, stop matcher and splitter still hold.
  if (std::strcmp(reason, "cancelled") != 0 && std::strcmp(reason, "error") != 0) {
    std::string text = s.stop_.matched() ? std::string() : s.stop_.push(s.decoder_.finish());
    if (!s.stop_.matched()) text += s.stop_.finish();
    ReasoningSplitter::Out o = s.route(text);
    ReasoningSplitter::Out tail = s.route_finish();
    o.reasoning += tail.reasoning;
    o.content += tail.content;
    if ((!o.reasoning.empty() || !o.content.empty()) && s.sink_.on_delta)
      s.sink_.on_delta(Delta{s.choice_, o.content, o.reasoning, {}});
  }
  s.result_.finish_reason = reason;
  s.result_.detail = detail;
  s.proposer_state_.reset();
  if (s.cache_) {
    if (s.verified_end_ >= 0) s.cache_->truncate(s.verified_end_);  // finished amid verification
    publish_full_blocks(s);
    save_to_disk(s);
    s.cache_.reset();  // blocks back to the pool now (full ones stay cached)
  }
  if (s.sink_.on_finish) s.sink_.on_finish(std::move(s.result_));
}

void Engine::remove_finished() {
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const std::unique_ptr<Sequence>& s) { return s->finished_; }),
                 running_.end());
  n_running_.store(int64_t(running_.size()));
}

void Engine::finish_all(const char* reason) {
  for (auto& s : running_) finish(*s, reason, reason);
  for (auto& s : waiting_) finish(*s, reason, reason);
  running_.clear();
  waiting_.clear();
  n_running_.store(0);
  n_waiting_.store(0);
}

Engine::Outcome Engine::on_logits(Sequence& s, const float* logits, const int32_t* draft, const TokenDistribution* q) {
  const int n_vocab = model_.config().n_vocab;
  const GenParams& p = s.params_;
  s.had_logits_ = true;
  if (p.max_tokens == 0) {
    finish(s, "length", "max tokens");
    return {false, false};
  }
  // The thinking budget: close the thought, then let the model answer.
  if (s.in_reasoning() && !s.closing_thought_ &&
      ((p.max_reasoning_tokens >= 0 && s.result_.reasoning_tokens >= p.max_reasoning_tokens) ||
       (p.max_reasoning_joules >= 0 && s.result_.reasoning_j >= p.max_reasoning_joules))) {
    s.closing_thought_ = true;
    s.result_.budget_hit = true;
    for (int32_t id : think_close_ids_) s.forced_.push_back(id);
  }
  int32_t id;
  bool took_draft = false;
  const bool forced = !s.forced_.empty();
  if (forced) {
    id = s.forced_.front();
    s.forced_.pop_front();
    took_draft = draft && *draft == id;
  } else {
    TokenDistribution dist;
    s.sampler_.distribution(logits, n_vocab, s.tokens_, &dist);
    const bool constrained = s.matcher_ && !s.in_reasoning();
    if (draft && !constrained) {
      const Verdict v = s.sampler_.verify(dist, *draft, q);
      id = v.token;
      took_draft = v.accepted;
    } else {
      id = s.sampler_.draw(dist);
    }
    // Constrained: the draw stands when the grammar allows it (the common case, and
    // then no mask is computed); otherwise the draw is made again from the masked
    // logits, which gives exactly the masked distribution.
    if (constrained && !grammar_allows(s, id)) {
      id = constrained_draw(s, logits);
      if (id < 0) {
        finish(s, "error", "the grammar allows no token here");
        return {false, false};
      }
    }
  }
  if (took_draft) {
    ++s.result_.accepted_tokens;
    accepted_.fetch_add(1);
  } else if (draft) {
    ++s.result_.rejections;
  }
  std::optional<TokenLogprob> lp;
  if (p.top_logprobs >= 0) lp = to_logprob(tok_, logprobs_of(p.sampling, logits, n_vocab, s.tokens_, id, p.top_logprobs));
  if (!forced && !p.ignore_eos && tok_.is_eog(id)) {
    finish(s, "stop", "end of text");
    return {false, took_draft};
  }
  s.tokens_.push_back(id);
  if (s.sink_.on_token) s.sink_.on_token(id);
  s.result_.tokens.push_back(id);
  ++s.result_.completion_tokens;
  generated_tokens_.fetch_add(1);
  const bool was_reasoning = s.in_reasoning();
  if (was_reasoning || (s.closing_thought_ && forced)) ++s.result_.reasoning_tokens;  // the closing markup is part of the thought
  const std::string text = s.stop_.push(s.decoder_.push(id));
  ReasoningSplitter::Out o = s.route(text);
  Delta d{s.choice_, std::move(o.content), std::move(o.reasoning), {}};
  if (lp) {
    lp->token = id < tok_.n_vocab() ? tok_.piece(id) : std::string();
    d.logprobs.push_back(std::move(*lp));
  }
  bool grammar_done = false;
  if (s.matcher_ && !was_reasoning && !forced) {
    if (!s.matcher_->advance(tok_.piece(id))) {
      finish(s, "error", "internal: a token the grammar refused was sampled");
      return {false, took_draft};
    }
    grammar_done = s.matcher_->must_end() || (s.matcher_->can_end() && tokens_left(s) == 0);
  }
  if ((!d.content.empty() || !d.reasoning.empty() || !d.logprobs.empty()) && s.sink_.on_delta) s.sink_.on_delta(std::move(d));
  if (s.stop_.matched()) {
    finish(s, "stop", "stop string");
    return {false, took_draft};
  }
  if (grammar_done) {
    finish(s, "stop", "grammar complete");
    return {false, took_draft};
  }
  const int max_tokens = p.max_tokens < 0 ? opt_.n_ctx : p.max_tokens;
  if (s.result_.completion_tokens >= max_tokens) {
    finish(s, "length", "max tokens");
    return {false, took_draft};
  }
  if (s.n_known() > opt_.n_ctx) {  // no position left for the token just sampled
    finish(s, "length", "context full");
    return {false, took_draft};
  }
  return {true, took_draft};
}

int Engine::tokens_left(const Sequence& s) const {
  const int max_tokens = s.params_.max_tokens < 0 ? opt_.n_ctx : s.params_.max_tokens;
  return std::max(0, std::min(max_tokens - s.result_.completion_tokens, opt_.n_ctx - s.n_known()));
}

bool Engine::grammar_allows(const Sequence& s, int32_t id) const {
  if (tok_.is_eog(id)) return s.matcher_->can_end();
  if (id >= tok_.n_vocab()) return false;
  const std::string piece = tok_.piece(id);
  if (piece.empty()) return false;  // a control token with no text: never part of the output (as in the mask)
  // This token and those after it must be able to complete the output in time.
  const int32_t d = s.matcher_->distance_after(piece);
  return d >= 0 && d <= tokens_left(s) - 1;
}

int32_t Engine::constrained_draw(Sequence& s, const float* logits) {
  const int n_vocab = model_.config().n_vocab;
  TokenDistribution dist;
  // Most often an allowed token ranks near the top: asking the grammar about the best
  // few is far cheaper than a mask over the whole vocabulary (NOTES.md, "Constrained
  // decoding cost"), and gives the same distribution.
  if (s.sampler_.distribution_among(logits, n_vocab, s.tokens_, [&](int32_t id) { return grammar_allows(s, id); },
                                    kLazyMaskChecks, &dist))
    return s.sampler_.draw(dist);
  if (!trie_) {
    std::vector<std::string> pieces(size_t(tok_.n_vocab()));
    for (int32_t i = 0; i < tok_.n_vocab(); ++i)
      if (!tok_.is_eog(i)) pieces[size_t(i)] = tok_.piece(i);
    trie_ = std::make_unique<GrammarMatcher::TokenTrie>(pieces);
  }
  s.matcher_->allowed_tokens(*trie_, &allowed_, tokens_left(s) - 1);
  const bool can_end = s.matcher_->can_end();
  masked_.assign(logits, logits + n_vocab);
  bool any = false;
  for (int i = 0; i < n_vocab; ++i) {
    const bool ok = i < tok_.n_vocab() && (tok_.is_eog(i) ? can_end : bool(allowed_[size_t(i)]));
    if (!ok) masked_[size_t(i)] = -INFINITY;
    any = any || ok;
  }
  if (!any) return -1;
  s.sampler_.distribution(masked_.data(), n_vocab, s.tokens_, &dist);
  return s.sampler_.draw(dist);
}

// The number of tokens to propose: the k that maximises the expected tokens per unit of
// time, (1 - a^(k+1)) / ((1 - a)(v(k) + k c)) (Leviathan et al. 2023, with the
// verification's own cost): a, the sequence's acceptance rate so far (decayed counts,
// a prior of one verdict each way); c, a proposed token's cost and v(k), the cost of a
// pass verifying k proposals, both over a plain decode step and measured as the engine
// runs. On a CPU v(k) is far from 1 and not linear (NOTES.md): it is kept per k; an
// untried k is assumed as cheap as the measured ones allow (interpolated, and no
// dearer than the next larger measured k), so it gets tried. 0 when no k gains, but
// every 16th pass still proposes one token, so that a changing text is noticed.
double Engine::verify_cost(int k) const {
  if (verify_cost_[size_t(k)] > 0) return verify_cost_[size_t(k)];
  int lo = 0, hi = 0;  // the nearest measured k below (0: v = 1) and above (0: none)
  for (int j = k - 1; j >= 1 && lo == 0; --j)
    if (verify_cost_[size_t(j)] > 0) lo = j;
  for (int j = k + 1; j <= kMaxDraft && hi == 0; ++j)
    if (verify_cost_[size_t(j)] > 0) hi = j;
  const double v_lo = lo > 0 ? verify_cost_[size_t(lo)] : 1.0;
  if (hi == 0) return v_lo;
  return v_lo + (verify_cost_[size_t(hi)] - v_lo) * double(k - lo) / double(hi - lo);
}

int Engine::next_draft_k(Sequence& s) const {
  const int k_max = opt_.spec.max_draft;
  if (!opt_.spec.adaptive) return k_max;
  const double a = std::clamp((s.spec_accepted_ + 1.0) / (s.spec_accepted_ + s.spec_rejected_ + 2.0), 0.0, 0.999);
  const double c = draft_cost_.load();
  int best = 0;
  double best_gain = 1.0;
  for (int k = 1; k <= k_max; ++k) {
    const double gain = (1.0 - std::pow(a, k + 1)) / ((1.0 - a) * (verify_cost(k) + double(k) * c));
    if (gain > best_gain) best_gain = gain, best = k;
  }
  if (best == 0 && ++s.spec_idle_passes_ % 16 == 0) return 1;
  return best;
}

std::vector<Draft> Engine::propose() {
  std::vector<Draft> drafts(running_.size());
  if (!proposer_) return drafts;
  std::vector<Sequence*> who;
  std::vector<int> ks;
  std::vector<size_t> at;
  const int64_t chunk_max = std::max(opt_.prefill_chunk, opt_.prefill_chunk_idle);
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = *running_[i];
    if (s.finished_ || !s.cache_ || !s.params_.speculate || !s.forced_.empty()) continue;
    const int64_t todo = s.n_known() - s.n_computed();
    if (todo < 1 || todo > chunk_max) continue;  // it will not sample after this step
    const int max_tokens = s.params_.max_tokens < 0 ? opt_.n_ctx : s.params_.max_tokens;
    // Room for the drafts' positions, and no more than the tokens still wanted.
    const int k = std::min({next_draft_k(s), opt_.n_ctx - s.n_known(), max_tokens - s.result_.completion_tokens - 1});
    if (k <= 0) continue;
    who.push_back(&s);
    ks.push_back(k);
    at.push_back(i);
  }
  if (who.empty()) return drafts;
  std::vector<Draft> got;
  const auto t0 = std::chrono::steady_clock::now();
  proposer_->propose(who, ks, got);
  propose_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  meter_.add_memory_traffic(proposer_->traffic_bytes());
  propose_k_ = *std::max_element(ks.begin(), ks.end());
  for (size_t j = 0; j < at.size(); ++j) {
    Draft& d = got[j];
    size_t keep = std::min(d.tokens.size(), size_t(ks[j]));
    for (size_t t = 0; t < keep; ++t)
      if (d.tokens[t] < 0 || d.tokens[t] >= model_.config().n_vocab) keep = t;  // a larger draft vocabulary's id
    d.tokens.resize(keep);
    if (!d.q.empty()) d.q.resize(d.tokens.size());
    drafts[at[j]] = std::move(d);
  }
  return drafts;
}

void Engine::run_until_idle() {
  while (!idle()) step();
}

void Engine::step() {
  // 1. Cancelled sequences go first: their blocks are free before this step runs.
  for (auto& s : running_)
    if (s->cancelled()) finish(*s, "cancelled", "cancelled");
  remove_finished();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->cancelled()) {
      finish(**it, "cancelled", "cancelled");
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  // Admission: in order, while the batch has room and the pool holds, roughly, what the
  // sequence needs now (an estimate, not a reservation: blocks are taken as computed).
  while (!waiting_.empty() && int(running_.size()) < opt_.parallel) {
    Sequence& s = *waiting_.front();
    if (!running_.empty() && pool_->available_blocks() < blocks_for(s.n_known()) + 1) break;
    admit(s);
    auto pos = std::upper_bound(running_.begin(), running_.end(), s.arrival,
                                [](uint64_t a, const std::unique_ptr<Sequence>& r) { return a < r->arrival; });
    running_.insert(pos, std::move(waiting_.front()));
    waiting_.pop_front();
  }
  n_running_.store(int64_t(running_.size()));
  n_waiting_.store(int64_t(waiting_.size()));
  if (running_.empty()) return;

  // 2-3. What each sequence computes now, oldest first; blocks taken as needed.
  struct Planned {
    Sequence* seq;
    int64_t n;    // known tokens computed now
    bool decode;  // its one sampled token (else prompt or recomputation)
    Draft draft;  // proposed tokens computed after them, for verification
    std::vector<int32_t> buf;  // the known tokens and the proposed ones, when there are proposals
    int pos = 0;  // the first position computed
  };
  std::vector<Draft> drafts = propose();
  std::vector<Planned> plan;
  bool any_decode = false;
  for (auto& s : running_)
    if (s->had_logits_ && s->n_known() - s->n_computed() == 1) any_decode = true;
  int64_t budget = any_decode ? opt_.prefill_chunk : opt_.prefill_chunk_idle;
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = *running_[i];
    if (s.finished_) continue;
    if (!s.cache_) continue;  // preempted for an older sequence in this very step
    int64_t todo = s.n_known() - s.n_computed();
    if (todo > 1) {
      adopt_cached_prefix(s);  // what an older sequence computed since
      todo = s.n_known() - s.n_computed();
    }
    const bool decode = s.had_logits_ && todo == 1;
    int64_t n = decode ? 1 : std::min(todo, budget);
    if (n <= 0) continue;
    // An older sequence computing the same next block now: take it from the cache next step.
    if (!decode && opt_.prefix_cache && s.n_computed() % kBlock == 0 && s.n_computed() + kBlock <= s.n_known() - 1) {
      const int64_t end = s.n_computed() + kBlock;
      bool wait = false;
      for (const Planned& q : plan) {
        const Sequence& o = *q.seq;
        if (o.n_computed() <= s.n_computed() && o.n_computed() + q.n >= end && o.n_known() >= end &&
            std::equal(s.tokens_.begin(), s.tokens_.begin() + end, o.tokens_.begin()))
          wait = true;
      }
      if (wait) continue;
    }
    // Proposals ride along only when the chunk reaches the last known token (its logits
    // verify the first one) and their blocks are free now.
    Draft draft = std::move(drafts[i]);
    if (!draft.tokens.empty() && (s.n_computed() + n != s.n_known() ||
                                  !s.cache_->reserve(int(s.n_known() + int64_t(draft.tokens.size()))))) {
      draft = Draft{};
    }
    // Blocks for the chunk; when the pool is dry, the youngest sequences give theirs back.
    while (!s.cache_->reserve(int(s.n_computed() + n))) {
      Sequence* victim = nullptr;
      for (size_t j = running_.size(); j-- > i + 1;)
        if (!running_[j]->finished_ && running_[j]->cache_) {
          victim = running_[j].get();
          break;
        }
      if (!victim) break;
      preempt(*victim);
    }
    if (!s.cache_->reserve(int(s.n_computed() + n))) {
      if (i == 0) {  // the oldest alone cannot fit: the budget is below its context
        finish(s, "error", "KV pool full");
        continue;
      }
      preempt(s);  // younger than the rest: waits for them
      continue;
    }
    plan.push_back(Planned{&s, n, decode, std::move(draft), {}, s.n_computed()});
    if (!decode) budget -= n;
  }
  // Preempted sequences wait again, ahead of the new ones, in order of arrival.
  std::vector<std::unique_ptr<Sequence>> back;
  for (auto& s : running_)
    if (!s->finished_ && !s->cache_) back.push_back(std::move(s));
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
  for (auto it = back.rbegin(); it != back.rend(); ++it) waiting_.push_front(std::move(*it));
  remove_finished();
  n_waiting_.store(int64_t(waiting_.size()));
  if (plan.empty()) return;

  // 4. One forward pass.
  std::vector<Model::Chunk> chunks;
  size_t n_rows = 0;
  for (Planned& q : plan) {
    const int32_t* known = q.seq->tokens_.data() + q.seq->n_computed();
    const int64_t k = int64_t(q.draft.tokens.size());
    if (k == 0) {
      chunks.push_back(Model::Chunk{&*q.seq->cache_, known, q.n, 1});
    } else {
      q.buf.assign(known, known + q.n);
      q.buf.insert(q.buf.end(), q.draft.tokens.begin(), q.draft.tokens.end());
      chunks.push_back(Model::Chunk{&*q.seq->cache_, q.buf.data(), q.n + k, 1 + k});
    }
    n_rows += size_t(chunks.back().n_logits);
  }
  const ModelConfig& cfg = model_.config();
  uint64_t traffic = model_.weight_bytes_per_token();
  for (const Model::Chunk& c : chunks)
    traffic += meter::forward_traffic_bytes(0, cfg.kv_bytes_per_token(pool_->type()), c.cache->n_past(), c.n);
  meter_.add_memory_traffic(traffic);
  logits_.resize(n_rows * size_t(cfg.n_vocab));

  const auto t0 = std::chrono::steady_clock::now();
  const double j0 = meter_.joules();
  try {
    model_.forward_batch(chunks, logits_.data());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[jevons] forward pass failed: %s\n", e.what());
    for (const Planned& q : plan) finish(*q.seq, "error", "forward pass failed");
    remove_finished();
    return;
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double dj = std::max(0.0, meter_.joules() - j0);
  int64_t total = 0, n_decode = 0, n_prefill = 0;
  for (const Planned& q : plan) {
    const int64_t k = int64_t(q.draft.tokens.size());
    total += q.n + k;
    if (q.decode) n_decode += q.n + k;
    else n_prefill += q.n, n_decode += k;
  }
  steps_.fetch_add(1);
  add_to(joules_, dj);
  add_to(busy_s_, dt);
  add_to(prefill_joules_, dj * double(n_prefill) / double(total));
  batch_tokens_last_.store(total);
  prompt_tokens_.fetch_add(n_prefill);
  bool verifies = false;
  for (const Planned& q : plan) verifies |= !q.draft.tokens.empty();
  if (verifies) {
    add_to(verify_s_total_, dt);
    verify_steps_.fetch_add(1);
  }
  if (propose_k_ > 0) add_to(propose_s_total_, propose_s_);
  // The costs next_draft_k weighs, over a plain decode step (a step of decodes alone).
  bool decodes_only = true;
  int64_t n_extra = 0;
  for (const Planned& q : plan) {
    decodes_only &= q.decode;
    n_extra += int64_t(q.draft.tokens.size());
  }
  auto average = [](std::atomic<double>& v, double x) {
    const double old = v.load();
    v.store(old == 0 ? x : 0.8 * old + 0.2 * x);
  };
  if (dt > 0 && decodes_only && n_extra == 0) average(plain_step_s_, dt);
  const double plain = plain_step_s_.load();
  int k_pass = 0;  // the most proposals one sequence verified in this pass
  for (const Planned& q : plan) k_pass = std::max(k_pass, int(q.draft.tokens.size()));
  if (plain > 0 && decodes_only && k_pass > 0) {
    double& v = verify_cost_[size_t(k_pass)];
    v = v == 0 ? dt / plain : 0.8 * v + 0.2 * dt / plain;
    average(verify_extra_, std::max(0.0, dt / plain - 1.0) / double(n_extra));
  }
  if (plain > 0 && propose_k_ > 0) average(draft_cost_, propose_s_ / double(propose_k_) / plain);
  propose_k_ = 0;
  if (n_decode > 0 && dt > 0) {
    const double tps = double(n_decode) / dt;
    const double old = decode_tps_.load();
    decode_tps_.store(old == 0 ? tps : 0.8 * old + 0.2 * tps);
  }

  if (proposer_ && proposer_->reads_hidden()) {  // the trunk's states, for an MTP module
    const std::vector<float>& h = model_.hidden();
    size_t at = 0, rows = 0;
    for (const Model::Chunk& c : chunks) rows += size_t(c.n);
    if (h.size() < rows * size_t(cfg.n_embd)) fail("internal: the model kept no hidden states for the proposer");
    for (size_t i = 0; i < plan.size(); ++i) {
      proposer_->on_computed(*plan[i].seq, plan[i].pos, chunks[i].n, h.data() + at * size_t(cfg.n_embd));
      at += size_t(chunks[i].n);
    }
  }
  // 5. Publish, then sample whatever has all its tokens computed, verifying proposals.
  size_t row = 0;
  for (Planned& q : plan) {
    Sequence& s = *q.seq;
    const int k = int(q.draft.tokens.size());
    const double share = dj * double(q.n + k) / double(total);
    meter::PhaseEnergy& phase = q.decode ? s.result_.decode : s.result_.prefill;
    phase.joules += share;
    phase.seconds += dt;
    if (q.decode && s.in_reasoning()) s.result_.reasoning_j += share;
    const float* logits = logits_.data() + row * size_t(cfg.n_vocab);
    row += size_t(1 + k);
    if (k == 0) {
      publish_full_blocks(s);
      if (s.n_computed() == s.n_known()) {
        ++s.result_.sampling_passes;
        on_logits(s, logits);
      }
      continue;
    }
    // The cache holds the known tokens and then the k proposed ones. Row j's logits
    // (after the known tokens and j proposals) verify proposal j; after k acceptances
    // the last row gives one more token. The cache keeps only accepted positions.
    s.verified_end_ = s.n_known();
    s.result_.drafted_tokens += k;
    ++s.result_.sampling_passes;
    drafted_.fetch_add(k);
    int accepted = 0;
    for (int j = 0; j <= k; ++j) {
      const bool proposal = j < k;
      const Outcome o = on_logits(s, logits + size_t(j) * size_t(cfg.n_vocab), proposal ? &q.draft.tokens[size_t(j)] : nullptr,
                                  proposal && !q.draft.q.empty() ? &q.draft.q[size_t(j)] : nullptr);
      if (!o.alive || !proposal || !o.took_draft) break;
      ++accepted;
      ++s.verified_end_;
    }
    constexpr double kDecay = 0.9;  // the acceptance rate follows the text's recent character
    s.spec_accepted_ = kDecay * s.spec_accepted_ + accepted;
    s.spec_rejected_ = kDecay * s.spec_rejected_ + (accepted < k ? 1 : 0);
    if (!s.finished_) {
      s.cache_->truncate(s.verified_end_);
      publish_full_blocks(s);
    }
    s.verified_end_ = -1;
  }
  remove_finished();
}

}  // namespace jevons::engine
