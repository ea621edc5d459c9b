// Frequency tables: alphabet and context limits, and the parser of the compact table
// serialisation (the encoder's side is encode/frequencies.hpp).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "entropy/rans.hpp"

namespace tpde {

constexpr int kAlphabet = 256;
constexpr int kMaxContexts = 64;

using Histogram = std::vector<uint64_t>;  // kAlphabet counts per context, flattened

// Parses tables into decode slots; returns false on malformed input.
// used[c] tells which contexts have a table.
bool read_tables(const uint8_t* src, size_t size, int contexts, int max_symbol,
                 std::unique_ptr<DecTable[]>& tables, std::vector<uint8_t>& used);

bool get_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v);

}  // namespace tpde
