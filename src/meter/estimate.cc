// The estimate model (see estimate.h for the formula and the sources of its defaults)
// and the Source that applies it to this process.
#include "meter/estimate.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include <fmt/format.h>

#include "formats/gguf.h"
#include "meter/sources.h"

namespace jevons::meter {

EstimateBreakdown estimate_energy(const EstimateParams& p, const EstimateInputs& in) {
  const int cpus = p.cpus > 0 ? p.cpus : online_cpus();
  EstimateBreakdown b;
  b.idle_j = double(cpus) * p.cpu_idle_w * in.wall_s;
  b.cpu_j = (p.cpu_active_w - p.cpu_idle_w) * in.cpu_s;
  b.dram_j = p.dram_pj_per_bit * 1e-12 * 8.0 * double(in.bytes);
  return b;
}

double process_cpu_seconds() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  auto secs = [](const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) * 1e-6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

int online_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

uint64_t forward_traffic_bytes(uint64_t weight_bytes, uint64_t kv_bytes_per_token, int64_t n_past, int64_t n_tokens) {
  if (n_tokens <= 0) return 0;
  const uint64_t n = uint64_t(n_tokens), p = uint64_t(n_past < 0 ? 0 : n_past);
  // sum over t in [0, n) of (p + t + 1) rows = n*p + n(n+1)/2
  const uint64_t rows = n * p + n * (n + 1) / 2;
  return weight_bytes + rows * kv_bytes_per_token;
}

uint64_t weight_bytes(const std::vector<GgufTensor>& tensors) {
  bool tied = true;
  for (const GgufTensor& t : tensors) tied &= t.name != "output.weight";
  uint64_t total = 0;
  for (const GgufTensor& t : tensors)
    if (t.name != "token_embd.weight" || tied) total += t.nbytes;
  return total;
}

}  // namespace jevons::meter

// ---- the estimate as a Source ----
namespace jevons::meter {
namespace {

class EstimateSource final : public Source {
 public:
  EstimateSource(const EstimateParams& p, double t0)
      : p_(p), t0_(t0), cpu0_(process_cpu_seconds()), cpus_(p.cpus > 0 ? p.cpus : online_cpus()) {
    p_.cpus = cpus_;
  }
  const std::string& name() const override { return name_; }
  std::string detail() const override {
    return fmt::format("model: {} vCPUs x {:g} W idle + {:g} W per busy vCPU (process CPU time) + {:g} pJ/bit of memory read",
                       cpus_, p_.cpu_idle_w, p_.cpu_active_w, p_.dram_pj_per_bit);
  }
  bool measured() const override { return false; }
  double joules_at(double t_s) override {
    EstimateInputs in;
    in.wall_s = std::max(0.0, t_s - t0_);
    in.cpu_s = std::max(0.0, process_cpu_seconds() - cpu0_);
    in.bytes = bytes_.load(std::memory_order_relaxed);
    const EstimateBreakdown b = estimate_energy(p_, in);
    std::lock_guard<std::mutex> lock(mu_);
    last_ = b;
    return b.total_j();
  }
  std::vector<Component> components() override {
    std::lock_guard<std::mutex> lock(mu_);
    return {{"cpu idle share", last_.idle_j}, {"cpu busy", last_.cpu_j}, {"dram traffic", last_.dram_j}};
  }
  void add_memory_traffic(uint64_t bytes) override { bytes_.fetch_add(bytes, std::memory_order_relaxed); }

 private:
  const std::string name_ = "estimate";
  EstimateParams p_;
  const double t0_, cpu0_;
  const int cpus_;
  std::atomic<uint64_t> bytes_{0};
  std::mutex mu_;
  EstimateBreakdown last_;
};

}  // namespace

std::unique_ptr<Source> open_estimate(const EstimateParams& params, Probe& probe, double t0_s) {
  auto s = std::make_unique<EstimateSource>(params, t0_s);
  probe = Probe{};
  probe.name = "estimate";
  probe.available = true;
  probe.measured = false;
  probe.detail = s->detail();
  return s;
}

}  // namespace jevons::meter
