// The continuous-batching engine behind `jevons serve`, usable without HTTP.
//
// One engine thread runs steps. A step gathers the next token of every decoding
// sequence plus at most one chunk of a prompt being prefilled (so a long prompt
// never stalls running streams) into ONE Model::forward_batch call, which reads the
// weights once for everyone; then each sequence samples with its own Sampler,
// detokenizes (StreamDecoder), matches stop strings and splits reasoning from
// content, and pushes deltas to its Request. New requests join between steps.
//
// KV memory: every sequence is a KvCache drawing blocks from one KvBlockPool (the
// --kv-budget). A sequence is admitted only when the pool can hold its prompt plus
// max_tokens (reserved up front, so a running sequence never runs out and nothing
// has to be preempted); otherwise it waits in a bounded queue (submit() throws
// ApiError 429 beyond it). A cancelled sequence (client gone) is dropped at the next
// step and its blocks go back to the pool at once.
//
// Energy: the meter's joules over each step are shared among the step's sequences in
// proportion to the tokens each put into the batch (prefill and decode apart), so
// concurrent requests' energies add up to the machine's instead of each seeing all.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "meter/meter.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace jevons::server {

// An error with the HTTP status and OpenAI error type it maps to.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, const std::string& msg, std::string param = "", std::string code = "")
      : std::runtime_error(msg), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

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
};

struct TokenLogprob {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// A piece of one choice's output.
struct Delta {
  int choice = 0;
  std::string content, reasoning;
  std::vector<TokenLogprob> logprobs;
};

struct ChoiceResult {
  std::string finish_reason;  // "stop", "length", "cancelled"
  int completion_tokens = 0, reasoning_tokens = 0;
  bool budget_hit = false;
  std::vector<int32_t> tokens;
  meter::PhaseEnergy prefill, decode;
  double reasoning_j = 0;
};

// One API request (n choices). The HTTP side waits on it; the engine fills it.
class Request {
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
  std::vector<ChoiceResult> results() const;
  meter::EnergyReport energy(const meter::Meter& meter) const;
  // Seconds from submit to the first delta and to the end.
  double ttft_s() const;

  // Engine side.
  void push(Delta d);
  void finish_choice(int choice, ChoiceResult r);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Delta> pending_;
  std::vector<ChoiceResult> choices_;
  int n_done_ = 0;
  int prompt_tokens_;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
  double ttft_s_ = -1;
};

struct SchedulerOptions {
  int parallel = 8;           // sequences decoding together at most
  int n_ctx = 4096;           // context per sequence
  size_t kv_budget_bytes = size_t(1) << 30;
  int max_queue = 64;         // sequences waiting beyond the running ones; more: 429
  int prefill_chunk = 128;    // prompt tokens per step while others decode
  int prefill_chunk_idle = 512;  // when nothing else is decoding
};

struct SchedulerStats {
  int64_t queued = 0, running = 0;
  size_t kv_blocks_used = 0, kv_blocks_total = 0;
  int64_t steps = 0, prompt_tokens = 0, generated_tokens = 0;
  double joules = 0, busy_s = 0;
  double decode_tokens_per_s = 0;  // recent (exponential average over steps)
  int64_t batch_tokens_last = 0;
};

class Scheduler {
 public:
  // model, tokenizer and meter must outlive the scheduler. Starts the engine thread.
  Scheduler(Model& model, const Tokenizer& tokenizer, meter::Meter& meter, SchedulerOptions options);
  ~Scheduler();  // stops and joins
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues n choices of prompt. Throws ApiError: 400 for a prompt that cannot fit
  // (context or KV budget), 429 when the queue is full.
  std::shared_ptr<Request> submit(const std::vector<int32_t>& prompt, const GenParams& params, int n = 1);
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opt_; }
  const Tokenizer& tokenizer() const { return tok_; }
  Model& model() { return model_; }
  void stop();

 private:
  struct Seq;
  void loop();
  void step(std::vector<std::unique_ptr<Seq>>& running);
  // Samples, detokenizes and delivers one token; false when the sequence is done.
  bool on_logits(Seq& s, float* logits, double step_j_share);
  void finish(Seq& s, const char* reason);

  Model& model_;
  const Tokenizer& tok_;
  meter::Meter& meter_;
  SchedulerOptions opt_;
  std::shared_ptr<KvBlockPool> pool_;
  std::vector<int32_t> think_close_ids_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Seq>> queue_;
  bool stop_ = false;
  std::thread thread_;

  std::atomic<int64_t> n_running_{0}, steps_{0}, prompt_tokens_{0}, generated_tokens_{0}, batch_tokens_last_{0};
  std::atomic<double> joules_{0}, busy_s_{0}, decode_tps_{0};
  std::vector<float> logits_;
};

}  // namespace jevons::server
