// Helpers shared by the tests: where ../shared is, reading files.
#pragma once
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

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

}  // namespace jevons::test
