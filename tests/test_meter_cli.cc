// `jevons meter` and the energy parts of `jevons run`, end to end through the binary.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace jevons {
namespace {

using Result = test::ShellResult;

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("jevons_metercli_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Runs `ENV jevons ARGS` with no user config file in the way, under a timeout.
Result jevons(const std::string& args, const std::string& env = "") {
  return test::run_shell("env XDG_CONFIG_HOME=/nonexistent/xdg " + env + " timeout 120 " + std::string(JEVONS_CLI_PATH) + " " + args);
}

const std::string kNoSources = " --powercap-root /nonexistent/powercap --nvml-library /nonexistent/libnvidia-ml.so.1";

std::string stories() { return test::shared_dir() + "/models/stories260K/stories260K-f32.gguf"; }

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(MeterCli, SaysWhichSourcesWereProbedAndWhyNot) {
  const Result r = jevons("meter --duration-ms 50" + kNoSources);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "/nonexistent/powercap: not present")) << r.out;
  EXPECT_TRUE(has(r.out, "/nonexistent/libnvidia-ml.so.1: not found")) << r.out;
  EXPECT_TRUE(has(r.out, "In use: estimate (figures are estimated")) << r.out;
  for (const char* part : {"cpu_idle_w", "0.74", "Cloud Carbon Footprint", "dram_pj_per_bit", "Horowitz", "price_kwh",
                           "0.127", "EIA", "grid_g_per_kwh", "390", "hw_usd_per_hour", "JEVONS_PRICE_KWH", "W (estimated)"})
    EXPECT_TRUE(has(r.out, part)) << part << " missing from:\n" << r.out;
}

TEST(MeterCli, FakeGpuIsMeasured) {
  const Result r = jevons("meter --json --duration-ms 300 --powercap-root /nonexistent/powercap --nvml-library " +
                              std::string(JEVONS_FAKE_NVML_PATH),
                          "FAKE_NVML_ADVANCE=1 FAKE_NVML_POWER_MW=50000");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["source"], "estimate+nvml");
  EXPECT_EQ(j["probes"][1]["name"], "nvml");
  EXPECT_EQ(j["probes"][1]["available"], true);
  EXPECT_EQ(j["probes"][1]["detail"], "GPU0 Fake GPU (energy counter)");
  EXPECT_NEAR(j["readings_w"]["nvml/GPU0 Fake GPU"].get<double>(), 50.0, 2.5) << r.out;
}

TEST(MeterCli, FlagsBeatEnvironment) {
  const Result r = jevons("meter --json --duration-ms 10 --grid-g-per-kwh 123 --price-kwh 0.25" + kNoSources,
                          "JEVONS_PRICE_KWH=0.5 JEVONS_HW_USD_PER_HOUR=3");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["settings"]["price_kwh"]["value"], "0.25");
  EXPECT_EQ(j["settings"]["price_kwh"]["origin"], "flag --price-kwh");
  EXPECT_EQ(j["settings"]["hw_usd_per_hour"]["value"], "3");
  EXPECT_EQ(j["settings"]["hw_usd_per_hour"]["origin"], "env JEVONS_HW_USD_PER_HOUR");
  EXPECT_EQ(j["settings"]["grid_g_per_kwh"]["value"], "123");
}

TEST(MeterCli, ConfigFile) {
  const std::string cfg = tmp("meter.json");
  std::ofstream(cfg) << R"({"price_kwh": 0.31, "energy_source": "estimate"})";
  Result r = jevons("meter --json --duration-ms 10 --meter-config " + cfg);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["settings"]["price_kwh"]["value"], "0.31");
  EXPECT_EQ(j["settings"]["price_kwh"]["origin"], "file " + cfg);
  EXPECT_EQ(j["source"], "estimate");
  EXPECT_EQ(j["config_file_loaded"], true);
  std::filesystem::remove(cfg);
  r = jevons("meter --meter-config " + cfg);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "error: meter config file " + cfg + " does not exist")) << r.err;
}

