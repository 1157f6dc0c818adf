// NVIDIA GPUs through NVML, dlopened at run time (no link-time dependency on the
// driver). Per GPU: the total-energy counter (nvmlDeviceGetTotalEnergyConsumption,
// mJ since the driver loaded; Volta and newer) where the GPU has it, otherwise the
// power reading (nvmlDeviceGetPowerUsage, mW) integrated with the trapezoid rule
// between samples; the Meter samples every sample_ms on a background thread.
#include <dlfcn.h>

#include <algorithm>
#include <mutex>

#include <fmt/format.h>

#include "meter/sources.h"

namespace jevons::meter {
namespace {

// The few NVML declarations used (nvml.h, stable ABI).
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr nvmlReturn_t NVML_ERROR_NOT_SUPPORTED = 3;

struct NvmlApi {
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*count)(unsigned int*) = nullptr;
  nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*energy)(nvmlDevice_t, unsigned long long*) = nullptr;
  nvmlReturn_t (*power)(nvmlDevice_t, unsigned int*) = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;  // optional

  std::string err(nvmlReturn_t r) const {
    const char* s = error_string ? error_string(r) : nullptr;
    return fmt::format("{} (NVML error {})", s ? s : "unknown error", r);
  }
};

// Owns the dlopen handle; one per NvmlSource.
struct Library {
  void* handle = nullptr;
  ~Library() {
    if (handle) dlclose(handle);
  }
};

template <typename F>
bool bind(void* lib, const char* sym, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, sym));
  return fn != nullptr;
}

struct Gpu {
  unsigned index = 0;
  std::string name;
  nvmlDevice_t dev = nullptr;
  bool counter = false;        // energy counter, else power integration
  unsigned long long mj0 = 0;  // counter at open
  double last_t = 0, last_w = 0;
  double joules = 0;
};

class NvmlSource final : public Source {
 public:
  NvmlSource(std::unique_ptr<Library> lib, NvmlApi api, std::vector<Gpu> gpus)
      : lib_(std::move(lib)), api_(api), gpus_(std::move(gpus)) {}
  ~NvmlSource() override {
    api_.shutdown();  // lib_ is closed after, by its destructor
  }
  const std::string& name() const override { return name_; }
  std::string detail() const override {
    std::string s;
    for (const Gpu& g : gpus_)
      s += fmt::format("{}GPU{} {} ({})", s.empty() ? "" : ", ", g.index, g.name,
                       g.counter ? "energy counter" : "power sampled and integrated");
    return s;
  }
  bool measured() const override { return true; }
  bool needs_polling() const override {
    return std::any_of(gpus_.begin(), gpus_.end(), [](const Gpu& g) { return !g.counter; });
  }
  double joules_at(double t_s) override {
    std::lock_guard<std::mutex> lock(mu_);
    double total = 0;
    for (Gpu& g : gpus_) {
      if (g.counter) {
        unsigned long long mj = 0;
        const nvmlReturn_t r = api_.energy(g.dev, &mj);
        if (r != NVML_SUCCESS) note_error(fmt::format("GPU{}: nvmlDeviceGetTotalEnergyConsumption: {}", g.index, api_.err(r)));
        else if (mj >= g.mj0) g.joules = double(mj - g.mj0) * 1e-3;
      } else {
        unsigned int mw = 0;
        const nvmlReturn_t r = api_.power(g.dev, &mw);
        if (r != NVML_SUCCESS) {
          note_error(fmt::format("GPU{}: nvmlDeviceGetPowerUsage: {}", g.index, api_.err(r)));
        } else if (t_s > g.last_t) {
          const double w = double(mw) * 1e-3;
          g.joules += 0.5 * (g.last_w + w) * (t_s - g.last_t);
          g.last_t = t_s;
          g.last_w = w;
        }
      }
      total += g.joules;
    }
    return total;
  }
  std::vector<Component> components() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Component> out;
    for (const Gpu& g : gpus_) out.push_back({fmt::format("GPU{} {}", g.index, g.name), g.joules});
    return out;
  }
  std::vector<std::string> errors() override {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  void note_error(const std::string& e) {
    if (std::find(errors_.begin(), errors_.end(), e) == errors_.end()) errors_.push_back(e);
  }
  const std::string name_ = "nvml";
  std::unique_ptr<Library> lib_;
  NvmlApi api_;
  std::mutex mu_;
  std::vector<Gpu> gpus_;
  std::vector<std::string> errors_;
};

}  // namespace

