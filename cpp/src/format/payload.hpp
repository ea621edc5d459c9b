// Payload section layout shared by encoder and decoder (docs/format.md, "Payload").
#pragma once
#include <cstdint>

namespace tpde {

// Fixed payload prefix: value scheme, position scheme, context scheme, reserved,
// context parameter (u16), reserved (u16), coded count (u64).
constexpr size_t kPayloadPrefix = 16;

}  // namespace tpde
