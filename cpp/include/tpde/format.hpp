// Chunk byte format constants. Mirrors docs/format.md, which is normative.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tpde {

constexpr uint8_t kMagic[4] = {'T', 'P', 'D', 'E'};
constexpr uint8_t kFormatVersion = 5;        // written by this build (default level)
constexpr uint8_t kFastFormatVersion = 6;    // written by the fast level (value scheme 3)
constexpr uint8_t kNewestFormatVersion = 6;  // newest one it decodes
constexpr uint8_t kOldestFormatVersion =
    1;  // oldest one it still decodes (docs/format.md, version log)
constexpr size_t kMaxNdim = 32;
constexpr size_t kFixedHeaderSize = 32;  // bytes before the shape
constexpr uint64_t kMaxChunkBytes = uint64_t(1) << 36;

enum class DType : uint8_t {
  kFloat32 = 1,
  kFloat64 = 2,
  kFloat16 = 3,
  kBFloat16 = 4,
  kInt8 = 5,
  kUInt8 = 6,
  kInt16 = 7,
  kUInt16 = 8,
  kInt32 = 9,
  kUInt32 = 10,
  kInt64 = 11,
  kUInt64 = 12,
  kBool = 13,
};

enum class Mode : uint8_t { kStandalone = 0, kDelta = 1 };

constexpr uint8_t kFlagPrevReference = 1;  // header flag: coded with the prev-reference context
constexpr uint8_t kFlagLossy = 2;          // header flag: payload starts with a lossy block

// Payload section codes.
enum class ValueScheme : uint8_t { kStored = 0, kLogBucket = 1, kFloatSplit = 2 };
enum class PositionScheme : uint8_t { kInline = 0, kEliasGaps = 1 };
enum class ContextScheme : uint8_t {
  kNone = 0,          // one model
  kRefExponent = 1,   // exponent of the reference value (delta, float)
  kPrevResidual = 2,  // magnitude class of the reference's own residual (needs prev reference)
  kNeighbour = 3,     // magnitude class of the previous coded value in this chunk
  kPrevExponent = 4,  // exponent of the previous value (standalone float)
  kRefExponentPrevResidual = 5,  // reference exponent x bucket of the prev-reference residual class
};
constexpr int kContextSchemeCount = 6;

bool is_float(DType dtype);
size_t dtype_size(DType dtype);
bool dtype_valid(uint8_t code);
const char* dtype_name(DType dtype);
int exponent_bits(DType dtype);  // 0 for integers
int mantissa_bits(DType dtype);  // 0 for integers

}  // namespace tpde
