#include "tpde/format.hpp"

#include "tpde/error.hpp"

namespace tpde {

bool dtype_valid(uint8_t code) { return code >= 1 && code <= 13; }

bool is_float(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat64 || d == DType::kFloat16 ||
         d == DType::kBFloat16;
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool: return 1;
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kInt16:
    case DType::kUInt16: return 2;
    case DType::kFloat32:
    case DType::kInt32:
    case DType::kUInt32: return 4;
    case DType::kFloat64:
    case DType::kInt64:
    case DType::kUInt64: return 8;
  }
  return 0;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kUInt16: return "uint16";
    case DType::kInt32: return "int32";
    case DType::kUInt32: return "uint32";
    case DType::kInt64: return "int64";
    case DType::kUInt64: return "uint64";
    case DType::kBool: return "bool";
  }
  return "?";
}

int exponent_bits(DType d) {
  switch (d) {
    case DType::kFloat32: return 8;
    case DType::kFloat64: return 11;
    case DType::kFloat16: return 5;
    case DType::kBFloat16: return 8;
    default: return 0;
  }
}

int mantissa_bits(DType d) {
  switch (d) {
    case DType::kFloat32: return 23;
    case DType::kFloat64: return 52;
    case DType::kFloat16: return 10;
    case DType::kBFloat16: return 7;
    default: return 0;
  }
}

const char* error_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kTruncated: return "truncated";
    case ErrorCode::kBadMagic: return "bad_magic";
    case ErrorCode::kUnsupportedVersion: return "unsupported_version";
    case ErrorCode::kBadDtype: return "bad_dtype";
    case ErrorCode::kBadShape: return "bad_shape";
    case ErrorCode::kChecksum: return "checksum";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kMissingReference: return "missing_reference";
    case ErrorCode::kReferenceMismatch: return "reference_mismatch";
    case ErrorCode::kSizeMismatch: return "size_mismatch";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kTooLarge: return "too_large";
  }
  return "unknown";
}

}  // namespace tpde
