// Encoder side of the frequency tables: counts -> frequencies summing to kProbScale, cost
// estimates for the plan choice, and the table serialisation (format in entropy/tables.hpp).
#pragma once
#include <cstdint>
#include <vector>

#include "entropy/tables.hpp"

namespace tpde {

// Scale counts (sum > 0) to frequencies summing to kProbScale, each used symbol >= 1.
void normalize_frequencies(const uint64_t* counts, uint32_t* freqs);

// Estimated coded bits of one context's symbols (entropy x scale, for counts taken on a
// sample that stands for scale times as many values) plus its table.
double estimate_context_bits(const uint64_t* counts, double scale = 1.0);

// Tables: for each context, varint(number of used symbols), then per used symbol
// varint(symbol gap) and varint(freq - 1). An unused context is a single 0.
void write_tables(const std::vector<uint32_t>& freqs, int contexts, std::vector<uint8_t>& out);

void put_varint(std::vector<uint8_t>& out, uint64_t v);

}  // namespace tpde
