// Energy sources: things that say how many joules have been spent since they were
// opened. Three kinds, each probed by name at start-up:
//   rapl      Linux powercap / RAPL counters (package and DRAM domains)   measured
//   nvml      NVIDIA GPUs through NVML, dlopened at run time              measured
//   estimate  the CPU-time + memory-traffic model of estimate.h           estimated
// Every open_* fills a Probe saying whether the source is usable and, if not, why.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "meter/estimate.h"

namespace jevons::meter {

// Seconds on the steady clock; the time base of every source.
double now_s();

// What probing one source found.
struct Probe {
  std::string name;                  // "rapl", "nvml", "estimate"
  bool available = false;
  bool measured = false;             // false only for the estimate
  std::string detail;                // what it reads, or why it is unavailable
  std::vector<std::string> notices;  // partial problems (e.g. DRAM domain unreadable)
};

// One domain or device of a source and its cumulative joules.
struct Component {
  std::string name;  // "package-0", "dram", "GPU0 NVIDIA H100", "cpu", ...
  double joules = 0;
};

class Source {
 public:
  virtual ~Source() = default;
  virtual const std::string& name() const = 0;
  virtual std::string detail() const = 0;
  virtual bool measured() const = 0;
  // Whether joules() must be called regularly (counter wrap-around, power integration).
  virtual bool needs_polling() const { return false; }
  // Cumulative joules since the source was opened, sampled at steady-clock time t_s
  // (now_s()). Thread-safe; t_s should not go backwards.
  virtual double joules_at(double t_s) = 0;
  double joules() { return joules_at(now_s()); }
  // Per-domain / per-device cumulative joules as of the last sample.
  virtual std::vector<Component> components() = 0;
  // Problems met while sampling (a counter that stopped answering), most recent last.
  virtual std::vector<std::string> errors() { return {}; }
  // Memory traffic reported by the caller; only the estimate uses it.
  virtual void add_memory_traffic(uint64_t bytes) {}
};

// Each returns null when the source is unusable; probe says why either way.
std::unique_ptr<Source> open_rapl(const std::string& powercap_root, Probe& probe);
std::unique_ptr<Source> open_nvml(const std::string& library, Probe& probe, double t0_s = now_s());
std::unique_ptr<Source> open_estimate(const EstimateParams& params, Probe& probe, double t0_s = now_s());

}  // namespace jevons::meter
