#include "engine/kv_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "runtime/kv_cache.h"

namespace jevons::engine {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'J', 'V', 'K', 'V', 'B', 'L', 'K', '1'};
constexpr int kB = KvBlockPool::kBlockTokens;

struct Header {
  char magic[8];
  uint64_t salt, hash, check, parent_hash, payload_bytes;
  uint32_t block_tokens, reserved;
  uint64_t payload_fnv;
};
static_assert(sizeof(Header) == 64);

uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Writes all of n bytes; false on any error.
bool write_all(int fd, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

bool read_all(int fd, void* data, size_t n) {
  uint8_t* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= size_t(r);
  }
  return true;
}

}  // namespace

uint64_t KvDiskCache::check_hash(uint64_t parent_check, const int32_t* tokens) {
  uint64_t h = fnv1a(reinterpret_cast<const uint8_t*>(&parent_check), 8, 0x9e3779b97f4a7c15ull);
  return fnv1a(reinterpret_cast<const uint8_t*>(tokens), sizeof(int32_t) * kB, h);
}

KvDiskCache::KvDiskCache(std::string dir, uint64_t max_bytes, uint64_t salt, size_t block_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes), salt_(salt), block_bytes_(block_bytes) {
  std::error_code ec;
  if (fs::exists(dir_, ec) && !fs::is_directory(dir_, ec)) fail("--kv-cache-dir {} is not a directory", dir_);
  fs::create_directories(dir_, ec);
  if (ec) fail("cannot create --kv-cache-dir {}: {}", dir_, ec.message());
  if (::access(dir_.c_str(), W_OK) != 0) fail("cannot write to --kv-cache-dir {}", dir_);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() != 21 || name.compare(16, 5, ".kvb1") != 0 || !e.is_regular_file(ec)) continue;
    uint64_t h = 0;
    if (std::sscanf(name.c_str(), "%16lx", &h) != 1) continue;
    present_.insert(h);
    stats_.files += 1;
    stats_.bytes += int64_t(e.file_size(ec));
  }
  warn_ = [](const std::string& m) { std::fprintf(stderr, "[jevons] warning: %s\n", m.c_str()); };
}

std::string KvDiskCache::path_of(uint64_t hash) const { return fmt::format("{}/{:016x}.kvb1", dir_, hash); }

void KvDiskCache::warn(const std::string& msg) {
  if (warn_) warn_(msg);
}

bool KvDiskCache::contains(uint64_t hash) const {
  std::lock_guard<std::mutex> lock(mu_);
  return present_.count(hash) > 0;
}

bool KvDiskCache::save(uint64_t hash, uint64_t check, uint64_t parent_hash, const int32_t* tokens, const uint8_t* payload) {
  const auto t0 = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (present_.count(hash)) return true;
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.salt = salt_;
  h.hash = hash;
  h.check = check;
  h.parent_hash = parent_hash;
  h.payload_bytes = block_bytes_;
  h.block_tokens = kB;
  h.payload_fnv = fnv1a(payload, block_bytes_);
  const std::string path = path_of(hash);
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && write_all(fd, &h, sizeof h) && write_all(fd, tokens, sizeof(int32_t) * kB) &&
            write_all(fd, payload, block_bytes_);
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  if (ok) ok = ::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    ::unlink(tmp.c_str());
    if (!save_warned_)
      warn(fmt::format("cannot write KV cache file {} ({}); the disk tier keeps what it has", path, std::strerror(errno)));
    save_warned_ = true;
    return false;
  }
  present_.insert(hash);
  stats_.files += 1;
  stats_.saved += 1;
  const int64_t size = int64_t(sizeof h + sizeof(int32_t) * kB + block_bytes_);
  stats_.bytes += size;
  stats_.save_bytes += size;
  stats_.save_s += seconds_since(t0);
  enforce_cap_locked();
  return true;
}

