// RAPL through a fake powercap tree in a temporary directory: normal reads, wrap-
// around, a missing DRAM domain, unreadable files, and a Meter/Span over it.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "meter/meter.h"

namespace jevons::meter {
namespace {

namespace fs = std::filesystem;

// <tmp>/jevons_powercap_<pid>_<tag>/intel-rapl:N[:M]/{name, energy_uj, max_energy_range_uj}
class FakePowercap {
 public:
  explicit FakePowercap(const std::string& tag)
      : root_((fs::temp_directory_path() / ("jevons_powercap_" + std::to_string(::getpid()) + "_" + tag)).string()) {
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  ~FakePowercap() { fs::remove_all(root_); }
  const std::string& root() const { return root_; }

  void zone(const std::string& zone, const std::string& name, uint64_t energy_uj, uint64_t max_uj = 262143328850ull) {
    fs::create_directories(root_ + "/" + zone);
    put(zone + "/name", name + "\n");
    put(zone + "/max_energy_range_uj", std::to_string(max_uj) + "\n");
    set(zone, energy_uj);
  }
  void set(const std::string& zone, uint64_t energy_uj) { put(zone + "/energy_uj", std::to_string(energy_uj) + "\n"); }
  void put(const std::string& rel, const std::string& text) { std::ofstream(root_ + "/" + rel, std::ios::trunc) << text; }
  std::string path(const std::string& rel) const { return root_ + "/" + rel; }

 private:
  std::string root_;
};

// Runs fn where files with mode 0400/0000 are really unreadable: as is when not
// root; as root, in a child process that has dropped to nobody (root reads anything).
bool unprivileged(const std::function<bool()>& fn) {
  if (::geteuid() != 0) return fn();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    ::_exit(fn() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(Rapl, MissingRootSaysNotPresent) {
  Probe p;
  EXPECT_FALSE(open_rapl("/nonexistent/powercap", p));
  EXPECT_EQ(p.name, "rapl");
  EXPECT_FALSE(p.available);
  EXPECT_NE(p.detail.find("/nonexistent/powercap: not present"), std::string::npos) << p.detail;
}

TEST(Rapl, NoIntelRaplDomains) {
  FakePowercap pc("empty");
  fs::create_directories(pc.root() + "/dtpm");  // another powercap type, not RAPL
  Probe p;
  EXPECT_FALSE(open_rapl(pc.root(), p));
  EXPECT_NE(p.detail.find("no intel-rapl domains"), std::string::npos) << p.detail;
}

TEST(Rapl, SumsPackageAndDramOnly) {
  FakePowercap pc("normal");
  pc.zone("intel-rapl:0", "package-0", 1000000);
  pc.zone("intel-rapl:0:0", "core", 0);          // inside the package: skipped
  pc.zone("intel-rapl:0:1", "dram", 500000);
  pc.zone("intel-rapl:1", "psys", 0);            // whole platform: skipped
  pc.zone("intel-rapl-mmio:0", "package-0", 0);  // the same package again over MMIO: skipped
  Probe p;
  auto s = open_rapl(pc.root(), p);
  ASSERT_TRUE(s) << p.detail;
  EXPECT_TRUE(p.available);
  EXPECT_TRUE(p.measured);
  EXPECT_TRUE(p.notices.empty());
  EXPECT_EQ(p.detail, "package-0 (intel-rapl:0), dram (intel-rapl:0:1)");
  EXPECT_TRUE(s->needs_polling());
  EXPECT_DOUBLE_EQ(s->joules(), 0.0);
  pc.set("intel-rapl:0", 3500000);    // +2.5 J
  pc.set("intel-rapl:0:1", 1250000);  // +0.75 J
  pc.set("intel-rapl:0:0", 10000000);
  pc.set("intel-rapl:1", 100000000);
  pc.set("intel-rapl-mmio:0", 100000000);
  EXPECT_DOUBLE_EQ(s->joules(), 3.25);
  const std::vector<Component> c = s->components();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].name, "package-0 [intel-rapl:0]");
  EXPECT_DOUBLE_EQ(c[0].joules, 2.5);
  EXPECT_EQ(c[1].name, "dram [intel-rapl:0:1]");
  EXPECT_DOUBLE_EQ(c[1].joules, 0.75);
  EXPECT_TRUE(s->errors().empty());
}

TEST(Rapl, TwoPackagesAreSummed) {
  FakePowercap pc("twosockets");
  pc.zone("intel-rapl:0", "package-0", 0);
  pc.zone("intel-rapl:1", "package-1", 0);
  pc.zone("intel-rapl:1:0", "dram", 0);
  Probe p;
  auto s = open_rapl(pc.root(), p);
  ASSERT_TRUE(s) << p.detail;
  pc.set("intel-rapl:0", 1000000);
  pc.set("intel-rapl:1", 2000000);
  pc.set("intel-rapl:1:0", 500000);
  EXPECT_DOUBLE_EQ(s->joules(), 3.5);
}

TEST(Rapl, WrapAround) {
  FakePowercap pc("wrap");
  const uint64_t max = 262143328850ull;
  pc.zone("intel-rapl:0", "package-0", 262143000000ull, max);
  pc.zone("intel-rapl:0:0", "dram", 100, 1000);  // a tiny range that wraps too
  Probe p;
  auto s = open_rapl(pc.root(), p);
  ASSERT_TRUE(s) << p.detail;
  pc.set("intel-rapl:0", 500000);  // wrapped: (max - 262143000000) + 500000 = 828850 uJ
  pc.set("intel-rapl:0:0", 50);    // wrapped: (1000 - 100) + 50 = 950 uJ
  EXPECT_NEAR(s->joules(), 0.828850 + 0.000950, 1e-12);
  pc.set("intel-rapl:0", 1500000);  // +1 J, no wrap
  pc.set("intel-rapl:0:0", 60);     // +10 uJ
  EXPECT_NEAR(s->joules(), 1.828850 + 0.000960, 1e-12);
  EXPECT_NEAR(s->components()[0].joules, 1.828850, 1e-12);
}

TEST(Rapl, MissingDramDomainIsANotice) {
  FakePowercap pc("nodram");
  pc.zone("intel-rapl:0", "package-0", 0);
  Probe p;
  auto s = open_rapl(pc.root(), p);
  ASSERT_TRUE(s) << p.detail;
  EXPECT_EQ(p.detail, "package-0 (intel-rapl:0)");
  ASSERT_EQ(p.notices.size(), 1u);
  EXPECT_NE(p.notices[0].find("no DRAM domain: DRAM energy is not included"), std::string::npos);
  pc.set("intel-rapl:0", 2000000);
  EXPECT_DOUBLE_EQ(s->joules(), 2.0);
  MeterConfig c;
  c.powercap_root = pc.root();
  c.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  Meter m(c);
  ASSERT_EQ(m.warnings().size(), 1u);
  EXPECT_EQ(m.warnings()[0].rfind("rapl: no DRAM domain", 0), 0u) << m.warnings()[0];
}

TEST(Rapl, UnreadablePackageFallsBackWithAClearReason) {
  FakePowercap pc("denied");
  pc.zone("intel-rapl:0", "package-0", 1000);
  pc.zone("intel-rapl:0:0", "dram", 1000);
  ASSERT_EQ(::chmod(pc.path("intel-rapl:0/energy_uj").c_str(), 0400), 0);  // as kernels >= 5.10 ship it
  ASSERT_EQ(::chmod(pc.path("intel-rapl:0:0/energy_uj").c_str(), 0400), 0);
  const std::string root = pc.root();
  EXPECT_TRUE(unprivileged([root] {
    Probe p;
    const bool opened = open_rapl(root, p) != nullptr;
    const bool ok = !opened && !p.available && p.detail.find("permission denied") != std::string::npos &&
                    p.detail.find("readable only by root") != std::string::npos &&
                    p.detail.find("intel-rapl:0/energy_uj") != std::string::npos;
    if (!ok) std::fprintf(stderr, "probe detail: %s\n", p.detail.c_str());
    // A Meter falls back to the estimate and says why, once.
    MeterConfig c;
    c.powercap_root = root;
    c.nvml_library = "/nonexistent/libnvidia-ml.so.1";
    Meter m(c);
    const std::vector<std::string> w = m.warnings();
    const bool warned = m.source() == "estimate" && w.size() == 1 &&
                        w[0].find("rapl unavailable, figures come from estimate: ") == 0 &&
                        w[0].find("permission denied") != std::string::npos;
    if (!warned) std::fprintf(stderr, "source %s, %zu warnings\n", m.source().c_str(), w.size());
    return ok && warned;
  }));
}

TEST(Rapl, UnreadableDramIsSkippedWithANotice) {
  FakePowercap pc("dramdenied");
  pc.zone("intel-rapl:0", "package-0", 1000);
  pc.zone("intel-rapl:0:0", "dram", 1000);
  ASSERT_EQ(::chmod(pc.path("intel-rapl:0:0/energy_uj").c_str(), 0400), 0);
  const std::string root = pc.root();
  EXPECT_TRUE(unprivileged([root] {
    Probe p;
    auto s = open_rapl(root, p);
    const bool ok = s && p.detail == "package-0 (intel-rapl:0)" && p.notices.size() == 1 &&
                    p.notices[0].find("dram domain skipped") != std::string::npos &&
                    p.notices[0].find("permission denied") != std::string::npos;
    if (!ok) std::fprintf(stderr, "probe: %s / %zu notices\n", p.detail.c_str(), p.notices.size());
    return ok;
  }));
}

TEST(Rapl, GarbageAndMissingFiles) {
  FakePowercap pc("garbage");
  pc.zone("intel-rapl:0", "package-0", 0);
  pc.put("intel-rapl:0/energy_uj", "lots\n");
  Probe p;
  EXPECT_FALSE(open_rapl(pc.root(), p));
  EXPECT_NE(p.detail.find("energy_uj: not a number"), std::string::npos) << p.detail;

  pc.set("intel-rapl:0", 0);
  fs::remove(pc.path("intel-rapl:0/max_energy_range_uj"));
  EXPECT_FALSE(open_rapl(pc.root(), p));
  EXPECT_NE(p.detail.find("max_energy_range_uj: No such file or directory (needed for wrap-around)"), std::string::npos)
      << p.detail;
}

TEST(Rapl, ACounterThatStopsAnsweringKeepsItsLastValue) {
  FakePowercap pc("vanish");
  pc.zone("intel-rapl:0", "package-0", 0);
  Probe p;
  auto s = open_rapl(pc.root(), p);
  ASSERT_TRUE(s);
  pc.set("intel-rapl:0", 4000000);
  EXPECT_DOUBLE_EQ(s->joules(), 4.0);
  fs::remove(pc.path("intel-rapl:0/energy_uj"));
  EXPECT_DOUBLE_EQ(s->joules(), 4.0);
  ASSERT_EQ(s->errors().size(), 1u);
  EXPECT_NE(s->errors()[0].find("energy_uj: No such file or directory"), std::string::npos);
}

// ---- Meter and Span over RAPL ----

MeterConfig rapl_config(const std::string& root) {
  MeterConfig c;
  c.powercap_root = root;
  c.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  c.sample_ms = 5;
  c.prices.usd_per_kwh = 0.36;
  c.prices.hw_usd_per_hour = 0;
  c.prices.grid_g_per_kwh = 100;
  return c;
}

TEST(MeterSpan, PhasesFromRaplCounters) {
  FakePowercap pc("span");
  pc.zone("intel-rapl:0", "package-0", 1000000);
  pc.zone("intel-rapl:0:0", "dram", 0);
  Meter m(rapl_config(pc.root()));  // auto: RAPL is readable, so it measures
  EXPECT_EQ(m.source(), "rapl");
  EXPECT_FALSE(m.estimated());
  Span s = m.span();
  pc.set("intel-rapl:0", 1500000);  // before any phase: not counted
  s.mark(Phase::Prefill);
  pc.set("intel-rapl:0", 3500000);  // +2 J
  s.mark(Phase::Decode);
  pc.set("intel-rapl:0", 9500000);  // +6 J
  pc.set("intel-rapl:0:0", 1000000);  // +1 J
  const EnergyReport r = s.finish(4, 10);
  EXPECT_FALSE(r.estimated);
  EXPECT_EQ(r.source, "rapl");
  EXPECT_DOUBLE_EQ(r.prefill.joules, 2.0);
  EXPECT_DOUBLE_EQ(r.decode.joules, 7.0);
  EXPECT_DOUBLE_EQ(r.tokens_per_j, 14.0 / 9.0);
  EXPECT_DOUBLE_EQ(r.decode_tokens_per_j, 10.0 / 7.0);
  EXPECT_NEAR(r.energy_usd, 9 / 3.6e6 * 0.36, 1e-18);  // 0.9 micro-dollars
  EXPECT_NEAR(r.co2_g, 9 / 3.6e6 * 100, 1e-15);
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["source"], "rapl");
  EXPECT_EQ(j["estimated"], false);
  EXPECT_DOUBLE_EQ(j["decode_j"].get<double>(), 7.0);
}

TEST(MeterSpan, RepeatedPhasesAccumulate) {
  FakePowercap pc("chunks");
  pc.zone("intel-rapl:0", "package-0", 0);
  Meter m(rapl_config(pc.root()));
  Span s = m.span();
  s.mark(Phase::Prefill);
  pc.set("intel-rapl:0", 1000000);
  s.mark(Phase::Idle);
  pc.set("intel-rapl:0", 5000000);  // idle between chunks: not counted
  s.mark(Phase::Prefill);
  pc.set("intel-rapl:0", 7000000);
  const EnergyReport r = s.finish(8, 0);
  EXPECT_DOUBLE_EQ(r.prefill.joules, 3.0);
  EXPECT_DOUBLE_EQ(r.decode.joules, 0.0);
}

TEST(MeterSpan, ForcedEstimateIgnoresRapl) {
  FakePowercap pc("forced");
  pc.zone("intel-rapl:0", "package-0", 0);
  MeterConfig c = rapl_config(pc.root());
  c.energy_source = "estimate";
  Meter m(c);
  EXPECT_EQ(m.source(), "estimate");
  EXPECT_TRUE(m.estimated());
  EXPECT_TRUE(m.probes()[0].available);  // still probed and reported
}

TEST(EnergyLog, RaplRowsEveryIntervalPlusAFinalRow) {
  FakePowercap pc("log");
  pc.zone("intel-rapl:0", "package-0", 0);
  const std::string log = pc.root() + "/power.csv";
  {
    Meter m(rapl_config(pc.root()));
    m.start_log(log);
    for (int i = 1; i <= 8; ++i) {
      pc.set("intel-rapl:0", uint64_t(i) * 1000000);
      ::usleep(10000);
    }
    m.stop_log();
  }
  std::ifstream f(log);
  std::string line;
  ASSERT_TRUE(std::getline(f, line));
  EXPECT_EQ(line, "t_s,watts,joules,source");
  int rows = 0;
  double last_t = -1, last_j = -1;
  while (std::getline(f, line)) {
    double t = 0, w = 0, j = 0;
    char src[32] = {0};
    ASSERT_EQ(std::sscanf(line.c_str(), "%lf,%lf,%lf,%31s", &t, &w, &j, src), 4) << line;
    EXPECT_GT(t, last_t) << line;
    EXPECT_GE(j, last_j) << line;
    EXPECT_GE(w, 0) << line;
    EXPECT_STREQ(src, "rapl");
    last_t = t;
    last_j = j;
    ++rows;
  }
  EXPECT_GE(rows, 3);            // ~80 ms at 5 ms, loaded machines permitting, plus the final row
  EXPECT_DOUBLE_EQ(last_j, 8.0);  // the final row has everything
}

}  // namespace
}  // namespace jevons::meter
