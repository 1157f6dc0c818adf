// Errors: one exception type carrying a message a user can act on.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace jevons {

// Thrown for any bad input (file, prompt, flag). The CLI prints what() and exits 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace jevons
