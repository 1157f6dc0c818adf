// Accounting: from joules, seconds and tokens per phase to watts, tokens per joule,
// cost and carbon. Pure arithmetic, no I/O.
//
//   total_j = prefill_j + decode_j            total_s = prefill_s + decode_s
//   tokens  = prefill_tokens + decode_tokens  (every token processed: prompt + generated)
//   avg_w            = total_j / total_s
//   tokens_per_j     = tokens / total_j       (prefill_/decode_tokens_per_j: per phase)
//   wh_per_1k_tokens = (total_j / 3600) / (tokens / 1000)
//   energy_usd       = total_j / 3.6e6 x usd_per_kwh
//   hardware_usd     = hw_usd_per_hour x total_s / 3600
//   cost_usd         = energy_usd + hardware_usd
//   usd_per_mtok     = cost_usd / tokens x 1e6
//   co2_g            = total_j / 3.6e6 x grid_g_per_kwh
// A ratio whose denominator is zero is reported as 0.
//
// Default prices and their sources:
//   usd_per_kwh      0.127 $/kWh: US average retail price of electricity, all sectors,
//                    2023 (EIA, Electric Power Annual 2023: 12.7 cents/kWh).
//   hw_usd_per_hour  0.0504 $ per vCPU-hour x the vCPUs charged: AWS EC2 m7i.large
//                    on-demand, us-east-1, Linux, 2024 ($0.1008/h for 2 vCPUs).
//                    Set it to your own machine's price (a GPU box costs far more).
//   grid_g_per_kwh   390 gCO2e/kWh: US 2022 average, EIA ("How much carbon dioxide is
//                    produced per kilowatthour of U.S. electricity generation?":
//                    0.86 lb CO2/kWh = 390 g/kWh; CO2 only, other gases add ~1%).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace jevons::meter {

inline constexpr double kDefaultUsdPerKwh = 0.127;
inline constexpr double kDefaultUsdPerVcpuHour = 0.0504;
inline constexpr double kDefaultGridGPerKwh = 390.0;

struct Prices {
  double usd_per_kwh = kDefaultUsdPerKwh;
  double hw_usd_per_hour = 0;  // resolved by config (default: kDefaultUsdPerVcpuHour x vCPUs)
  double grid_g_per_kwh = kDefaultGridGPerKwh;
};

struct PhaseEnergy {
  double joules = 0;
  double seconds = 0;
  int64_t tokens = 0;
};

struct EnergyReport {
  std::string source;         // "estimate", "rapl", "nvml", "rapl+nvml", "estimate+nvml"
  std::string source_detail;  // what exactly was read, for humans
  bool estimated = true;      // true when any part comes from the estimate model

  PhaseEnergy prefill, decode;
  Prices prices;

  double total_j = 0, total_s = 0;
  int64_t tokens = 0;
  double avg_w = 0;
  double tokens_per_j = 0, prefill_tokens_per_j = 0, decode_tokens_per_j = 0;
  double tokens_per_s = 0;
  double wh_per_1k_tokens = 0;
  double energy_usd = 0, hardware_usd = 0, cost_usd = 0, usd_per_mtok = 0;
  double co2_g = 0;
};

// Fills every derived figure from the two phases and the prices.
EnergyReport make_report(std::string source, std::string source_detail, bool estimated, const PhaseEnergy& prefill,
                         const PhaseEnergy& decode, const Prices& prices);

// The `jevons bench --json` "energy" object: source, estimated, prefill_j, decode_j,
// avg_w, tokens_per_j, usd_per_mtok, co2_g, plus the other figures and the prices used.
nlohmann::json to_json(const EnergyReport& r);

// One line for stderr, e.g.
// "[jevons] energy (estimated): 2.51 J (prefill 0.02 + decode 2.49) | 5.02 W | 208 tok/s | 41.4 tok/J | $0.35/Mtok | 0.27 mgCO2e | source: estimate"
std::string summary_line(const EnergyReport& r);

}  // namespace jevons::meter
