// Meter configuration: prices, estimate parameters, which sources to use and where
// they live. Precedence, highest first:
//   1. command-line flags (add_meter_options in meter/cli_options.h)
//   2. environment variables
//   3. a JSON config file: --meter-config FILE, else $JEVONS_METER_CONFIG, else
//      $XDG_CONFIG_HOME/jevons/meter.json or ~/.config/jevons/meter.json (optional)
//   4. defaults (sources stated in estimate.h and accounting.h)
//
//   key               env var                   flag                unit / values
//   price_kwh         JEVONS_PRICE_KWH          --price-kwh         $ per kWh
//   hw_usd_per_hour   JEVONS_HW_USD_PER_HOUR    --hw-usd-per-hour   $ per hour of the machine
//   grid_g_per_kwh    JEVONS_GRID_G_PER_KWH     --grid-g-per-kwh    gCO2e per kWh
//   cpu_idle_w        JEVONS_CPU_IDLE_W         --cpu-idle-w        estimate: W per vCPU, idle
//   cpu_active_w      JEVONS_CPU_ACTIVE_W       --cpu-active-w      estimate: W per busy vCPU
//   dram_pj_per_bit   JEVONS_DRAM_PJ_PER_BIT    --dram-pj-per-bit   estimate: pJ per bit read
//   cpus              JEVONS_METER_CPUS         --meter-cpus        vCPUs charged (idle share, hw price)
//   energy_source     JEVONS_ENERGY_SOURCE      --energy-source     auto | rapl | nvml | estimate
//   powercap_root     JEVONS_POWERCAP_ROOT      --powercap-root     default /sys/class/powercap
//   nvml_library      JEVONS_NVML_LIBRARY       --nvml-library      default libnvidia-ml.so.1
//   sample_ms         JEVONS_ENERGY_SAMPLE_MS   --energy-sample-ms  sampler / energy-log interval
//
// Example meter.json: {"price_kwh": 0.30, "grid_g_per_kwh": 250, "energy_source": "auto"}
// Bad values (not a number, out of range, unknown key or source) throw jevons::Error
// naming where the value came from.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "meter/accounting.h"
#include "meter/estimate.h"

namespace jevons::meter {

struct MeterConfig {
  Prices prices;
  EstimateParams estimate;
  std::string energy_source = "auto";
  std::string powercap_root = "/sys/class/powercap";
  std::string nvml_library = "libnvidia-ml.so.1";
  int sample_ms = 100;

  // key -> where its value came from: "default", "default (...)", "flag --price-kwh",
  // "env JEVONS_PRICE_KWH", "file PATH".
  std::map<std::string, std::string> origin;
  std::string config_file;          // the file consulted (may not exist)
  bool config_file_loaded = false;  // whether it existed and was read

  // The value of a key as text, for `jevons meter`.
  std::string value_text(const std::string& key) const;
};

// One configuration key (the table above).
struct KeyInfo {
  const char* key;
  const char* env;
  const char* flag;
  const char* unit;
  const char* help;
  const char* default_source;  // where the default comes from
};
const std::vector<KeyInfo>& config_keys();

// Values given as flags (key -> text), and the --meter-config file if given.
struct Overrides {
  std::map<std::string, std::string> values;
  std::string config_file;
};

using EnvLookup = std::function<const char*(const char*)>;

// Resolves flags > env > file > defaults. env defaults to std::getenv.
MeterConfig resolve_config(const Overrides& flags = {}, const EnvLookup& env = nullptr);

}  // namespace jevons::meter
