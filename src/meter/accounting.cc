// Accounting arithmetic (formulas in accounting.h).
#include "meter/accounting.h"

#include <cmath>

#include <fmt/format.h>

namespace jevons::meter {
namespace {

double ratio(double num, double den) { return den > 0 ? num / den : 0.0; }

// Grams with a unit that keeps three significant digits readable.
std::string grams(double g) {
  if (g >= 1000) return fmt::format("{:.3g} kgCO2e", g / 1000);
  if (g >= 1 || g == 0) return fmt::format("{:.3g} gCO2e", g);
  if (g >= 1e-3) return fmt::format("{:.3g} mgCO2e", g * 1e3);
  return fmt::format("{:.3g} ugCO2e", g * 1e6);
}

}  // namespace

EnergyReport make_report(std::string source, std::string source_detail, bool estimated, const PhaseEnergy& prefill,
                         const PhaseEnergy& decode, const Prices& prices) {
  EnergyReport r;
  r.source = std::move(source);
  r.source_detail = std::move(source_detail);
  r.estimated = estimated;
  r.prefill = prefill;
  r.decode = decode;
  r.prices = prices;
  r.total_j = prefill.joules + decode.joules;
  r.total_s = prefill.seconds + decode.seconds;
  r.tokens = prefill.tokens + decode.tokens;
  r.avg_w = ratio(r.total_j, r.total_s);
  r.tokens_per_j = ratio(double(r.tokens), r.total_j);
  r.prefill_tokens_per_j = ratio(double(prefill.tokens), prefill.joules);
  r.decode_tokens_per_j = ratio(double(decode.tokens), decode.joules);
  r.tokens_per_s = ratio(double(r.tokens), r.total_s);
  r.wh_per_1k_tokens = ratio(r.total_j / 3600.0, double(r.tokens) / 1000.0);
  const double kwh = r.total_j / 3.6e6;
  r.energy_usd = kwh * prices.usd_per_kwh;
  r.hardware_usd = prices.hw_usd_per_hour * r.total_s / 3600.0;
  r.cost_usd = r.energy_usd + r.hardware_usd;
  r.usd_per_mtok = ratio(r.cost_usd, double(r.tokens)) * 1e6;
  r.co2_g = kwh * prices.grid_g_per_kwh;
  return r;
}

nlohmann::json to_json(const EnergyReport& r) {
  return nlohmann::json{
      {"source", r.source},
      {"source_detail", r.source_detail},
      {"estimated", r.estimated},
      {"prefill_j", r.prefill.joules},
      {"decode_j", r.decode.joules},
      {"total_j", r.total_j},
      {"prefill_s", r.prefill.seconds},
      {"decode_s", r.decode.seconds},
      {"prefill_tokens", r.prefill.tokens},
      {"decode_tokens", r.decode.tokens},
      {"avg_w", r.avg_w},
      {"tokens_per_j", r.tokens_per_j},
      {"prefill_tokens_per_j", r.prefill_tokens_per_j},
      {"decode_tokens_per_j", r.decode_tokens_per_j},
      {"wh_per_1k_tokens", r.wh_per_1k_tokens},
      {"energy_usd", r.energy_usd},
      {"hardware_usd", r.hardware_usd},
      {"cost_usd", r.cost_usd},
      {"usd_per_mtok", r.usd_per_mtok},
      {"co2_g", r.co2_g},
      {"usd_per_kwh", r.prices.usd_per_kwh},
      {"hw_usd_per_hour", r.prices.hw_usd_per_hour},
      {"grid_g_per_kwh", r.prices.grid_g_per_kwh},
  };
}

std::string summary_line(const EnergyReport& r) {
  return fmt::format(
      "[jevons] energy ({}): {:.3g} J (prefill {:.3g} J + decode {:.3g} J) | {:.3g} W avg | {:.1f} tok/s | {:.3g} tok/J | "
      "{:.3g} Wh/1k tok | ${:.3g}/Mtok | {} | source: {}",
      r.estimated ? "estimated" : "measured", r.total_j, r.prefill.joules, r.decode.joules, r.avg_w, r.tokens_per_s,
      r.tokens_per_j, r.wh_per_1k_tokens, r.usd_per_mtok, grams(r.co2_g), r.source);
}

}  // namespace jevons::meter
