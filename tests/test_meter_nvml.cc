// The real NVML integration code against a fake libnvidia-ml built by the test
// suite (tests/fake_nvml/fake_nvml.cc) and loaded through the overridable library
// path: initialisation, handles, the energy counter, the power fallback, errors,
// and shutdown balanced with init.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "meter/meter.h"

namespace jevons::meter {
namespace {

// Steers the fake: the same dlopen handle (and so the same state) the meter gets.
class FakeNvml : public ::testing::Test {
 protected:
  void SetUp() override {
    handle_ = dlopen(JEVONS_FAKE_NVML_PATH, RTLD_NOW | RTLD_LOCAL);
    ASSERT_TRUE(handle_) << dlerror();
    set_ = reinterpret_cast<void (*)(const char*, long long)>(dlsym(handle_, "fake_nvml_set"));
    get_ = reinterpret_cast<long long (*)(const char*)>(dlsym(handle_, "fake_nvml_get"));
    auto reset = reinterpret_cast<void (*)()>(dlsym(handle_, "fake_nvml_reset"));
    ASSERT_TRUE(set_ && get_ && reset);
    reset();
    inits0_ = get_("init_calls");
    shutdowns0_ = get_("shutdown_calls");
  }
  void TearDown() override {
    if (handle_) dlclose(handle_);
  }
  void set(const char* k, long long v) { set_(k, v); }
  long long inits() { return get_("init_calls") - inits0_; }
  long long shutdowns() { return get_("shutdown_calls") - shutdowns0_; }
  std::string lib() const { return JEVONS_FAKE_NVML_PATH; }

  void* handle_ = nullptr;
  void (*set_)(const char*, long long) = nullptr;
  long long (*get_)(const char*) = nullptr;
  long long inits0_ = 0, shutdowns0_ = 0;
};

TEST_F(FakeNvml, NvmlEnergyCounter) {
  set("energy_mj0", 7000000);
  {
    Probe p;
    auto s = open_nvml(lib(), p);
    ASSERT_TRUE(s) << p.detail;
    EXPECT_TRUE(p.available);
    EXPECT_TRUE(p.measured);
    EXPECT_EQ(p.detail, "GPU0 Fake GPU (energy counter)");
    EXPECT_EQ(s->name(), "nvml");
    EXPECT_FALSE(s->needs_polling());
    EXPECT_EQ(get_("initialized"), 1);
    EXPECT_DOUBLE_EQ(s->joules(), 0.0);  // relative to the counter at open
    set("energy_mj0", 7005500);          // +5500 mJ
    EXPECT_DOUBLE_EQ(s->joules(), 5.5);
    const std::vector<Component> c = s->components();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].name, "GPU0 Fake GPU");
    EXPECT_DOUBLE_EQ(c[0].joules, 5.5);
  }
  EXPECT_EQ(inits(), 1);
  EXPECT_EQ(shutdowns(), 1);  // the source shut NVML down when it went
  EXPECT_EQ(get_("initialized"), 0);
}

TEST_F(FakeNvml, NvmlTwoGpusAreSummed) {
  set("devices", 2);
  set("energy_mj0", 1000);
  set("energy_mj1", 2000000);
  Probe p;
  auto s = open_nvml(lib(), p);
  ASSERT_TRUE(s) << p.detail;
  EXPECT_EQ(p.detail, "GPU0 Fake GPU (energy counter), GPU1 Fake GPU (energy counter)");
  set("energy_mj0", 2000);     // +1 J
  set("energy_mj1", 2003000);  // +3 J
  EXPECT_DOUBLE_EQ(s->joules(), 4.0);
}

