#include "core/output_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace jevons {
namespace fs = std::filesystem;

void check_output(const std::string& out, const std::vector<std::string>& inputs, bool force) {
  struct stat o {};
  const bool exists = ::stat(out.c_str(), &o) == 0;
  std::error_code ec;
  const fs::path out_abs = fs::weakly_canonical(fs::absolute(out, ec), ec);
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    struct stat i {};
    if (::stat(in.c_str(), &i) != 0) continue;  // not there: the command says so itself
    if (exists && o.st_dev == i.st_dev && o.st_ino == i.st_ino)
      fail("the output {} is the input {}: writing it would destroy it; choose another output file", out, in);
    if (S_ISDIR(i.st_mode)) {
      const fs::path dir = fs::weakly_canonical(fs::absolute(in, ec), ec);
      auto rel = out_abs.lexically_relative(dir);
      if (!rel.empty() && *rel.begin() != "..")
        fail("the output {} lies inside the input directory {}: write it somewhere else", out, in);
    }
  }
  if (exists && S_ISDIR(o.st_mode)) fail("the output {} is a directory: give a file name", out);
  if (exists && S_ISREG(o.st_mode) && !force) fail("{} exists: add --force to replace it", out);  // /dev/null, a pipe: fine
}

OutputFile::OutputFile(std::string path) : path_(std::move(path)) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    // A device or a pipe (/dev/null, /dev/stdout): written in place, nothing to rename.
    f_ = std::fopen(path_.c_str(), "wb");
    if (!f_) fail("cannot write {}: {}", path_, std::strerror(errno));
    return;
  }
  static std::atomic<int> counter{0};
  const fs::path p(path_);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  tmp_ = (dir / ("." + p.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++))).string();
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail("cannot write in {} (for {}): {}", dir.string(), path_, std::strerror(errno));
}

OutputFile::~OutputFile() {
  if (f_) std::fclose(f_);
  if (!committed_ && !tmp_.empty()) std::remove(tmp_.c_str());
}

void OutputFile::write(const void* data, size_t n) {
  if (n > 0 && std::fwrite(data, 1, n, f_) != n)
    fail("error writing {} ({}); nothing was written there", path_, errno ? std::strerror(errno) : "disk full?");
}

void OutputFile::commit() {
  const bool ok = std::fflush(f_) == 0 && (tmp_.empty() || ::fsync(::fileno(f_)) == 0);
  const int err = errno;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok || !closed) fail("error writing {} ({}); nothing was written there", path_, std::strerror(err));
  committed_ = true;
  if (tmp_.empty()) return;  // written in place
  committed_ = false;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot move the finished file into {}: {}", path_, std::strerror(errno));
  committed_ = true;
}

}  // namespace jevons
