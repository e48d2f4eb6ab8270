// The error kinds of DESIGN §4. Host code (backends, bindings) throws moekit::Error; the addon
// turns each kind into the matching JavaScript class from lib/errors.ts.
#pragma once

#include <stdexcept>
#include <string>

namespace moekit {

enum class ErrorKind { Shape, DType, Device, Config, Comm, Disposed, Format, Argument };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace moekit