TEST_F(FakeNvml, NvmlPowerFallbackIntegrates) {
  set("energy_supported", 0);  // NVML_ERROR_NOT_SUPPORTED: pre-Volta GPUs
  set("power_mw", 100000);
  Probe p;
  auto s = open_nvml(lib(), p, /*t0_s=*/10.0);
  ASSERT_TRUE(s) << p.detail;
  EXPECT_EQ(p.detail, "GPU0 Fake GPU (power sampled and integrated)");
  EXPECT_TRUE(p.notices.empty());  // NOT_SUPPORTED is expected, not a problem
  EXPECT_TRUE(s->needs_polling());
  set("power_mw", 200000);
  EXPECT_DOUBLE_EQ(s->joules_at(12.0), 300.0);  // trapezoid: (100 + 200) / 2 W x 2 s
  EXPECT_DOUBLE_EQ(s->joules_at(13.0), 500.0);  // + 200 W x 1 s
  EXPECT_DOUBLE_EQ(s->joules_at(12.5), 500.0);  // a stale time is ignored
  set("power_mw", 0);
  EXPECT_DOUBLE_EQ(s->joules_at(15.0), 700.0);  // (200 + 0) / 2 W x 2 s
}

TEST_F(FakeNvml, NvmlInitFailure) {
  set("init_result", 9);  // NVML_ERROR_DRIVER_NOT_LOADED
  Probe p;
  EXPECT_FALSE(open_nvml(lib(), p));
  EXPECT_FALSE(p.available);
  EXPECT_NE(p.detail.find("nvmlInit_v2 failed: Driver Not Loaded (NVML error 9)"), std::string::npos) << p.detail;
  EXPECT_EQ(inits(), 1);
  EXPECT_EQ(shutdowns(), 0);  // nothing to shut down after a failed init
}

TEST_F(FakeNvml, NvmlNoGpuShutsDownAgain) {
  set("devices", 0);
  Probe p;
  EXPECT_FALSE(open_nvml(lib(), p));
  EXPECT_NE(p.detail.find("NVML found no GPU"), std::string::npos) << p.detail;
  EXPECT_EQ(inits(), 1);
  EXPECT_EQ(shutdowns(), 1);
}

TEST_F(FakeNvml, NvmlGpuWithNeitherCounterNorPower) {
  set("energy_supported", 0);
  set("power_result", 3);
  Probe p;
  EXPECT_FALSE(open_nvml(lib(), p));
  EXPECT_NE(p.detail.find("no GPU gives energy or power readings"), std::string::npos) << p.detail;
  ASSERT_EQ(p.notices.size(), 1u);
  EXPECT_NE(p.notices[0].find("GPU0 Fake GPU skipped: no energy counter (Not Supported (NVML error 3))"),
            std::string::npos)
      << p.notices[0];
  EXPECT_EQ(shutdowns(), 1);
}

TEST_F(FakeNvml, NvmlErrorsWhileSamplingKeepTheLastValue) {
  Probe p;
  auto s = open_nvml(lib(), p);
  ASSERT_TRUE(s) << p.detail;
  set("energy_mj0", 1000000 + 2500);
  EXPECT_DOUBLE_EQ(s->joules(), 2.5);
  set("energy_result", 15);  // NVML_ERROR_GPU_IS_LOST
  set("energy_mj0", 1000000 + 9000);
  EXPECT_DOUBLE_EQ(s->joules(), 2.5);
  ASSERT_EQ(s->errors().size(), 1u);
  EXPECT_EQ(s->errors()[0], "GPU0: nvmlDeviceGetTotalEnergyConsumption: GPU is lost (NVML error 15)");
  set("energy_result", 0);
  EXPECT_DOUBLE_EQ(s->joules(), 9.0);  // back
}

TEST(Nvml, LibraryNotFound) {
  Probe p;
  EXPECT_FALSE(open_nvml("/nonexistent/libnvidia-ml.so.1", p));
  EXPECT_EQ(p.name, "nvml");
  EXPECT_NE(p.detail.find("/nonexistent/libnvidia-ml.so.1: not found"), std::string::npos) << p.detail;
  EXPECT_NE(p.detail.find("JEVONS_NVML_LIBRARY"), std::string::npos) << p.detail;
}

