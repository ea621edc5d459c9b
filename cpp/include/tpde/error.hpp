// tpde error codes and the one exception type the core throws.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace tpde {

// Pinned values: never renumber, never reuse (docs/format.md lists them).
enum class ErrorCode : int {
  kTruncated = 1,           // fewer bytes than a header or length field says
  kBadMagic = 2,            // not a tpde chunk
  kUnsupportedVersion = 3,  // format version newer/older than this build decodes
  kBadDtype = 4,            // unknown dtype code, or dtype/itemsize that does not fit
  kBadShape = 5,            // ndim or extents invalid
  kChecksum = 6,            // header or payload CRC32C mismatch
  kCorrupt = 7,             // payload inconsistent with itself
  kMissingReference = 8,    // delta chunk decoded without its reference
  kReferenceMismatch = 9,   // reference given does not match the fingerprint
  kSizeMismatch = 10,       // output or reference buffer of the wrong size
  kInvalidArgument = 11,    // caller error on encode
  kTooLarge = 12,           // chunk over the format's size limit
};

const char* error_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) {
  throw Error(code, message);
}

}  // namespace tpde
