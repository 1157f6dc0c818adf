// A fake libnvidia-ml for the meter tests: exports the NVML entry points jevons
// uses, with the real signatures and error codes, and behaves like NVML (functions
// fail with NVML_ERROR_UNINITIALIZED before nvmlInit_v2; init/shutdown nest).
//
// Steered two ways:
//   * environment, read at load and by fake_nvml_reset():
//       FAKE_NVML_INIT_RESULT=9      nvmlInit_v2 fails with this code
//       FAKE_NVML_DEVICES=2          number of GPUs (default 1, at most 8)
//       FAKE_NVML_ENERGY=0           energy counter not supported (NVML_ERROR_NOT_SUPPORTED)
//       FAKE_NVML_POWER_MW=150000    power reading of every GPU
//       FAKE_NVML_ADVANCE=1          energy counters advance with real time at that power
//   * fake_nvml_set(key, value) / fake_nvml_get(key), looked up with dlsym by the tests:
//       keys "init_result", "devices", "energy_supported", "energy_result", "power_result",
//       "energy_mj" (all GPUs), "energy_mj0".."energy_mj7", "power_mw" (all GPUs),
//       "power_mw0".."power_mw7", "advance"; read-only: "init_calls", "shutdown_calls",
//       "initialized".
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr int kMaxDevices = 8;
constexpr int NVML_SUCCESS = 0;
constexpr int NVML_ERROR_UNINITIALIZED = 1;
constexpr int NVML_ERROR_INVALID_ARGUMENT = 2;
constexpr int NVML_ERROR_NOT_SUPPORTED = 3;

std::atomic<long long> g_init_result{0}, g_devices{1}, g_energy_supported{1}, g_energy_result{0}, g_power_result{0},
    g_advance{0}, g_init_depth{0}, g_init_calls{0}, g_shutdown_calls{0};
std::atomic<unsigned long long> g_energy_mj[kMaxDevices];
std::atomic<unsigned int> g_power_mw[kMaxDevices];
const auto g_t0 = std::chrono::steady_clock::now();

long long env_or(const char* name, long long def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : def;
}

void reset_from_env() {
  g_init_result = env_or("FAKE_NVML_INIT_RESULT", 0);
  g_devices = env_or("FAKE_NVML_DEVICES", 1);
  g_energy_supported = env_or("FAKE_NVML_ENERGY", 1);
  g_energy_result = 0;
  g_power_result = 0;
  g_advance = env_or("FAKE_NVML_ADVANCE", 0);
  const long long mw = env_or("FAKE_NVML_POWER_MW", 100000);
  for (int i = 0; i < kMaxDevices; ++i) {
    g_energy_mj[i] = 1000000ull * unsigned(i + 1);  // the counter runs since the driver loaded
    g_power_mw[i] = unsigned(mw);
  }
}

struct LoadInit {
  LoadInit() { reset_from_env(); }
} g_load_init;

int index_of(const char* key, const char* prefix) {
  const size_t n = std::strlen(prefix);
  if (std::strncmp(key, prefix, n) != 0 || key[n] < '0' || key[n] >= '0' + kMaxDevices || key[n + 1]) return -1;
  return key[n] - '0';
}

}  // namespace

struct nvmlDevice_st {
  int index;
};
static nvmlDevice_st g_handles[kMaxDevices] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};

extern "C" {

typedef struct nvmlDevice_st* nvmlDevice_t;

__attribute__((visibility("default"))) void fake_nvml_reset() { reset_from_env(); }

__attribute__((visibility("default"))) void fake_nvml_set(const char* key, long long value) {
  const std::string k = key;
  if (k == "init_result") g_init_result = value;
  else if (k == "devices") g_devices = value;
  else if (k == "energy_supported") g_energy_supported = value;
  else if (k == "energy_result") g_energy_result = value;
  else if (k == "power_result") g_power_result = value;
  else if (k == "advance") g_advance = value;
  else if (k == "energy_mj") for (auto& e : g_energy_mj) e = (unsigned long long)value;
  else if (k == "power_mw") for (auto& p : g_power_mw) p = (unsigned)value;
  else if (int i = index_of(key, "energy_mj"); i >= 0) g_energy_mj[i] = (unsigned long long)value;
  else if (int j = index_of(key, "power_mw"); j >= 0) g_power_mw[j] = (unsigned)value;
  else std::abort();  // a typo in a test
}

__attribute__((visibility("default"))) long long fake_nvml_get(const char* key) {
  const std::string k = key;
  if (k == "init_calls") return g_init_calls;
  if (k == "shutdown_calls") return g_shutdown_calls;
  if (k == "initialized") return g_init_depth > 0;
  std::abort();
}

__attribute__((visibility("default"))) int nvmlInit_v2() {
  ++g_init_calls;
  if (g_init_result != NVML_SUCCESS) return int(g_init_result.load());
  ++g_init_depth;
  return NVML_SUCCESS;
}

__attribute__((visibility("default"))) int nvmlShutdown() {
  if (g_init_depth <= 0) return NVML_ERROR_UNINITIALIZED;
  ++g_shutdown_calls;
  --g_init_depth;
  return NVML_SUCCESS;
}

__attribute__((visibility("default"))) const char* nvmlErrorString(int r) {
  switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 9: return "Driver Not Loaded";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
  }
}

__attribute__((visibility("default"))) int nvmlDeviceGetCount_v2(unsigned int* count) {
  if (g_init_depth <= 0) return NVML_ERROR_UNINITIALIZED;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  *count = unsigned(g_devices.load());
  return NVML_SUCCESS;
}

__attribute__((visibility("default"))) int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  if (g_init_depth <= 0) return NVML_ERROR_UNINITIALIZED;
  if (!device || index >= unsigned(g_devices.load()) || index >= unsigned(kMaxDevices)) return NVML_ERROR_INVALID_ARGUMENT;
  *device = &g_handles[index];
  return NVML_SUCCESS;
}

__attribute__((visibility("default"))) int nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  if (g_init_depth <= 0) return NVML_ERROR_UNINITIALIZED;
  if (!device || !name || length < 16) return NVML_ERROR_INVALID_ARGUMENT;
  std::strncpy(name, "Fake GPU", length);
  name[length - 1] = '\0';
  return NVML_SUCCESS;
}

__attribute__((visibility("default"))) int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long* energy) {
  if (g_init_depth <= 0) return NVML_ERROR_UNINITIALIZED;
  if (!device || !energy) return NVML_ERROR_INVALID_ARGUMENT;
  if (!g_energy_supported) return NVML_ERROR_NOT_SUPPORTED;
  if (g_energy_result != NVML_SUCCESS) return int(g_energy_result.load());
  unsigned long long mj = g_energy_mj[device->index];
  if (g_advance) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_t0).count();
    mj += (unsigned long long)(double(g_power_mw[device->index]) * s);  // mW x s = mJ
  }
  *energy = mj;
  return NVML_SUCCESS;
}

__attribute__((visibility("default"))) int nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* power) {
  if (g_init_depth <= 0) return NVML_ERROR_UNINITIALIZED;
  if (!device || !power) return NVML_ERROR_INVALID_ARGUMENT;
  if (g_power_result != NVML_SUCCESS) return int(g_power_result.load());
  *power = g_power_mw[device->index];
  return NVML_SUCCESS;
}

}  // extern "C"