TEST(MeterCli, BadValuesAreClearErrors) {
  Result r = jevons("meter" + kNoSources, "JEVONS_PRICE_KWH=abc");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "error: env JEVONS_PRICE_KWH: 'abc' is not a number")) << r.err;
  r = jevons("meter --energy-source gpu");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "unknown energy source 'gpu'")) << r.err;
  r = jevons("meter --energy-source rapl --powercap-root /nonexistent/powercap");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "energy source rapl (flag --energy-source) is unavailable: /nonexistent/powercap: not present"))
      << r.err;
  // run checks its meter settings before loading anything
  r = jevons("run -m /nonexistent/model.gguf --price-kwh -1");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "flag --price-kwh: -1 is out of range")) << r.err;
}

TEST(MeterCli, RunPrintsAnEnergySummary) {
  const Result r = jevons("run -m " + stories() + " -p \"Once upon a time\" -n 30 --temp 0 -t 1" + kNoSources);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* part : {"[jevons] energy (estimated): ", " J (prefill ", "W avg", "tok/s", "tok/J", "Wh/1k tok", "/Mtok",
                           "CO2e", "source: estimate"})
    EXPECT_TRUE(has(r.err, part)) << part << " missing from:\n" << r.err;
}

TEST(MeterCli, RunWithAFakeGpuIsLabelled) {
  const Result r = jevons("run -m " + stories() + " -p hi -n 5 --temp 0 --energy-source nvml --nvml-library " +
                          std::string(JEVONS_FAKE_NVML_PATH), "FAKE_NVML_ADVANCE=1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "[jevons] energy (measured): ")) << r.err;
  EXPECT_TRUE(has(r.err, "source: nvml")) << r.err;
}

TEST(EnergyLogCli, RunWritesAPowerTimeSeries) {
  const std::string log = tmp("power.csv");
  const Result r = jevons("run -m " + stories() + " -p \"Once upon a time\" -n 200 --temp 0 -t 1 --energy-log " + log +
                          " --energy-sample-ms 2" + kNoSources);
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream f(log);
  std::string line;
  ASSERT_TRUE(std::getline(f, line)) << "no " << log;
  EXPECT_EQ(line, "t_s,watts,joules,source");
  int rows = 0;
  double last_t = -1, last_j = -1;
  while (std::getline(f, line)) {
    double t = 0, w = 0, j = 0;
    char src[32] = {0};
    ASSERT_EQ(std::sscanf(line.c_str(), "%lf,%lf,%lf,%31s", &t, &w, &j, src), 4) << line;
    EXPECT_GT(t, last_t);
    EXPECT_GE(j, last_j);
    EXPECT_GT(w, 0);  // the idle share alone is > 0
    EXPECT_STREQ(src, "estimate");
    last_t = t;
    last_j = j;
    ++rows;
  }
  EXPECT_GE(rows, 1);  // at least the final row
  EXPECT_GT(last_j, 0);
  std::filesystem::remove(log);
  const Result bad = jevons("run -m " + stories() + " -p hi -n 1 --energy-log /nonexistent/dir/p.csv" + kNoSources);
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(has(bad.err, "cannot write the energy log /nonexistent/dir/p.csv")) << bad.err;
}

TEST(MeterCli, HelpListsTheEnergyOptions) {
  Result r = jevons("run --help");
  ASSERT_EQ(r.code, 0);
  for (const char* flag : {"--energy-log", "--price-kwh", "--grid-g-per-kwh", "--energy-source", "--meter-config",
                           "JEVONS_PRICE_KWH"})
    EXPECT_TRUE(has(r.out, flag)) << flag;
  r = jevons("meter --help");
  ASSERT_EQ(r.code, 0);
  EXPECT_TRUE(has(r.out, "--duration-ms")) << r.out;
}

}  // namespace
}  // namespace jevons
