// Meter: chooses the sources, samples them on one background thread (counter
// wrap-around, power integration, the energy log) and hands out Spans.
#include "meter/meter.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace jevons::meter {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Meter::Meter(const MeterConfig& config) : config_(config) {
  const double t0 = now_s();
  Probe rapl_probe, nvml_probe, est_probe;
  std::unique_ptr<Source> rapl = open_rapl(config_.powercap_root, rapl_probe);
  std::unique_ptr<Source> nvml = open_nvml(config_.nvml_library, nvml_probe, t0);
  std::unique_ptr<Source> est = open_estimate(config_.estimate, est_probe, t0);
  probes_ = {rapl_probe, nvml_probe, est_probe};

  const std::string& want = config_.energy_source;
  const std::string origin = config_.origin.count("energy_source") ? config_.origin.at("energy_source") : "requested";
  if (want == "rapl") {
    if (!rapl) fail("energy source rapl ({}) is unavailable: {}", origin, rapl_probe.detail);
    sources_.push_back(std::move(rapl));
  } else if (want == "nvml") {
    if (!nvml) fail("energy source nvml ({}) is unavailable: {}", origin, nvml_probe.detail);
    sources_.push_back(std::move(nvml));
  } else if (want == "estimate") {
    sources_.push_back(std::move(est));
  } else {  // auto: the CPU side measured if possible, else estimated; GPUs on top
    sources_.push_back(rapl ? std::move(rapl) : std::move(est));
    if (nvml) sources_.push_back(std::move(nvml));
  }
  estimated_ = false;
  bool poll = false;
  for (const auto& s : sources_) {
    source_ += (source_.empty() ? "" : "+") + s->name();
    estimated_ |= !s->measured();
    poll |= s->needs_polling();
  }
  if (poll) ensure_thread();
}

Meter::~Meter() {
  try {
    stop_log();
  } catch (...) {
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Meter::source_detail() const {
  std::string s;
  for (const auto& src : sources_) s += fmt::format("{}{}: {}", s.empty() ? "" : "; ", src->name(), src->detail());
  return s;
}

double Meter::sample(double* t) {
  std::lock_guard<std::mutex> lock(sample_mu_);
  *t = now_s();
  double j = 0;
  for (const auto& s : sources_) j += s->joules_at(*t);
  return j;
}

double Meter::joules() {
  double t;
  return sample(&t);
}

std::vector<Component> Meter::components() {
  std::vector<Component> out;
  for (const auto& s : sources_)
    for (Component& c : s->components()) out.push_back({s->name() + "/" + c.name, c.joules});
  return out;
}

std::vector<std::string> Meter::errors() {
  std::vector<std::string> out;
  for (const auto& s : sources_)
    for (std::string& e : s->errors()) out.push_back(s->name() + ": " + e);
  return out;
}

std::vector<std::string> Meter::warnings() const {
  std::vector<std::string> out;
  for (const Probe& p : probes_) {
    const bool used = source_.find(p.name) != std::string::npos;
    if (!p.available && p.detail.find("permission denied") != std::string::npos)
      out.push_back(fmt::format("{} unavailable, figures come from {}: {}", p.name, source_, p.detail));
    if (used)
      for (const std::string& n : p.notices) out.push_back(p.name + ": " + n);
  }
  return out;
}

void Meter::add_memory_traffic(uint64_t bytes) {
  for (const auto& s : sources_) s->add_memory_traffic(bytes);
}

void Meter::start_log(const std::string& path) {
  stop_log();
  // Beside the destination until stop_log renames it there (never half a log at `path`).
  std::unique_ptr<OutputFile> file;
  try {
    file = std::make_unique<OutputFile>(path);
  } catch (const Error& e) {
    fail("cannot write the energy log {}: {}", path, e.what());
  }
  std::FILE* f = file->file();
  std::fputs("t_s,watts,joules,source\n", f);
  std::fflush(f);
  double t;
  const double j = sample(&t);
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    log_ = f;
    log_file_ = std::move(file);
    log_path_ = path;
    log_t0_ = log_last_t_ = t;
    log_j0_ = log_last_j_ = j;
    log_last_w_ = 0;
    log_rows_ = 0;
  }
  ensure_thread();
}

void Meter::stop_log() {
  std::lock_guard<std::mutex> lock(log_mu_);
  if (!log_) return;
  double t;
  const double j = sample(&t);
  write_row_locked(t, j);
  log_ = nullptr;
  std::unique_ptr<OutputFile> file = std::move(log_file_);
  file->commit();
}

void Meter::write_row_locked(double t, double j) {
  // Watts over the interval since the previous row; a final row that lands within a
  // millisecond of it repeats the previous figure rather than divide by almost nothing.
  const double dt = t - log_last_t_;
  if (dt >= 1e-3 || (!log_rows_ && dt > 0)) log_last_w_ = (j - log_last_j_) / dt;
  ++log_rows_;
  std::fprintf(log_, "%.6f,%.3f,%.6f,%s\n", t - log_t0_, log_last_w_, j - log_j0_, source_.c_str());
  std::fflush(log_);
  log_last_t_ = t;
  log_last_j_ = j;
}

void Meter::ensure_thread() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { sampler_loop(); });
}

void Meter::sampler_loop() {
  using clock = std::chrono::steady_clock;
  const auto interval = std::chrono::milliseconds(config_.sample_ms);
  auto next = clock::now() + interval;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (cv_.wait_until(lock, next, [this] { return stop_; })) break;
    next += interval;
    if (next < clock::now()) next = clock::now() + interval;  // fell behind: skip, don't burst
    lock.unlock();
    double t;
    const double j = sample(&t);
    {
      std::lock_guard<std::mutex> log_lock(log_mu_);
      if (log_ && t > log_last_t_) write_row_locked(t, j);
    }
    lock.lock();
  }
}

Span Meter::span() { return Span(*this); }

Span::Span(Meter& m) : m_(&m) { j_ = m_->sample(&t_); }

void Span::mark(Phase p) {
  double t;
  const double j = m_->sample(&t);
  PhaseEnergy* cur = phase_ == Phase::Prefill ? &prefill_ : phase_ == Phase::Decode ? &decode_ : nullptr;
  if (cur) {
    cur->joules += j - j_;
    cur->seconds += t - t_;
  }
  phase_ = p;
  t_ = t;
  j_ = j;
}

EnergyReport Span::finish(int64_t prefill_tokens, int64_t decode_tokens) {
  mark(Phase::Idle);
  PhaseEnergy p = prefill_, d = decode_;
  p.tokens = prefill_tokens;
  d.tokens = decode_tokens;
  return make_report(m_->source(), m_->source_detail(), m_->estimated(), p, d, m_->config().prices);
}

}  // namespace jevons::meter
