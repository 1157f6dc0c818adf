#include "server/scheduler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "meter/estimate.h"
#include "server/text.h"

namespace jevons::server {

// ---- Request ----

bool Request::wait(std::vector<Delta>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !pending_.empty() || n_done_ == int(choices_.size()); });
  while (!pending_.empty()) {
    out.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  return n_done_ == int(choices_.size());
}

bool Request::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return n_done_ == int(choices_.size());
}

void Request::push(Delta d) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ttft_s_ < 0) ttft_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  pending_.push_back(std::move(d));
  cv_.notify_all();
}

void Request::finish_choice(int choice, ChoiceResult r) {
  std::lock_guard<std::mutex> lock(mu_);
  choices_[size_t(choice)] = std::move(r);
  ++n_done_;
  cv_.notify_all();
}

std::vector<ChoiceResult> Request::results() const {
  std::lock_guard<std::mutex> lock(mu_);
  return choices_;
}

double Request::ttft_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ttft_s_;
}

meter::EnergyReport Request::energy(const meter::Meter& meter) const {
  meter::PhaseEnergy prefill, decode;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const ChoiceResult& c : choices_) {
      prefill.joules += c.prefill.joules;
      prefill.seconds = std::max(prefill.seconds, c.prefill.seconds);
      decode.joules += c.decode.joules;
      decode.seconds = std::max(decode.seconds, c.decode.seconds);
      decode.tokens += c.completion_tokens;
    }
    prefill.tokens = prompt_tokens_;
  }
  return meter::make_report(meter.source(), meter.source_detail(), meter.estimated(), prefill, decode, meter.config().prices);
}

// ---- Scheduler ----

struct Scheduler::Seq {
  std::shared_ptr<Request> req;
  int choice = 0;
  GenParams params;
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  KvCache cache;
  Sampler sampler;
  StreamDecoder decoder;
  StopMatcher stop;
  ReasoningSplitter splitter;
  size_t n_prefilled = 0;
  int32_t next = -1;  // token to feed at the next decode step
  std::deque<int32_t> forced;
  bool closing_thought = false;
  ChoiceResult result;

  Seq(std::shared_ptr<Request> r, int c, const GenParams& p, std::vector<int32_t> pr, int max_tok,
      std::shared_ptr<KvBlockPool> pool, int n_ctx, const Tokenizer& tok)
      : req(std::move(r)), choice(c), params(p), prompt(std::move(pr)), max_tokens(max_tok), cache(std::move(pool), n_ctx),
        sampler(p.sampling), decoder(tok), stop(p.stop), splitter(p.reasoning_at_start) {
    for (int32_t id : prompt) sampler.accept(id);
  }
  bool prefilling() const { return n_prefilled < prompt.size(); }
  ReasoningSplitter::Out route(const std::string& text) {
    if (params.split_reasoning) return splitter.push(text);
    return ReasoningSplitter::Out{"", text};
  }
  ReasoningSplitter::Out route_finish() {
    if (params.split_reasoning) return splitter.finish();
    return {};
  }
  bool in_reasoning() const { return params.split_reasoning && splitter.in_reasoning(); }
};

