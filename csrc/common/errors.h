// Errors of the framework-free argument checks (csrc/common): the message names the op,
// the argument and what was wrong. The Python bindings raise ValueError / TypeError with
// it (ValueError because pybind11 maps std::invalid_argument to it; TypeError through
// the translator that bind/common.cpp registers in both extension modules).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dlkern {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void throw_value_error(Args&&... args) {
  throw ValueError(str_cat(std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void throw_type_error(Args&&... args) {
  throw TypeError(str_cat(std::forward<Args>(args)...));
}

}  // namespace dlkern
