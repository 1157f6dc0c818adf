// The Jevons meter: energy, cost and carbon for every run and every request.
//
// Usage (what `jevons run` does; the benchmark and the server do the same):
//
//   #include "meter/meter.h"
//   namespace jm = jevons::meter;
//   jm::Meter meter(jm::resolve_config(overrides));   // probes the sources once
//   meter.start_log("power.csv");                     // optional CSV time series
//   jm::Span span = meter.span();                     // one run or request
//   span.mark(jm::Phase::Prefill);
//   model.forward(prompt...);  meter.add_memory_traffic(bytes);   // bytes feed the estimate
//   span.mark(jm::Phase::Decode);
//   ... generate ...
//   jm::EnergyReport r = span.finish(n_prompt_tokens, n_generated_tokens);
//   std::fprintf(stderr, "%s\n", jm::summary_line(r).c_str());
//   json["energy"] = jm::to_json(r);                   // bench: source, estimated, prefill_j, ...
//
// Sources (sources.h): in "auto" mode the CPU side is RAPL when readable, else the
// estimate model (estimate.h); NVIDIA GPUs found through NVML are added on top. A
// report is "estimated" when any part of it comes from the model, else "measured",
// and always names its source. Measured sources see the whole machine (every
// package, DRAM, GPU), so concurrent spans each see the total over their time.
// Configuration: config.h. Accounting formulas and default prices: accounting.h.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/output_file.h"
#include "meter/accounting.h"
#include "meter/config.h"
#include "meter/estimate.h"
#include "meter/sources.h"

namespace jevons::meter {

enum class Phase { Idle, Prefill, Decode };

class Span;

class Meter {
 public:
  // Probes rapl, nvml and the estimate and keeps the ones config.energy_source asks
  // for. Throws Error when a source asked for by name is unavailable (with why).
  explicit Meter(const MeterConfig& config);
  ~Meter();  // writes the log's final row, stops and joins the sampler thread
  Meter(const Meter&) = delete;
  Meter& operator=(const Meter&) = delete;

  const MeterConfig& config() const { return config_; }
  // Every source probed, in order rapl, nvml, estimate, available or not.
  const std::vector<Probe>& probes() const { return probes_; }
  // "rapl", "nvml", "estimate", "rapl+nvml", "estimate+nvml".
  const std::string& source() const { return source_; }
  std::string source_detail() const;
  bool estimated() const { return estimated_; }

  // Joules since the meter was created, all active sources together. Thread-safe.
  double joules();
  // Per source and domain, cumulative joules ("rapl/package-0 [intel-rapl:0]", ...).
  std::vector<Component> components();
  // Errors sources met while sampling.
  std::vector<std::string> errors();
  // What a user should be told once at start-up: a measuring source that exists but
  // cannot be read (RAPL without permission), and notices of the sources in use
  // (no DRAM domain, a GPU skipped). Empty on a plain VM, where the estimate is normal.
  std::vector<std::string> warnings() const;
  // Bytes read from memory (weights, KV cache); the estimate charges them. Thread-safe.
  void add_memory_traffic(uint64_t bytes);

  // Writes "t_s,watts,joules,source" rows every config().sample_ms (t_s and joules
  // since start_log, watts over the last interval) and a final row at stop_log().
  // Throws Error when the file cannot be written.
  void start_log(const std::string& path);
  void stop_log();

  Span span();

 private:
  friend class Span;
  // All sources, now; *t receives the time used. Serialised, so that times and
  // readings from any thread are monotonic together.
  double sample(double* t);
  void ensure_thread();
  void sampler_loop();
  void write_row_locked(double t, double j);

  MeterConfig config_;
  std::vector<Probe> probes_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::string source_;
  bool estimated_ = true;

  std::mutex sample_mu_;
  std::mutex log_mu_;
  std::FILE* log_ = nullptr;                 // log_file_'s, while a log is being written
  std::unique_ptr<OutputFile> log_file_;
  std::string log_path_;
  double log_t0_ = 0, log_j0_ = 0, log_last_t_ = 0, log_last_j_ = 0, log_last_w_ = 0;
  int64_t log_rows_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// One run or request: phases marked in order, then a report. Not thread-safe
// itself (one per request); any number may be open on one Meter.
class Span {
 public:
  explicit Span(Meter& m);
  // Ends the current phase (its joules and seconds are added to it) and starts p.
  // Phases may repeat (chunked prefill); Idle time is counted in neither.
  void mark(Phase p);
  // Ends the current phase and returns the report for the given token counts.
  EnergyReport finish(int64_t prefill_tokens, int64_t decode_tokens);

 private:
  Meter* m_;
  Phase phase_ = Phase::Idle;
  double t_ = 0, j_ = 0;
  PhaseEnergy prefill_, decode_;
};

}  // namespace jevons::meter