Scheduler::Scheduler(Model& model, const Tokenizer& tokenizer, meter::Meter& meter, SchedulerOptions options)
    : model_(model), tok_(tokenizer), meter_(meter), opt_(options) {
  if (opt_.parallel < 1) fail("--parallel must be at least 1");
  pool_ = model_.new_block_pool(opt_.kv_budget_bytes);
  if (pool_->total_blocks() == 0) fail("--kv-budget of {} bytes holds no KV block; raise it", opt_.kv_budget_bytes);
  logits_.resize(size_t(opt_.parallel + 1) * size_t(model_.config().n_vocab));
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<Request> Scheduler::submit(const std::vector<int32_t>& prompt, const GenParams& params, int n) {
  if (prompt.empty()) throw ApiError(400, "invalid_request_error", "the prompt is empty", "prompt");
  if (n < 1 || n > 16) throw ApiError(400, "invalid_request_error", "n must be between 1 and 16", "n");
  const int n_vocab = model_.config().n_vocab;
  for (int32_t id : prompt)
    if (id < 0 || id >= n_vocab) throw ApiError(400, "invalid_request_error", fmt::format("token id {} is out of range", id), "prompt");
  const int n_prompt = int(prompt.size());
  if (n_prompt >= opt_.n_ctx)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("This model's maximum context length is {} tokens, but the prompt is {} tokens.", opt_.n_ctx, n_prompt),
                   "messages", "context_length_exceeded");
  int max_tokens = params.max_tokens < 0 ? opt_.n_ctx - n_prompt : params.max_tokens;
  if (n_prompt + max_tokens > opt_.n_ctx)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
                               "messages, {} in the completion). Please reduce the length of the messages or completion.",
                               opt_.n_ctx, n_prompt + max_tokens, n_prompt, max_tokens),
                   "max_tokens", "context_length_exceeded");
  const size_t blocks = size_t(n_prompt + max_tokens + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens;
  if (blocks > pool_->total_blocks())
    throw ApiError(400, "invalid_request_error",
                   fmt::format("prompt + max_tokens = {} tokens need {} KV blocks but the server's --kv-budget holds {}; lower max_tokens",
                               n_prompt + max_tokens, blocks, pool_->total_blocks()),
                   "max_tokens");
  auto req = std::make_shared<Request>(n, n_prompt);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) throw ApiError(503, "server_error", "the server is shutting down");
    if (int(queue_.size()) + n > opt_.max_queue)
      throw ApiError(429, "rate_limit_error", fmt::format("the server is busy ({} requests queued); retry later", queue_.size()),
                     "", "queue_full");
    for (int c = 0; c < n; ++c) {
      GenParams p = params;
      p.sampling.seed = params.sampling.seed + uint64_t(c);
      queue_.push_back(std::make_unique<Seq>(req, c, p, prompt, max_tokens, pool_, opt_.n_ctx, tok_));
    }
  }
  cv_.notify_all();
  return req;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.queued = int64_t(queue_.size());
  }
  s.running = n_running_.load();
  s.kv_blocks_total = pool_->total_blocks();
  s.kv_blocks_used = pool_->used_blocks();
  s.steps = steps_.load();
  s.prompt_tokens = prompt_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  s.joules = joules_.load();
  s.busy_s = busy_s_.load();
  s.decode_tokens_per_s = decode_tps_.load();
  s.batch_tokens_last = batch_tokens_last_.load();
  return s;
}

void Scheduler::finish(Seq& s, const char* reason) {
  // Flush what the decoder, stop matcher and splitter still hold.
  if (std::string(reason) != "cancelled") {
    std::string text = s.stop.matched() ? std::string() : s.stop.push(s.decoder.finish());
    if (!s.stop.matched()) text += s.stop.finish();
    ReasoningSplitter::Out o = s.route(text);
    ReasoningSplitter::Out tail = s.route_finish();
    o.reasoning += tail.reasoning;
    o.content += tail.content;
    if (!o.reasoning.empty() || !o.content.empty()) s.req->push(Delta{s.choice, o.content, o.reasoning, {}});
  }
  s.result.finish_reason = reason;
  s.cache.clear();  // blocks back to the pool now
  s.req->finish_choice(s.choice, std::move(s.result));
}

static TokenLogprob logprob_of(const Tokenizer& tok, const float* logits, int n_vocab, int32_t id, int top) {
  float mx = logits[0];
  for (int i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  const double lse = double(mx) + std::log(sum);
  TokenLogprob lp;
  lp.token = id < tok.n_vocab() ? tok.piece(id) : std::string();
  lp.logprob = float(double(logits[id]) - lse);
  if (top > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(n_vocab));
    for (int i = 0; i < n_vocab; ++i) idx[size_t(i)] = i;
    const int k = std::min(top, n_vocab);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    for (int i = 0; i < k; ++i) {
      const int32_t t = idx[size_t(i)];
      lp.top.emplace_back(t < tok.n_vocab() ? tok.piece(t) : std::string(), float(double(logits[t]) - lse));
    }
  }
  return lp;
}

