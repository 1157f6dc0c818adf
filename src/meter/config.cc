// Meter configuration: flags > environment > config file > defaults (see config.h).
#include "meter/config.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace jevons::meter {
namespace {

enum class Kind { Number, Int, Text, Source };

struct KeySpec {
  KeyInfo info;
  Kind kind;
  double min, max;
};

// clang-format off
const std::vector<KeySpec>& specs() {
  static const std::vector<KeySpec> s = {
    {{"price_kwh", "JEVONS_PRICE_KWH", "--price-kwh", "$/kWh", "electricity price",
      "US average retail price, all sectors, 2023 (EIA Electric Power Annual 2023)"}, Kind::Number, 0, 100},
    {{"hw_usd_per_hour", "JEVONS_HW_USD_PER_HOUR", "--hw-usd-per-hour", "$/h", "hardware cost per hour of the machine",
      "0.0504 $/vCPU-hour x vCPUs (AWS EC2 m7i.large on-demand, us-east-1, 2024: $0.1008/h for 2 vCPUs)"}, Kind::Number, 0, 1e6},
    {{"grid_g_per_kwh", "JEVONS_GRID_G_PER_KWH", "--grid-g-per-kwh", "gCO2e/kWh", "grid carbon intensity",
      "US 2022 average, EIA: 0.86 lb CO2 per kWh generated"}, Kind::Number, 0, 5000},
    {{"cpu_idle_w", "JEVONS_CPU_IDLE_W", "--cpu-idle-w", "W/vCPU", "estimate: idle watts per vCPU",
      "Cloud Carbon Footprint, AWS average min watts per vCPU (from SPECpower_ssj2008)"}, Kind::Number, 0, 1000},
    {{"cpu_active_w", "JEVONS_CPU_ACTIVE_W", "--cpu-active-w", "W/vCPU", "estimate: watts per busy vCPU",
      "Cloud Carbon Footprint, AWS average max watts per vCPU (from SPECpower_ssj2008)"}, Kind::Number, 0, 1000},
    {{"dram_pj_per_bit", "JEVONS_DRAM_PJ_PER_BIT", "--dram-pj-per-bit", "pJ/bit", "estimate: DRAM energy per bit read",
      "Horowitz ISSCC 2014: 1.3-2.6 nJ per 64-bit DRAM access (20-40 pJ/bit), low end for DDR4/DDR5"}, Kind::Number, 0, 10000},
    {{"cpus", "JEVONS_METER_CPUS", "--meter-cpus", "vCPUs", "vCPUs charged the idle share and the hardware price",
      "online CPUs of this machine"}, Kind::Int, 1, 1 << 20},
    {{"energy_source", "JEVONS_ENERGY_SOURCE", "--energy-source", "auto|rapl|nvml|estimate", "which energy source to use",
      "auto: RAPL (else the estimate) for the CPU, plus NVML GPUs"}, Kind::Source, 0, 0},
    {{"powercap_root", "JEVONS_POWERCAP_ROOT", "--powercap-root", "path", "Linux powercap directory (RAPL)",
      "the kernel's"}, Kind::Text, 0, 0},
    {{"nvml_library", "JEVONS_NVML_LIBRARY", "--nvml-library", "path", "NVML library to dlopen",
      "the driver's, found by the dynamic loader"}, Kind::Text, 0, 0},
    {{"sample_ms", "JEVONS_ENERGY_SAMPLE_MS", "--energy-sample-ms", "ms", "sampling / energy-log interval",
      "10 samples per second"}, Kind::Int, 1, 60000},
  };
  return s;
}
// clang-format on

const KeySpec* find_spec(const std::string& key) {
  for (const KeySpec& s : specs())
    if (key == s.info.key) return &s;
  return nullptr;
}

std::string key_list() {
  std::string out;
  for (const KeySpec& s : specs()) out += (out.empty() ? "" : ", ") + std::string(s.info.key);
  return out;
}

double parse_number(const std::string& text, const KeySpec& s, const std::string& where) {
  double v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  while (b < e && (*b == ' ' || *b == '\t')) ++b;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n')) --e;
  auto [p, ec] = std::from_chars(b, e, v);
  if (b == e || ec != std::errc() || p != e || !std::isfinite(v))
    fail("{}: '{}' is not a number (expected {} in {})", where, text, s.info.help, s.info.unit);
  if (s.kind == Kind::Int && v != std::floor(v)) fail("{}: '{}' is not a whole number ({})", where, text, s.info.help);
  if (v < s.min || v > s.max)
    fail("{}: {} is out of range for {} (expected {} to {} {})", where, text, s.info.help, s.min, s.max, s.info.unit);
  return v;
}

// Applies one textual value; where names its origin for error messages.
void apply(MeterConfig& c, const KeySpec& s, const std::string& text, const std::string& where) {
  const std::string key = s.info.key;
  if (s.kind == Kind::Number || s.kind == Kind::Int) {
    const double v = parse_number(text, s, where);
    if (key == "price_kwh") c.prices.usd_per_kwh = v;
    else if (key == "hw_usd_per_hour") c.prices.hw_usd_per_hour = v;
    else if (key == "grid_g_per_kwh") c.prices.grid_g_per_kwh = v;
    else if (key == "cpu_idle_w") c.estimate.cpu_idle_w = v;
    else if (key == "cpu_active_w") c.estimate.cpu_active_w = v;
    else if (key == "dram_pj_per_bit") c.estimate.dram_pj_per_bit = v;
    else if (key == "cpus") c.estimate.cpus = int(v);
    else if (key == "sample_ms") c.sample_ms = int(v);
  } else if (s.kind == Kind::Source) {
    if (text != "auto" && text != "rapl" && text != "nvml" && text != "estimate")
      fail("{}: unknown energy source '{}' (expected auto, rapl, nvml or estimate)", where, text);
    c.energy_source = text;
  } else {
    if (text.empty()) fail("{}: empty {}", where, s.info.help);
    if (key == "powercap_root") c.powercap_root = text;
    else if (key == "nvml_library") c.nvml_library = text;
  }
  c.origin[key] = where;
}

std::string default_config_path(const EnvLookup& env) {
  if (const char* x = env("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/jevons/meter.json";
  if (const char* h = env("HOME"); h && *h) return std::string(h) + "/.config/jevons/meter.json";
  return "";
}

void load_file(MeterConfig& c, const std::string& path, bool required) {
  c.config_file = path;
  if (path.empty()) return;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (required) fail("meter config file {} does not exist", path);
    return;
  }
  std::ifstream f(path);
  if (!f) fail("cannot read meter config file {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str(), nullptr, true, /*ignore_comments=*/true);
  } catch (const nlohmann::json::parse_error& e) {
    fail("meter config file {} is not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("meter config file {}: expected a JSON object like {{\"price_kwh\": 0.2}}", path);
  for (const auto& [key, value] : j.items()) {
    const KeySpec* s = find_spec(key);
    const std::string where = fmt::format("file {} key {}", path, key);
    if (!s) fail("meter config file {}: unknown key '{}' (known: {})", path, key, key_list());
    const bool numeric = s->kind == Kind::Number || s->kind == Kind::Int;
    if (numeric && !value.is_number()) fail("{}: expected a number, got {}", where, value.dump());
    if (!numeric && !value.is_string()) fail("{}: expected a string, got {}", where, value.dump());
    apply(c, *s, numeric ? value.dump() : value.get<std::string>(), "file " + path);
  }
  c.config_file_loaded = true;
}

}  // namespace

const std::vector<KeyInfo>& config_keys() {
  static const std::vector<KeyInfo> keys = [] {
    std::vector<KeyInfo> k;
    for (const KeySpec& s : specs()) k.push_back(s.info);
    return k;
  }();
  return keys;
}

std::string MeterConfig::value_text(const std::string& key) const {
  if (key == "price_kwh") return fmt::format("{:g}", prices.usd_per_kwh);
  if (key == "hw_usd_per_hour") return fmt::format("{:g}", prices.hw_usd_per_hour);
  if (key == "grid_g_per_kwh") return fmt::format("{:g}", prices.grid_g_per_kwh);
  if (key == "cpu_idle_w") return fmt::format("{:g}", estimate.cpu_idle_w);
  if (key == "cpu_active_w") return fmt::format("{:g}", estimate.cpu_active_w);
  if (key == "dram_pj_per_bit") return fmt::format("{:g}", estimate.dram_pj_per_bit);
  if (key == "cpus") return fmt::format("{}", estimate.cpus);
  if (key == "energy_source") return energy_source;
  if (key == "powercap_root") return powercap_root;
  if (key == "nvml_library") return nvml_library;
  if (key == "sample_ms") return fmt::format("{}", sample_ms);
  return "";
}

MeterConfig resolve_config(const Overrides& flags, const EnvLookup& env_in) {
  const EnvLookup env = env_in ? env_in : EnvLookup([](const char* n) -> const char* { return std::getenv(n); });
  MeterConfig c;
  for (const KeySpec& s : specs()) c.origin[s.info.key] = "default";

  // 3. config file
  if (!flags.config_file.empty()) {
    load_file(c, flags.config_file, true);
  } else if (const char* p = env("JEVONS_METER_CONFIG"); p && *p) {
    load_file(c, p, true);
  } else {
    load_file(c, default_config_path(env), false);
  }
  // 2. environment
  for (const KeySpec& s : specs())
    if (const char* v = env(s.info.env); v && *v) apply(c, s, v, fmt::format("env {}", s.info.env));
  // 1. flags
  for (const auto& [key, text] : flags.values) {
    const KeySpec* s = find_spec(key);
    if (!s) fail("unknown meter setting '{}' (known: {})", key, key_list());
    apply(c, *s, text, fmt::format("flag {}", s->info.flag));
  }

  if (c.estimate.cpu_active_w < c.estimate.cpu_idle_w)
    fail("cpu_active_w ({} W, {}) is below cpu_idle_w ({} W, {}): a busy vCPU cannot draw less than an idle one",
         c.estimate.cpu_active_w, c.origin["cpu_active_w"], c.estimate.cpu_idle_w, c.origin["cpu_idle_w"]);
  if (c.estimate.cpus <= 0) {
    c.estimate.cpus = online_cpus();
  }
  if (c.origin["hw_usd_per_hour"] == "default") {
    c.prices.hw_usd_per_hour = kDefaultUsdPerVcpuHour * c.estimate.cpus;
    c.origin["hw_usd_per_hour"] = fmt::format("default for {} vCPUs", c.estimate.cpus);
  }
  return c;
}

}  // namespace jevons::meter
