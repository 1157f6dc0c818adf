#include "engine/scheduler.h"

#include <algorithm>
#include <cstdio>

namespace jevons::engine {

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

void Request::finish_choice(int choice, SequenceResult r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ttft_s_ < 0) ttft_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  choices_[size_t(choice)] = std::move(r);
  ++n_done_;
  cv_.notify_all();
}

SequenceSink Request::sink(int choice) {
  SequenceSink s;
  std::shared_ptr<Request> self = shared_from_this();
  s.on_delta = [self](Delta&& d) { self->push(std::move(d)); };
  s.on_finish = [self, choice](SequenceResult&& r) { self->finish_choice(choice, std::move(r)); };
  s.cancelled = [self] { return self->cancelled(); };
  return s;
}

std::vector<SequenceResult> Request::results() const {
  std::lock_guard<std::mutex> lock(mu_);
  return choices_;
}

int Request::cached_tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const SequenceResult& c : choices_) n = std::max(n, c.cached_tokens);
  return n;
}

double Request::ttft_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ttft_s_;
}

meter::EnergyReport Request::energy(const meter::Meter& meter) const {
  meter::PhaseEnergy prefill, decode;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const SequenceResult& c : choices_) {
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

Scheduler::Scheduler(Model& model, const Tokenizer& tokenizer, meter::Meter& meter, SchedulerOptions options)
    : opt_(options), engine_(model, tokenizer, meter, opt_.engine) {
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
  using K = RequestError::Kind;
  if (prompt.empty()) throw RequestError(K::kInvalid, "the prompt is empty", "prompt");
  if (n < 1 || n > 16) throw RequestError(K::kInvalid, "n must be between 1 and 16", "n");
  const int n_vocab = engine_.model().config().n_vocab;
  for (int32_t id : prompt)
    if (id < 0 || id >= n_vocab) throw RequestError(K::kInvalid, fmt::format("token id {} is out of range", id), "prompt");
  const int n_ctx = opt_.engine.n_ctx;
  const int n_prompt = int(prompt.size());
  if (n_prompt >= n_ctx)
    throw RequestError(K::kInvalid,
                       fmt::format("This model's maximum context length is {} tokens, but the prompt is {} tokens.", n_ctx, n_prompt),
                       "messages", "context_length_exceeded");
  if (params.max_tokens >= 0 && n_prompt + params.max_tokens > n_ctx)
    throw RequestError(K::kInvalid,
                       fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
                                   "messages, {} in the completion). Please reduce the length of the messages or completion.",
                                   n_ctx, n_prompt + params.max_tokens, n_prompt, params.max_tokens),
                       "max_tokens", "context_length_exceeded");
  auto req = std::make_shared<Request>(n, n_prompt);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) throw RequestError(K::kUnavailable, "the server is shutting down");
    // max_queue counts the sequences that would wait for a slot (0: no queue, not no service).
    const EngineStats es = engine_.stats();
    const int64_t queued = es.waiting + int64_t(inbox_.size());
    const int64_t free_slots = std::max<int64_t>(0, opt_.engine.parallel - es.running);
    if (queued + n - free_slots > opt_.max_queue)
      throw RequestError(K::kBusy, fmt::format("the server is busy ({} requests queued); retry later", queued), "", "queue_full");
    for (int c = 0; c < n; ++c) {
      GenParams p = params;
      p.sampling.seed = params.sampling.seed + uint64_t(c);
      inbox_.push_back(std::make_unique<Sequence>(prompt, p, engine_.tokenizer(), req->sink(c), c));
    }
  }
  cv_.notify_all();
  return req;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  static_cast<EngineStats&>(s) = engine_.stats();
  std::lock_guard<std::mutex> lock(mu_);
  s.queued = s.waiting + int64_t(inbox_.size());
  return s;
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !engine_.idle(); });
      if (stop_) break;
      while (!inbox_.empty()) {
        engine_.add(std::move(inbox_.front()));  // fits: submit() checked the context
        inbox_.pop_front();
      }
    }
    engine_.step();
  }
  // Shutting down: everything running, waiting or not yet handed over ends as cancelled.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : inbox_) engine_.add(std::move(s));
  inbox_.clear();
  engine_.finish_all("cancelled");
}

}  // namespace jevons::engine
