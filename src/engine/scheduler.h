// The engine on its own thread, for callers that submit from other threads (the HTTP
// server): requests of n choices go in, their deltas come out through a Request
// that the caller waits on. The generation itself is Engine::step (engine.h).
//
// Admission: a request is refused (RequestError) only when it cannot fit the context
// or the queue is full. Nothing is reserved for max_tokens: the engine takes KV
// blocks as tokens are computed and preempts when the pool runs dry, so every request
// that fits the context completes. A cancelled request (client gone) is dropped at the
// next step and its blocks go back to the pool at once.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"

namespace jevons::engine {

// A request refused, with what the caller can do about it.
struct RequestError : Error {
  enum class Kind { kInvalid, kBusy, kUnavailable };
  RequestError(Kind kind, const std::string& msg, std::string param = "", std::string code = "")
      : Error(msg), kind(kind), param(std::move(param)), code(std::move(code)) {}
  Kind kind;
  std::string param, code;
};

// One request (n choices). The caller waits on it; the engine thread fills it.
class Request : public std::enable_shared_from_this<Request> {
 public:
  explicit Request(int n_choices, int prompt_tokens) : choices_(size_t(n_choices)), prompt_tokens_(prompt_tokens) {}
  // Moves pending deltas into out, waiting up to timeout for some. Returns true when
  // every choice has finished and nothing is pending.
  bool wait(std::vector<Delta>& out, std::chrono::milliseconds timeout);
  bool done() const;
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  int prompt_tokens() const { return prompt_tokens_; }
  // After done(): per-choice results and the combined energy report.
  std::vector<SequenceResult> results() const;
  meter::EnergyReport energy(const meter::Meter& meter) const;
  // Prompt tokens found in the prefix cache (the most of any choice).
  int cached_tokens() const;
  // Seconds from submit to the first delta and to the end.
  double ttft_s() const;

  // The sink of one choice's sequence (it keeps the request alive while the sequence lives).
  SequenceSink sink(int choice);

 private:
  void push(Delta d);
  void finish_choice(int choice, SequenceResult r);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Delta> pending_;
  std::vector<SequenceResult> choices_;
  int n_done_ = 0;
  int prompt_tokens_;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
  double ttft_s_ = -1;
};

struct SchedulerOptions {
  EngineOptions engine;
  int max_queue = 64;  // sequences waiting beyond the running ones; more: refused (kBusy)
};

struct SchedulerStats : EngineStats {
  int64_t queued = 0;  // waiting, in the engine or not yet handed to it
};

class Scheduler {
 public:
  // model, tokenizer and meter must outlive the scheduler. Starts the engine thread.
  Scheduler(Model& model, const Tokenizer& tokenizer, meter::Meter& meter, SchedulerOptions options);
  ~Scheduler();  // stops and joins
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues n choices of prompt (choice c samples with seed + c). Throws RequestError.
  std::shared_ptr<Request> submit(const std::vector<int32_t>& prompt, const GenParams& params, int n = 1);
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opt_; }
  int n_ctx() const { return opt_.engine.n_ctx; }
  const Tokenizer& tokenizer() const { return engine_.tokenizer(); }
  Engine& engine() { return engine_; }
  void stop();

 private:
  void loop();

  SchedulerOptions opt_;
  Engine engine_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> inbox_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace jevons::engine
