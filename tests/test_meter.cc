// The meter's arithmetic against hand-computed values: the estimate model, memory
// traffic, cost/carbon accounting, configuration precedence and bad values, and a
// Span over the estimate source.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "formats/gguf.h"
#include "meter/meter.h"

namespace jevons::meter {
namespace {

void burn_cpu(double seconds) {
  const double t0 = process_cpu_seconds();
  volatile double x = 1;
  while (process_cpu_seconds() - t0 < seconds)
    for (int i = 0; i < 10000; ++i) x = x * 1.0000001 + 1e-9;
}

// ---- the estimate model ----

TEST(MeterEstimate, HandComputed) {
  EstimateParams p;
  p.cpu_idle_w = 0.74;
  p.cpu_active_w = 3.5;
  p.dram_pj_per_bit = 20;
  p.cpus = 2;
  const EstimateBreakdown b = estimate_energy(p, {/*wall_s=*/10, /*cpu_s=*/15, /*bytes=*/1000000000});
  EXPECT_NEAR(b.idle_j, 14.8, 1e-12);   // 2 vCPUs x 0.74 W x 10 s
  EXPECT_NEAR(b.cpu_j, 41.4, 1e-12);    // (3.5 - 0.74) W x 15 vCPU-s
  EXPECT_NEAR(b.dram_j, 0.16, 1e-12);   // 1e9 B x 8 bit x 20 pJ
  EXPECT_NEAR(b.total_j(), 56.36, 1e-12);
}

TEST(MeterEstimate, DefaultsAreTheDocumentedOnes) {
  const EstimateParams p;
  EXPECT_EQ(p.cpu_idle_w, 0.74);
  EXPECT_EQ(p.cpu_active_w, 3.5);
  EXPECT_EQ(p.dram_pj_per_bit, 20.0);
  // One fully busy vCPU for an hour on a 1-vCPU machine: 3.5 Wh.
  EstimateParams one = p;
  one.cpus = 1;
  EXPECT_NEAR(estimate_energy(one, {3600, 3600, 0}).total_j(), 3.5 * 3600, 1e-9);
}

TEST(MeterEstimate, ZeroCpusMeansOnlineCpus) {
  EstimateParams p;
  p.cpus = 0;
  EXPECT_NEAR(estimate_energy(p, {2, 0, 0}).idle_j, online_cpus() * 0.74 * 2, 1e-12);
}

TEST(MeterEstimate, ForwardTraffic) {
  // 3 tokens after 5 cached: weights once, KV rows 6 + 7 + 8 = 21.
  EXPECT_EQ(forward_traffic_bytes(1000, 10, 5, 3), 1000u + 21u * 10u);
  // One decode token at position 99 attends 100 rows.
  EXPECT_EQ(forward_traffic_bytes(1000, 10, 99, 1), 1000u + 100u * 10u);
  EXPECT_EQ(forward_traffic_bytes(1000, 10, 0, 0), 0u);
}

TEST(MeterEstimate, WeightBytesSkipTheEmbeddingUnlessTied) {
  auto tensor = [](const char* name, size_t nbytes) {
    GgufTensor t;
    t.name = name;
    t.nbytes = nbytes;
    return t;
  };
  std::vector<GgufTensor> untied = {tensor("token_embd.weight", 1000), tensor("blk.0.attn_q.weight", 30),
                                    tensor("output.weight", 1000)};
  EXPECT_EQ(weight_bytes(untied), 1030u);
  std::vector<GgufTensor> tied = {tensor("token_embd.weight", 1000), tensor("blk.0.attn_q.weight", 30)};
  EXPECT_EQ(weight_bytes(tied), 1030u);  // the embedding doubles as the output projection
}

TEST(MeterEstimate, SourceChargesWallCpuAndTraffic) {
  EstimateParams p;
  p.cpu_idle_w = 1;
  p.cpu_active_w = 11;
  p.dram_pj_per_bit = 1000;
  p.cpus = 3;
  Probe probe;
  const double t0 = 100.0;
  auto s = open_estimate(p, probe, t0);
  ASSERT_TRUE(s);
  EXPECT_TRUE(probe.available);
  EXPECT_FALSE(probe.measured);
  EXPECT_FALSE(s->measured());
  EXPECT_EQ(s->name(), "estimate");
  burn_cpu(0.05);
  s->add_memory_traffic(1000000);
  const double j = s->joules_at(t0 + 2.0);
  const std::vector<Component> c = s->components();
  ASSERT_EQ(c.size(), 3u);
  EXPECT_NEAR(c[0].joules, 3 * 1.0 * 2.0, 1e-12);  // idle share: 3 vCPUs x 1 W x 2 s
  EXPECT_GE(c[1].joules, 10 * 0.05);                // >= 50 ms of CPU at 10 W above idle
  EXPECT_NEAR(c[2].joules, 0.008, 1e-12);           // 1e6 B x 8 bit x 1000 pJ
  EXPECT_NEAR(j, c[0].joules + c[1].joules + c[2].joules, 1e-12);
}

// ---- accounting ----

TEST(MeterAccounting, HandComputed) {
  Prices prices;
  prices.usd_per_kwh = 0.20;
  prices.hw_usd_per_hour = 1.80;
  prices.grid_g_per_kwh = 400;
  const EnergyReport r = make_report("rapl", "package-0", false, {10, 0.5, 100}, {90, 4.5, 400}, prices);
  EXPECT_EQ(r.source, "rapl");
  EXPECT_FALSE(r.estimated);
  EXPECT_DOUBLE_EQ(r.total_j, 100);
  EXPECT_DOUBLE_EQ(r.total_s, 5);
  EXPECT_EQ(r.tokens, 500);
  EXPECT_DOUBLE_EQ(r.avg_w, 20);                   // 100 J / 5 s
  EXPECT_DOUBLE_EQ(r.tokens_per_j, 5);             // 500 / 100
  EXPECT_DOUBLE_EQ(r.prefill_tokens_per_j, 10);    // 100 / 10
  EXPECT_NEAR(r.decode_tokens_per_j, 400.0 / 90, 1e-12);
  EXPECT_DOUBLE_EQ(r.tokens_per_s, 100);           // 500 / 5
  EXPECT_NEAR(r.wh_per_1k_tokens, 0.0555555555556, 1e-12);  // (100/3600 Wh) / 0.5 k
  EXPECT_NEAR(r.energy_usd, 5.5555555556e-6, 1e-15);        // 100/3.6e6 kWh x 0.20
  EXPECT_NEAR(r.hardware_usd, 0.0025, 1e-15);               // 1.80 $/h x 5 s
  EXPECT_NEAR(r.cost_usd, 0.0025055555556, 1e-13);
  EXPECT_NEAR(r.usd_per_mtok, 5.0111111111, 1e-9);          // cost / 500 x 1e6
  EXPECT_NEAR(r.co2_g, 0.0111111111111, 1e-12);             // 100/3.6e6 kWh x 400 g
}

TEST(MeterAccounting, DefaultPricesAreTheDocumentedOnes) {
  const Prices p;
  EXPECT_EQ(p.usd_per_kwh, 0.127);
  EXPECT_EQ(p.grid_g_per_kwh, 390.0);
  // 1 kWh: 0.127 $ and 390 g.
  const EnergyReport r = make_report("estimate", "", true, {3.6e6, 3600, 1}, {0, 0, 0}, p);
  EXPECT_NEAR(r.energy_usd, 0.127, 1e-12);
  EXPECT_NEAR(r.co2_g, 390, 1e-9);
}

TEST(MeterAccounting, ZeroDenominatorsGiveZeroNotNan) {
  const EnergyReport r = make_report("estimate", "", true, {}, {}, Prices{});
  for (double v : {r.avg_w, r.tokens_per_j, r.decode_tokens_per_j, r.wh_per_1k_tokens, r.usd_per_mtok, r.tokens_per_s})
    EXPECT_EQ(v, 0.0);
  EXPECT_NO_THROW((void)to_json(r).dump());
}

TEST(MeterAccounting, JsonHasTheBenchKeys) {
  Prices prices;
  prices.hw_usd_per_hour = 0.1;
  const nlohmann::json j = to_json(make_report("estimate", "model", true, {1, 1, 10}, {3, 1, 20}, prices));
  for (const char* k : {"source", "estimated", "prefill_j", "decode_j", "avg_w", "tokens_per_j", "usd_per_mtok", "co2_g"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["source"], "estimate");
  EXPECT_EQ(j["estimated"], true);
  EXPECT_DOUBLE_EQ(j["prefill_j"].get<double>(), 1);
  EXPECT_DOUBLE_EQ(j["decode_j"].get<double>(), 3);
  EXPECT_DOUBLE_EQ(j["avg_w"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(j["tokens_per_j"].get<double>(), 7.5);
}

TEST(MeterAccounting, SummaryLineNamesEverything) {
  const std::string s = summary_line(make_report("estimate", "", true, {1, 1, 10}, {3, 1, 20}, Prices{}));
  for (const char* part : {"[jevons] energy (estimated)", "4 J", "tok/s", "7.5 tok/J", "/Mtok", "CO2e", "source: estimate"})
    EXPECT_NE(s.find(part), std::string::npos) << part << " in " << s;
  const std::string m = summary_line(make_report("rapl", "", false, {1, 1, 10}, {3, 1, 20}, Prices{}));
  EXPECT_NE(m.find("(measured)"), std::string::npos) << m;
}

// ---- configuration ----

struct FakeEnv {
  std::map<std::string, std::string> vars;
  EnvLookup lookup() const {
    return [this](const char* n) -> const char* {
      auto it = vars.find(n);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

std::string temp_dir(const std::string& tag) {
  const auto d = std::filesystem::temp_directory_path() / ("jevons_meter_" + std::to_string(::getpid()) + "_" + tag);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MeterConfig, Defaults) {
  FakeEnv env;  // no HOME: no config file
  const MeterConfig c = resolve_config({}, env.lookup());
  EXPECT_EQ(c.prices.usd_per_kwh, 0.127);
  EXPECT_EQ(c.prices.grid_g_per_kwh, 390.0);
  EXPECT_EQ(c.estimate.cpus, online_cpus());
  EXPECT_DOUBLE_EQ(c.prices.hw_usd_per_hour, 0.0504 * online_cpus());
  EXPECT_EQ(c.energy_source, "auto");
  EXPECT_EQ(c.powercap_root, "/sys/class/powercap");
  EXPECT_EQ(c.nvml_library, "libnvidia-ml.so.1");
  EXPECT_EQ(c.sample_ms, 100);
  EXPECT_EQ(c.origin.at("price_kwh"), "default");
  EXPECT_FALSE(c.config_file_loaded);
  // Every key documents its env var, flag and the source of its default.
  for (const KeyInfo& k : config_keys()) {
    EXPECT_EQ(std::string(k.env).rfind("JEVONS_", 0), 0u) << k.key;
    EXPECT_EQ(std::string(k.flag).rfind("--", 0), 0u) << k.key;
    EXPECT_GT(std::string(k.default_source).size(), 5u) << k.key;
  }
}

TEST(MeterConfig, FlagsBeatEnvBeatFileBeatDefaults) {
  const std::string dir = temp_dir("precedence");
  write(dir + "/m.json", R"({"price_kwh": 0.2, "grid_g_per_kwh": 100, "cpu_idle_w": 1.0, "cpus": 4,
                           // comments are allowed
                           "energy_source": "estimate"})");
  FakeEnv env;
  env.vars = {{"JEVONS_PRICE_KWH", "0.3"}, {"JEVONS_GRID_G_PER_KWH", "200"}, {"JEVONS_METER_CONFIG", dir + "/m.json"}};
  Overrides flags;
  flags.values["price_kwh"] = "0.4";
  const MeterConfig c = resolve_config(flags, env.lookup());
  EXPECT_EQ(c.prices.usd_per_kwh, 0.4);
  EXPECT_EQ(c.origin.at("price_kwh"), "flag --price-kwh");
  EXPECT_EQ(c.prices.grid_g_per_kwh, 200);
  EXPECT_EQ(c.origin.at("grid_g_per_kwh"), "env JEVONS_GRID_G_PER_KWH");
  EXPECT_EQ(c.estimate.cpu_idle_w, 1.0);
  EXPECT_EQ(c.origin.at("cpu_idle_w"), "file " + dir + "/m.json");
  EXPECT_EQ(c.energy_source, "estimate");
  EXPECT_EQ(c.estimate.cpus, 4);
  EXPECT_DOUBLE_EQ(c.prices.hw_usd_per_hour, 0.0504 * 4);  // the default follows the vCPUs charged
  EXPECT_EQ(c.estimate.cpu_active_w, 3.5);
  EXPECT_EQ(c.origin.at("cpu_active_w"), "default");
  EXPECT_TRUE(c.config_file_loaded);
  // --meter-config beats JEVONS_METER_CONFIG.
  write(dir + "/other.json", R"({"grid_g_per_kwh": 50})");
  flags.config_file = dir + "/other.json";
  env.vars.erase("JEVONS_GRID_G_PER_KWH");
  EXPECT_EQ(resolve_config(flags, env.lookup()).prices.grid_g_per_kwh, 50);
  std::filesystem::remove_all(dir);
}

TEST(MeterConfig, DefaultFileUnderXdgConfigHome) {
  const std::string dir = temp_dir("xdg");
  std::filesystem::create_directories(dir + "/jevons");
  write(dir + "/jevons/meter.json", R"({"hw_usd_per_hour": 2.5})");
  FakeEnv env;
  env.vars = {{"XDG_CONFIG_HOME", dir}, {"HOME", "/nonexistent"}};
  const MeterConfig c = resolve_config({}, env.lookup());
  EXPECT_EQ(c.prices.hw_usd_per_hour, 2.5);
  EXPECT_EQ(c.config_file, dir + "/jevons/meter.json");
  EXPECT_TRUE(c.config_file_loaded);
  env.vars = {{"HOME", dir + "/nohome"}};  // a missing default file is fine
  const MeterConfig d = resolve_config({}, env.lookup());
  EXPECT_FALSE(d.config_file_loaded);
  EXPECT_EQ(d.config_file, dir + "/nohome/.config/jevons/meter.json");
  std::filesystem::remove_all(dir);
}

TEST(MeterConfig, BadValuesAreClearErrors) {
  const std::string dir = temp_dir("bad");
  FakeEnv env;
  auto with_env = [&](const std::string& k, const std::string& v) {
    env.vars = {{k, v}};
    return error_of([&] { resolve_config({}, env.lookup()); });
  };
  EXPECT_NE(with_env("JEVONS_PRICE_KWH", "abc").find("env JEVONS_PRICE_KWH: 'abc' is not a number"), std::string::npos);
  EXPECT_NE(with_env("JEVONS_PRICE_KWH", "0.1x").find("is not a number"), std::string::npos);
  EXPECT_NE(with_env("JEVONS_GRID_G_PER_KWH", "-5").find("out of range"), std::string::npos);
  EXPECT_NE(with_env("JEVONS_ENERGY_SAMPLE_MS", "2.5").find("not a whole number"), std::string::npos);
  EXPECT_NE(with_env("JEVONS_ENERGY_SOURCE", "gpu").find("unknown energy source 'gpu'"), std::string::npos);
  EXPECT_NE(with_env("JEVONS_PRICE_KWH", "nan").find("not a number"), std::string::npos);
  EXPECT_NE(with_env("JEVONS_CPU_ACTIVE_W", "0.5").find("below cpu_idle_w"), std::string::npos);

  Overrides flags;
  flags.values["sample_ms"] = "0";
  env.vars.clear();
  EXPECT_NE(error_of([&] { resolve_config(flags, env.lookup()); }).find("flag --energy-sample-ms: 0 is out of range"),
            std::string::npos);

  auto with_file = [&](const std::string& text) {
    write(dir + "/f.json", text);
    Overrides o;
    o.config_file = dir + "/f.json";
    return error_of([&] { resolve_config(o, env.lookup()); });
  };
  EXPECT_NE(with_file(R"({"price": 1})").find("unknown key 'price'"), std::string::npos);
  EXPECT_NE(with_file(R"({"price_kwh": "cheap"})").find("expected a number"), std::string::npos);
  EXPECT_NE(with_file(R"({"nvml_library": 3})").find("expected a string"), std::string::npos);
  EXPECT_NE(with_file("{not json").find("is not valid JSON"), std::string::npos);
  EXPECT_NE(with_file("[1, 2]").find("expected a JSON object"), std::string::npos);
  Overrides missing;
  missing.config_file = dir + "/missing.json";
  EXPECT_NE(error_of([&] { resolve_config(missing, env.lookup()); }).find("does not exist"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// ---- a span over the estimate ----

MeterConfig isolated_config(const std::string& source) {
  MeterConfig c;
  c.energy_source = source;
  c.powercap_root = "/nonexistent/powercap";
  c.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  c.sample_ms = 10;
  return c;
}

TEST(MeterSpan, AutoFallsBackToTheEstimateAndSaysWhy) {
  Meter m(isolated_config("auto"));
  EXPECT_EQ(m.source(), "estimate");
  EXPECT_TRUE(m.estimated());
  ASSERT_EQ(m.probes().size(), 3u);
  EXPECT_EQ(m.probes()[0].name, "rapl");
  EXPECT_FALSE(m.probes()[0].available);
  EXPECT_NE(m.probes()[0].detail.find("/nonexistent/powercap: not present"), std::string::npos);
  EXPECT_EQ(m.probes()[1].name, "nvml");
  EXPECT_NE(m.probes()[1].detail.find("not found"), std::string::npos) << m.probes()[1].detail;
  EXPECT_EQ(m.probes()[2].name, "estimate");
  EXPECT_TRUE(m.probes()[2].available);
  EXPECT_TRUE(m.warnings().empty());  // no RAPL and no GPU is normal on a VM: nothing to warn about
}

TEST(MeterSpan, ForcedSourceThatIsMissingIsAnError) {
  EXPECT_NE(error_of([] { Meter m(isolated_config("rapl")); })
                .find("energy source rapl (requested) is unavailable: /nonexistent/powercap: not present"),
            std::string::npos);
  EXPECT_NE(error_of([] { Meter m(isolated_config("nvml")); }).find("not found"), std::string::npos);
}

TEST(MeterSpan, EstimatePhases) {
  Meter m(isolated_config("estimate"));
  Span s = m.span();
  s.mark(Phase::Prefill);
  burn_cpu(0.02);
  m.add_memory_traffic(1u << 20);
  s.mark(Phase::Decode);
  burn_cpu(0.04);
  const EnergyReport r = s.finish(4, 10);
  EXPECT_EQ(r.source, "estimate");
  EXPECT_TRUE(r.estimated);
  EXPECT_EQ(r.prefill.tokens, 4);
  EXPECT_EQ(r.decode.tokens, 10);
  EXPECT_GE(r.prefill.seconds, 0.02);
  EXPECT_GE(r.decode.seconds, 0.04);
  // At least the busy-CPU term: (3.5 - 0.74) W per busy second.
  EXPECT_GE(r.prefill.joules, 2.76 * 0.02);
  EXPECT_GE(r.decode.joules, 2.76 * 0.04);
  EXPECT_NEAR(r.total_j, r.prefill.joules + r.decode.joules, 1e-12);
  EXPECT_NE(r.source_detail.find("pJ/bit"), std::string::npos);
}

}  // namespace
}  // namespace jevons::meter