bool KvDiskCache::load(uint64_t hash, uint64_t check, uint64_t parent_hash, const int32_t* tokens, uint8_t* payload) {
  const auto t0 = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (!present_.count(hash)) {
    ++stats_.misses;
    return false;
  }
  const std::string path = path_of(hash);
  auto skip = [&](const char* why) {
    warn(fmt::format("KV cache file {} skipped: {}", path, why));
    ++stats_.skipped;
    present_.erase(hash);  // not looked at again; a good copy written later replaces it
    return false;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    present_.erase(hash);  // deleted by someone else
    ++stats_.misses;
    return false;
  }
  struct stat st {};
  Header h{};
  std::vector<int32_t> file_tokens(static_cast<size_t>(kB));
  const size_t want = sizeof h + sizeof(int32_t) * kB + block_bytes_;
  bool read_ok = ::fstat(fd, &st) == 0 && read_all(fd, &h, sizeof h);
  if (read_ok && size_t(st.st_size) == want) read_ok = read_all(fd, file_tokens.data(), sizeof(int32_t) * kB) && read_all(fd, payload, block_bytes_);
  ::close(fd);
  if (!read_ok || size_t(st.st_size) < sizeof h) return skip("truncated or unreadable");
  if (std::memcmp(h.magic, kMagic, 8) != 0) return skip("not a jevons KV block file");
  if (h.salt != salt_) return skip("written for another model or KV type");
  if (size_t(st.st_size) != want || h.payload_bytes != block_bytes_ || h.block_tokens != uint32_t(kB))
    return skip("wrong size (truncated, or another KV layout)");
  if (h.hash != hash || h.check != check || h.parent_hash != parent_hash ||
      !std::equal(file_tokens.begin(), file_tokens.end(), tokens))
    return skip("holds another prefix");
  if (fnv1a(payload, block_bytes_) != h.payload_fnv) return skip("checksum mismatch (corrupt)");
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // recently used: evicted last
  ++stats_.hits;
  stats_.load_bytes += int64_t(want);
  stats_.load_s += seconds_since(t0);
  return true;
}

void KvDiskCache::enforce_cap_locked() {
  if (max_bytes_ == 0 || uint64_t(stats_.bytes) <= max_bytes_) return;
  // Least recently used first (modification time: written, or touched by a hit).
  struct Entry {
    fs::file_time_type t;
    fs::path p;
    uint64_t size;
  };
  std::vector<Entry> entries;
  std::error_code ec;
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() != 21 || name.compare(16, 5, ".kvb1") != 0) continue;
    const uint64_t size = e.file_size(ec);
    entries.push_back({e.last_write_time(ec), e.path(), size});
    total += int64_t(size);
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.t < b.t; });
  for (const Entry& e : entries) {
    if (uint64_t(total) <= max_bytes_) break;
    if (!fs::remove(e.p, ec)) continue;
    total -= int64_t(e.size);
    uint64_t h = 0;
    if (std::sscanf(e.p.filename().c_str(), "%16lx", &h) == 1) present_.erase(h);
    ++stats_.evicted;
  }
  stats_.bytes = total;
  stats_.files = int64_t(present_.size());
}

KvDiskStats KvDiskCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

uint64_t model_identity(const ModelSource& src) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) { h = fnv1a(static_cast<const uint8_t*>(p), n, h); };
  for (const GgufTensor* t : src.tensor_list()) {
    mix(t->name.data(), t->name.size());
    const uint32_t type = uint32_t(t->type);
    mix(&type, 4);
    for (int64_t d : t->dims) mix(&d, 8);
    if (!t->data || t->nbytes == 0) continue;
    const size_t n = std::min<size_t>(64, t->nbytes);
    for (size_t at : {size_t(0), t->nbytes / 3, 2 * (t->nbytes / 3), t->nbytes - n})
      mix(t->data + std::min(at, t->nbytes - n), n);
  }
  return h;
}

}  // namespace jevons::engine