bool Scheduler::on_logits(Seq& s, float* logits, double decode_j) {
  const int n_vocab = model_.config().n_vocab;
  const GenParams& p = s.params;
  // The thinking budget: close the thought, then let the model answer.
  if (s.in_reasoning() && !s.closing_thought &&
      ((p.max_reasoning_tokens >= 0 && s.result.reasoning_tokens >= p.max_reasoning_tokens) ||
       (p.max_reasoning_joules >= 0 && s.result.reasoning_j >= p.max_reasoning_joules))) {
    s.closing_thought = true;
    s.result.budget_hit = true;
    for (int32_t id : think_close_ids_) s.forced.push_back(id);
  }
  std::optional<TokenLogprob> lp;
  int32_t id;
  const bool forced = !s.forced.empty();
  if (forced) {
    id = s.forced.front();
    s.forced.pop_front();
    if (p.top_logprobs >= 0) lp = logprob_of(tok_, logits, n_vocab, id, p.top_logprobs);
  } else {
    if (p.top_logprobs >= 0) {
      std::vector<float> raw(logits, logits + n_vocab);
      id = s.sampler.sample(logits, n_vocab);
      lp = logprob_of(tok_, raw.data(), n_vocab, id, p.top_logprobs);
    } else {
      id = s.sampler.sample(logits, n_vocab);
    }
  }
  if (!forced && tok_.is_eog(id)) {
    finish(s, "stop");
    return false;
  }
  s.sampler.accept(id);
  s.result.tokens.push_back(id);
  ++s.result.completion_tokens;
  generated_tokens_.fetch_add(1);
  const bool was_reasoning = s.in_reasoning();
  if (was_reasoning || (s.closing_thought && forced)) ++s.result.reasoning_tokens;  // the closing markup is part of the thought
  (void)decode_j;
  const std::string text = s.stop.push(s.decoder.push(id));
  ReasoningSplitter::Out o = s.route(text);
  Delta d{s.choice, std::move(o.content), std::move(o.reasoning), {}};
  if (lp) d.logprobs.push_back(std::move(*lp));
  if (!d.content.empty() || !d.reasoning.empty() || !d.logprobs.empty()) s.req->push(std::move(d));
  if (s.stop.matched()) {
    finish(s, "stop");
    return false;
  }
  if (s.result.completion_tokens >= s.max_tokens || s.cache.n_past() + 1 > s.cache.n_ctx()) {
    finish(s, "length");
    return false;
  }
  s.next = id;
  return true;
}

void Scheduler::loop() {
  think_close_ids_.clear();
  std::vector<std::unique_ptr<Seq>> running;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (stop_) break;
        // Admit waiting sequences while there is room in the batch and the pool.
        while (!queue_.empty() && int(running.size()) < opt_.parallel) {
          Seq& s = *queue_.front();
          if (s.req->cancelled()) {
            std::unique_ptr<Seq> dead = std::move(queue_.front());
            queue_.pop_front();
            finish(*dead, "cancelled");
            continue;
          }
          if (!s.cache.reserve(int(s.prompt.size()) + s.max_tokens)) break;  // wait for blocks
          running.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (!running.empty()) break;
        cv_.wait(lock);
      }
      if (stop_) break;
    }
    n_running_.store(int64_t(running.size()));
    step(running);
    n_running_.store(int64_t(running.size()));
  }
  // Shutting down: everything still running or queued ends as cancelled.
  for (auto& s : running) finish(*s, "cancelled");
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : queue_) finish(*s, "cancelled");
  queue_.clear();
  n_running_.store(0);
}

