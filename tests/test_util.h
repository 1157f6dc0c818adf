// Helpers shared by the tests: where ../shared is, reading files.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/kv_cache.h"

namespace jevons::test {

// ../shared beside the project, or $JEVONS_SHARED_DIR. In CI it is always present.
inline std::string shared_dir() {
  if (const char* env = std::getenv("JEVONS_SHARED_DIR"); env && *env) return env;
  return std::string(JEVONS_SOURCE_DIR) + "/../shared";
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct ShellResult {
  int code = -1;  // exit code, or 128 + signal
  std::string out, err;
};

// Runs a shell command line, capturing stdout and stderr (for CLI tests).
inline ShellResult run_shell(const std::string& cmd_line) {
  static int counter = 0;
  const std::string err_path = (std::filesystem::temp_directory_path() /
                                ("jevons_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".stderr"))
                                   .string();
  ShellResult r;
  FILE* p = popen((cmd_line + " 2>" + err_path).c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err_path);
  std::filesystem::remove(err_path);
  return r;
}

// A raw little-endian float32 file (the golden logits).
// Fills every position of a KV cache with NaN: the cache's memory is not cleared
// (runtime/kv_cache.h), so a model that read a position before writing it would give
// NaN logits.
inline void poison_kv_cache(KvCache& cache) {
  const float nan = std::nanf("");
  for (int p = 0; p < cache.n_ctx(); ++p)
    for (int l = 0; l < cache.n_layer(); ++l) {
      for (int h = 0; h < cache.n_heads(); ++h) {
        std::fill_n(reinterpret_cast<float*>(cache.k(l, p)) + h * cache.k_head_stride(), cache.k_dim() / cache.n_heads(), nan);
        std::fill_n(reinterpret_cast<float*>(cache.v(l, p)) + h * cache.v_head_stride(), cache.v_dim() / cache.n_heads(), nan);
      }
    }
}

inline std::vector<float> read_f32(const std::string& path) {
  const std::string s = read_file(path);
  std::vector<float> v(s.size() / sizeof(float));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(float));
  return v;
}

// The golden README's metric: max over positions p of max_v |x - ref| / std_v(ref[p]).
// worst_pos (optional) receives the position where it is reached.
inline double max_rel_diff(const std::vector<float>& x, const std::vector<float>& ref, int n_vocab, int* worst_pos = nullptr) {
  double worst = 0.0;
  for (size_t p = 0; p < ref.size() / size_t(n_vocab); ++p) {
    const float* r = &ref[p * size_t(n_vocab)];
    const float* e = &x[p * size_t(n_vocab)];
    double mean = 0, var = 0, maxdiff = 0;
    for (int v = 0; v < n_vocab; ++v) mean += r[v];
    mean /= n_vocab;
    for (int v = 0; v < n_vocab; ++v) var += (r[v] - mean) * (r[v] - mean);
    for (int v = 0; v < n_vocab; ++v) maxdiff = std::max(maxdiff, double(std::fabs(e[v] - r[v])));
    const double rp = maxdiff / std::sqrt(var / n_vocab);
    if (rp > worst) {
      worst = rp;
      if (worst_pos) *worst_pos = int(p);
    }
  }
  return worst;
}

}  // namespace jevons::test
