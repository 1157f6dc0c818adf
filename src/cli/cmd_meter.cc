// jevons meter: which energy sources this machine has (and why not), what they read
// now, the estimate model and the prices in force, and where each value came from.
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "meter/cli_options.h"
#include "meter/meter.h"

namespace jevons::cli {
namespace {

namespace jm = jevons::meter;

struct MeterOptions {
  jm::Overrides overrides;
  int duration_ms = 500;
  bool json = false;
};

struct Reading {
  std::string name;
  double watts = 0;
};

std::vector<Reading> read_power(jm::Meter& m, int duration_ms, double& total_w) {
  m.joules();
  const std::vector<jm::Component> c0 = m.components();
  const double t0 = jm::now_s();
  std::this_thread::sleep_for(std::chrono::milliseconds(duration_ms));
  m.joules();
  const double dt = jm::now_s() - t0;
  const std::vector<jm::Component> c1 = m.components();
  std::vector<Reading> out;
  total_w = 0;
  for (size_t i = 0; i < c1.size() && i < c0.size(); ++i) {
    const double w = dt > 0 ? (c1[i].joules - c0[i].joules) / dt : 0;
    out.push_back({c1[i].name, w});
    total_w += w;
  }
  return out;
}

const jm::KeyInfo& key(const std::string& k) {
  for (const jm::KeyInfo& i : jm::config_keys())
    if (k == i.key) return i;
  throw std::logic_error("no meter key " + k);
}

std::string origin_text(const jm::MeterConfig& c, const std::string& k) {
  const std::string o = c.origin.at(k);
  if (o.rfind("default", 0) == 0) return o + ": " + key(k).default_source;
  return o;
}

void print_text(jm::Meter& m, const MeterOptions& o) {
  const jm::MeterConfig& c = m.config();
  std::printf("Energy sources probed:\n");
  for (const jm::Probe& p : m.probes()) {
    std::printf("  %-9s %-12s %s\n", p.name.c_str(),
                p.available ? (p.measured ? "measured" : "estimated") : "unavailable", p.detail.c_str());
    for (const std::string& n : p.notices) std::printf("  %-9s %-12s notice: %s\n", "", "", n.c_str());
  }
  std::printf("\nIn use: %s (%s)\n", m.source().c_str(),
              m.estimated() ? "figures are estimated: no energy counter covers the CPU here"
                            : "figures are measured");

  double total_w = 0;
  const std::vector<Reading> readings = read_power(m, o.duration_ms, total_w);
  std::printf("\nCurrent readings (average over %d ms, this process idle):\n", o.duration_ms);
  for (const Reading& r : readings) std::printf("  %-40s %9.3f W\n", r.name.c_str(), r.watts);
  std::printf("  %-40s %9.3f W (%s)\n", "total", total_w, m.estimated() ? "estimated" : "measured");
  for (const std::string& e : m.errors()) std::printf("  error: %s\n", e.c_str());

  std::printf("\nEstimate model (used when nothing measures the CPU):\n"
              "  E = cpus x cpu_idle_w x wall_s + (cpu_active_w - cpu_idle_w) x cpu_s + dram_pj_per_bit x 8 x bytes read\n");
  auto row = [&](const char* k, const char* unit) {
    const std::string value = c.value_text(k) + (*unit ? std::string(" ") + unit : "");
    std::printf("  %-16s %-20s %s\n", k, value.c_str(), origin_text(c, k).c_str());
  };
  row("cpu_idle_w", "W/vCPU");
  row("cpu_active_w", "W/vCPU");
  row("dram_pj_per_bit", "pJ/bit");
  row("cpus", "vCPUs");
  std::printf("\nPrices:\n");
  row("price_kwh", "$/kWh");
  row("hw_usd_per_hour", "$/h");
  row("grid_g_per_kwh", "gCO2e/kWh");
  std::printf("\nSettings:\n");
  row("energy_source", "");
  row("powercap_root", "");
  row("nvml_library", "");
  row("sample_ms", "ms");

  std::printf("\nConfiguration: flags > environment > config file > defaults\n");
  std::printf("  config file: %s (%s)\n", c.config_file.empty() ? "(none)" : c.config_file.c_str(),
              c.config_file_loaded ? "loaded" : "not found");
  std::string envs;
  for (const jm::KeyInfo& k : jm::config_keys()) envs += std::string(envs.empty() ? "" : " ") + k.env;
  std::printf("  environment: %s JEVONS_METER_CONFIG\n", envs.c_str());
}

void print_json(jm::Meter& m, const MeterOptions& o) {
  const jm::MeterConfig& c = m.config();
  nlohmann::json j;
  j["source"] = m.source();
  j["estimated"] = m.estimated();
  for (const jm::Probe& p : m.probes())
    j["probes"].push_back({{"name", p.name}, {"available", p.available}, {"measured", p.measured}, {"detail", p.detail},
                           {"notices", p.notices}});
  double total_w = 0;
  for (const Reading& r : read_power(m, o.duration_ms, total_w)) j["readings_w"][r.name] = r.watts;
  j["total_w"] = total_w;
  j["errors"] = m.errors();
  for (const jm::KeyInfo& k : jm::config_keys())
    j["settings"][k.key] = {{"value", c.value_text(k.key)}, {"origin", origin_text(c, k.key)}};
  j["config_file"] = c.config_file;
  j["config_file_loaded"] = c.config_file_loaded;
  std::printf("%s\n", j.dump(2).c_str());
}

}  // namespace

void add_meter_command(CLI::App& app) {
  auto o = std::make_shared<MeterOptions>();
  CLI::App* c = app.add_subcommand(
      "meter", "Show the energy sources found (and why others are not), their current readings and the active prices");
  c->add_option("--duration-ms", o->duration_ms, "How long to read power for")->capture_default_str()->check(CLI::Range(1, 600000));
  c->add_flag("--json", o->json, "Print JSON instead of text");
  jm::add_meter_options(c, o->overrides);
  c->callback([o] {
    jm::Meter m(jm::resolve_config(o->overrides));
    if (o->json) print_json(m, *o);
    else print_text(m, *o);
  });
}

}  // namespace jevons::cli
