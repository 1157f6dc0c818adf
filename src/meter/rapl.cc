// RAPL through Linux powercap: <root>/intel-rapl:N[:M]/{name, energy_uj, max_energy_range_uj}.
// Package domains ("package-N") and DRAM domains ("dram") are summed; core/uncore are
// inside the package and psys covers the whole platform, so both are skipped to
// avoid double counting. energy_uj counts microjoules and wraps to 0 after
// max_energy_range_uj, so the counters are polled (the Meter does, every sample_ms)
// often enough to see every wrap: at most one wrap between two reads is assumed.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "meter/sources.h"

namespace jevons::meter {
namespace {

struct Read {
  bool ok = false;
  std::string text;
  int err = 0;
};

Read read_small_file(const std::string& path) {
  Read r;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.err = errno;
    return r;
  }
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof(buf));
  r.err = n < 0 ? errno : 0;
  ::close(fd);
  if (n < 0) return r;
  r.text.assign(buf, size_t(n));
  while (!r.text.empty() && (r.text.back() == '\n' || r.text.back() == ' ')) r.text.pop_back();
  r.ok = true;
  return r;
}

std::optional<uint64_t> parse_u64(const std::string& s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Why a counter file cannot be used, with what to do about it.
std::string unreadable(const std::string& path, int err) {
  if (err == EACCES || err == EPERM)
    return fmt::format(
        "{}: permission denied (since Linux 5.10 energy_uj is readable only by root, after CVE-2020-8694); "
        "run as root or grant read access: sudo chmod a+r {}/energy_uj",
        path, std::filesystem::path(path).parent_path().parent_path().string() + "/intel-rapl:*");
  return fmt::format("{}: {}", path, err ? std::strerror(err) : "not a number");
}

struct Domain {
  std::string zone, name, energy_path;
  uint64_t max_range = 0, last = 0;
  double joules = 0;
};

class RaplSource final : public Source {
 public:
  explicit RaplSource(std::vector<Domain> d) : domains_(std::move(d)) {}
  const std::string& name() const override { return name_; }
  std::string detail() const override {
    std::string s;
    for (const Domain& d : domains_) s += fmt::format("{}{} ({})", s.empty() ? "" : ", ", d.name, d.zone);
    return s;
  }
  bool measured() const override { return true; }
  bool needs_polling() const override { return true; }
  double joules_at(double) override {
    std::lock_guard<std::mutex> lock(mu_);
    double total = 0;
    for (Domain& d : domains_) {
      const Read r = read_small_file(d.energy_path);
      const std::optional<uint64_t> v = r.ok ? parse_u64(r.text) : std::nullopt;
      if (!v) {
        note_error(unreadable(d.energy_path, r.ok ? 0 : r.err));
      } else {
        uint64_t delta;
        if (*v >= d.last) delta = *v - d.last;
        else if (d.max_range >= d.last) delta = (d.max_range - d.last) + *v;  // wrapped once
        else delta = *v;  // the range file lied; count from zero
        d.last = *v;
        d.joules += double(delta) * 1e-6;
      }
      total += d.joules;
    }
    return total;
  }
  std::vector<Component> components() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Component> out;
    for (const Domain& d : domains_) out.push_back({d.name + " [" + d.zone + "]", d.joules});
    return out;
  }
  std::vector<std::string> errors() override {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  void note_error(const std::string& e) {
    if (std::find(errors_.begin(), errors_.end(), e) == errors_.end()) errors_.push_back(e);
  }
  const std::string name_ = "rapl";
  std::mutex mu_;
  std::vector<Domain> domains_;
  std::vector<std::string> errors_;
};

}  // namespace

std::unique_ptr<Source> open_rapl(const std::string& root, Probe& probe) {
  probe = Probe{};
  probe.name = "rapl";
  probe.measured = true;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(root, ec)) {
    probe.detail = fmt::format("{}: not present (no powercap/RAPL driver, as in most virtual machines)", root);
    return nullptr;
  }
  std::vector<std::string> zones;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.rfind("intel-rapl:", 0) == 0) zones.push_back(n);
  }
  if (ec) {
    probe.detail = fmt::format("{}: cannot list: {}", root, ec.message());
    return nullptr;
  }
  if (zones.empty()) {
    probe.detail = fmt::format("{}: no intel-rapl domains (no RAPL here, as in most virtual machines)", root);
    return nullptr;
  }
  std::sort(zones.begin(), zones.end());

  std::vector<Domain> domains;
  bool any_package = false, any_dram = false;
  std::string package_error;
  for (const std::string& z : zones) {
    const std::string dir = root + "/" + z;
    const Read name = read_small_file(dir + "/name");
    if (!name.ok) {
      probe.notices.push_back(unreadable(dir + "/name", name.err));
      continue;
    }
    const bool package = name.text.rfind("package", 0) == 0, dram = name.text == "dram";
    if (!package && !dram) continue;  // core, uncore (inside the package), psys (whole platform)
    any_package |= package;
    any_dram |= dram;
    Domain d;
    d.zone = z;
    d.name = name.text;
    d.energy_path = dir + "/energy_uj";
    const Read range = read_small_file(dir + "/max_energy_range_uj");
    const std::optional<uint64_t> max = range.ok ? parse_u64(range.text) : std::nullopt;
    const Read energy = read_small_file(d.energy_path);
    const std::optional<uint64_t> e = energy.ok ? parse_u64(energy.text) : std::nullopt;
    std::string problem;
    if (!e) problem = unreadable(d.energy_path, energy.ok ? 0 : energy.err);
    else if (!max) problem = unreadable(dir + "/max_energy_range_uj", range.ok ? 0 : range.err) + " (needed for wrap-around)";
    if (!problem.empty()) {
      if (package && package_error.empty()) package_error = problem;
      probe.notices.push_back(fmt::format("{} domain skipped: {}", d.name, problem));
      continue;
    }
    d.max_range = *max;
    d.last = *e;
    domains.push_back(std::move(d));
  }
  const bool have_package = std::any_of(domains.begin(), domains.end(), [](const Domain& d) { return d.name != "dram"; });
  if (!any_package) {
    probe.detail = fmt::format("{}: the intel-rapl zones have no package domain", root);
    return nullptr;
  }
  if (!have_package) {
    probe.detail = "no readable package domain: " + package_error;
    return nullptr;
  }
  if (!any_dram) probe.notices.push_back("no DRAM domain: DRAM energy is not included (common on client CPUs and AMD)");
  auto s = std::make_unique<RaplSource>(std::move(domains));
  probe.available = true;
  probe.detail = s->detail();
  return s;
}

}  // namespace jevons::meter