std::unique_ptr<Source> open_nvml(const std::string& library, Probe& probe, double t0_s) {
  probe = Probe{};
  probe.name = "nvml";
  probe.measured = true;
  auto lib = std::make_unique<Library>();
  dlerror();
  lib->handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) {
    const char* e = dlerror();
    const std::string why = e ? e : "unknown dlopen error";
    if (why.find("No such file") != std::string::npos)
      probe.detail = fmt::format("{}: not found (no NVIDIA driver; if NVML lives elsewhere set JEVONS_NVML_LIBRARY)", library);
    else
      probe.detail = fmt::format("{}: cannot load: {}", library, why);
    return nullptr;
  }
  NvmlApi api;
  const char* missing = nullptr;
  if (!bind(lib->handle, "nvmlInit_v2", api.init)) missing = "nvmlInit_v2";
  else if (!bind(lib->handle, "nvmlShutdown", api.shutdown)) missing = "nvmlShutdown";
  else if (!bind(lib->handle, "nvmlDeviceGetCount_v2", api.count)) missing = "nvmlDeviceGetCount_v2";
  else if (!bind(lib->handle, "nvmlDeviceGetHandleByIndex_v2", api.handle)) missing = "nvmlDeviceGetHandleByIndex_v2";
  else if (!bind(lib->handle, "nvmlDeviceGetTotalEnergyConsumption", api.energy)) missing = "nvmlDeviceGetTotalEnergyConsumption";
  else if (!bind(lib->handle, "nvmlDeviceGetPowerUsage", api.power)) missing = "nvmlDeviceGetPowerUsage";
  else if (!bind(lib->handle, "nvmlErrorString", api.error_string)) missing = "nvmlErrorString";
  if (missing) {
    probe.detail = fmt::format("{}: has no {} (not NVML, or a driver too old)", library, missing);
    return nullptr;
  }
  bind(lib->handle, "nvmlDeviceGetName", api.name);

  if (const nvmlReturn_t r = api.init(); r != NVML_SUCCESS) {
    probe.detail = fmt::format("{}: nvmlInit_v2 failed: {}", library, api.err(r));
    return nullptr;
  }
  // From here on every failure must shut NVML down again.
  auto give_up = [&](std::string why) {
    api.shutdown();
    probe.detail = std::move(why);
    return nullptr;
  };
  unsigned int n = 0;
  if (const nvmlReturn_t r = api.count(&n); r != NVML_SUCCESS)
    return give_up(fmt::format("{}: nvmlDeviceGetCount_v2 failed: {}", library, api.err(r)));
  if (n == 0) return give_up(fmt::format("{}: NVML found no GPU", library));

  std::vector<Gpu> gpus;
  for (unsigned i = 0; i < n; ++i) {
    Gpu g;
    g.index = i;
    if (const nvmlReturn_t r = api.handle(i, &g.dev); r != NVML_SUCCESS) {
      probe.notices.push_back(fmt::format("GPU{} skipped: nvmlDeviceGetHandleByIndex_v2: {}", i, api.err(r)));
      continue;
    }
    char name[96] = {0};
    g.name = api.name && api.name(g.dev, name, sizeof(name) - 1) == NVML_SUCCESS ? std::string(name) : "NVIDIA GPU";
    const nvmlReturn_t re = api.energy(g.dev, &g.mj0);
    if (re == NVML_SUCCESS) {
      g.counter = true;
    } else {
      unsigned int mw = 0;
      const nvmlReturn_t rp = api.power(g.dev, &mw);
      if (rp != NVML_SUCCESS) {
        probe.notices.push_back(fmt::format("GPU{} {} skipped: no energy counter ({}) and no power reading ({})", i, g.name,
                                            api.err(re), api.err(rp)));
        continue;
      }
      if (re != NVML_ERROR_NOT_SUPPORTED)
        probe.notices.push_back(fmt::format("GPU{}: energy counter failed ({}); sampling power instead", i, api.err(re)));
      g.last_t = t0_s;
      g.last_w = double(mw) * 1e-3;
    }
    gpus.push_back(std::move(g));
  }
  if (gpus.empty()) return give_up(fmt::format("{}: no GPU gives energy or power readings", library));
  auto s = std::make_unique<NvmlSource>(std::move(lib), api, std::move(gpus));
  probe.available = true;
  probe.detail = s->detail();
  return s;
}

}  // namespace jevons::meter