void Scheduler::step(std::vector<std::unique_ptr<Seq>>& running) {
  if (think_close_ids_.empty()) think_close_ids_ = tok_.encode("\n</think>\n\n", false, true);
  // Drop cancelled sequences first: their blocks are free before this step runs.
  for (size_t i = 0; i < running.size();) {
    if (running[i]->req->cancelled()) {
      finish(*running[i], "cancelled");
      running.erase(running.begin() + ptrdiff_t(i));
    } else {
      ++i;
    }
  }
  if (running.empty()) return;

  std::vector<Model::Chunk> chunks;
  std::vector<Seq*> owner;
  int64_t n_decode = 0;
  for (auto& s : running)
    if (!s->prefilling()) {
      chunks.push_back(Model::Chunk{&s->cache, &s->next, 1, false});
      owner.push_back(s.get());
      ++n_decode;
    }
  Seq* pre = nullptr;
  int64_t pre_n = 0;
  for (auto& s : running)
    if (s->prefilling()) {
      pre = s.get();
      const int64_t chunk = n_decode > 0 ? opt_.prefill_chunk : opt_.prefill_chunk_idle;
      pre_n = std::min<int64_t>(chunk, int64_t(s->prompt.size() - s->n_prefilled));
      chunks.push_back(Model::Chunk{&s->cache, s->prompt.data() + s->n_prefilled, pre_n, false});
      owner.push_back(s.get());
      break;
    }
  if (chunks.empty()) return;

  const ModelConfig& cfg = model_.config();
  uint64_t traffic = model_.weight_bytes_per_token();
  for (const Model::Chunk& c : chunks) traffic += meter::forward_traffic_bytes(0, cfg.kv_bytes_per_token(), c.cache->n_past(), c.n);
  meter_.add_memory_traffic(traffic);

  const auto t0 = std::chrono::steady_clock::now();
  const double j0 = meter_.joules();
  try {
    model_.forward_batch(chunks, logits_.data());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[jevons] serve: forward pass failed: %s\n", e.what());
    for (Seq* s : owner) {
      finish(*s, "error");
      running.erase(std::remove_if(running.begin(), running.end(), [&](const std::unique_ptr<Seq>& r) { return r.get() == s; }),
                    running.end());
    }
    return;
  }
  const double j1 = meter_.joules();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double dj = std::max(0.0, j1 - j0);
  const int64_t total = n_decode + pre_n;
  steps_.fetch_add(1);
  joules_.store(joules_.load() + dj);
  busy_s_.store(busy_s_.load() + dt);
  batch_tokens_last_.store(total);
  if (n_decode > 0 && dt > 0) {
    const double tps = double(n_decode) / dt;
    const double old = decode_tps_.load();
    decode_tps_.store(old == 0 ? tps : 0.8 * old + 0.2 * tps);
  }
  if (pre_n > 0) prompt_tokens_.fetch_add(pre_n);

  std::vector<Seq*> done;
  for (size_t i = 0; i < chunks.size(); ++i) {
    Seq& s = *owner[i];
    float* row = logits_.data() + i * size_t(cfg.n_vocab);
    const double share = dj * double(chunks[i].n) / double(total);
    if (&s == pre) {
      s.result.prefill.joules += share;
      s.result.prefill.seconds += dt;
      s.n_prefilled += size_t(pre_n);
      if (s.prefilling()) continue;
    } else {
      s.result.decode.joules += share;
      s.result.decode.seconds += dt;
      if (s.in_reasoning()) s.result.reasoning_j += share;
    }
    if (!on_logits(s, row, share)) done.push_back(&s);
  }
  if (!done.empty())
    running.erase(std::remove_if(running.begin(), running.end(),
                                 [&](const std::unique_ptr<Seq>& s) { return std::find(done.begin(), done.end(), s.get()) != done.end(); }),
                  running.end());
}

}  // namespace jevons::server