TEST(Nvml, ALibraryThatIsNotNvml) {
  Probe p;
  EXPECT_FALSE(open_nvml("libc.so.6", p));
  EXPECT_NE(p.detail.find("libc.so.6: has no nvmlInit_v2"), std::string::npos) << p.detail;
}

// ---- Meter over the fake ----

MeterConfig nvml_config(const std::string& source) {
  MeterConfig c;
  c.energy_source = source;
  c.powercap_root = "/nonexistent/powercap";
  c.nvml_library = JEVONS_FAKE_NVML_PATH;
  c.sample_ms = 5;
  return c;
}

TEST_F(FakeNvml, MeterAutoAddsGpusToTheCpuEstimate) {
  Meter m(nvml_config("auto"));
  EXPECT_EQ(m.source(), "estimate+nvml");
  EXPECT_TRUE(m.estimated());  // the CPU part is estimated, so the whole is
  EXPECT_TRUE(m.probes()[1].available);
  EXPECT_NE(m.source_detail().find("nvml: GPU0 Fake GPU (energy counter)"), std::string::npos) << m.source_detail();
}

TEST_F(FakeNvml, MeterNvmlOnlyIsMeasured) {
  set("energy_mj0", 0);
  Meter m(nvml_config("nvml"));
  EXPECT_EQ(m.source(), "nvml");
  EXPECT_FALSE(m.estimated());
  Span s = m.span();
  s.mark(Phase::Prefill);
  set("energy_mj0", 1000);
  s.mark(Phase::Decode);
  set("energy_mj0", 3000);
  const EnergyReport r = s.finish(10, 20);
  EXPECT_DOUBLE_EQ(r.prefill.joules, 1.0);
  EXPECT_DOUBLE_EQ(r.decode.joules, 2.0);
  EXPECT_DOUBLE_EQ(r.tokens_per_j, 10.0);
  EXPECT_FALSE(r.estimated);
  const std::vector<Component> c = m.components();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].name, "nvml/GPU0 Fake GPU");
}

TEST_F(FakeNvml, MeterForcedNvmlFailsWithTheReason) {
  set("init_result", 9);
  try {
    Meter m(nvml_config("nvml"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("energy source nvml (requested) is unavailable"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Driver Not Loaded"), std::string::npos) << e.what();
  }
}

TEST_F(FakeNvml, EnergyLogOfSampledPower) {
  set("energy_supported", 0);
  set("power_mw", 100000);  // a steady 100 W: every row must say 100 W
  const std::string log =
      (std::filesystem::temp_directory_path() / ("jevons_nvml_log_" + std::to_string(::getpid()) + ".csv")).string();
  {
    Meter m(nvml_config("nvml"));
    m.start_log(log);
    ::usleep(60000);
    m.stop_log();
  }
  std::ifstream f(log);
  std::string line;
  ASSERT_TRUE(std::getline(f, line));
  EXPECT_EQ(line, "t_s,watts,joules,source");
  int rows = 0;
  double t = 0, w = 0, j = 0;
  while (std::getline(f, line)) {
    char src[32] = {0};
    ASSERT_EQ(std::sscanf(line.c_str(), "%lf,%lf,%lf,%31s", &t, &w, &j, src), 4) << line;
    EXPECT_NEAR(w, 100.0, 1e-9) << line;
    EXPECT_NEAR(j, 100.0 * t, 1e-3) << line;  // t printed to 1 us
    EXPECT_STREQ(src, "nvml");
    ++rows;
  }
  EXPECT_GE(rows, 2);
  EXPECT_GE(t, 0.06);
  std::filesystem::remove(log);
}

TEST(EnergyLog, UnwritablePathIsAnError) {
  MeterConfig c = nvml_config("estimate");
  Meter m(c);
  try {
    m.start_log("/nonexistent/dir/power.csv");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write the energy log /nonexistent/dir/power.csv"), std::string::npos);
  }
}

}  // namespace
}  // namespace jevons::meter
