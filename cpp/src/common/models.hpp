// Frequency models: histograms per context, normalisation to kProbScale, cost estimates,
// and the compact table serialisation shared by encoder and decoder.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "rans.hpp"

namespace tpde {

constexpr int kAlphabet = 256;
constexpr int kMaxContexts = 64;

using Histogram = std::vector<uint64_t>;  // kAlphabet counts per context, flattened

// Scale counts (sum > 0) to frequencies summing to kProbScale, each used symbol >= 1.
void normalize_frequencies(const uint64_t* counts, uint32_t* freqs);

// Estimated coded bits of one context's symbols (entropy x scale, for counts taken on a
// sample that stands for scale times as many values) plus its table.
double estimate_context_bits(const uint64_t* counts, double scale = 1.0);

// Tables: for each context, varint(number of used symbols), then per used symbol
// varint(symbol gap) and varint(freq - 1). An unused context is a single 0.
void write_tables(const std::vector<uint32_t>& freqs, int contexts, std::vector<uint8_t>& out);

// Parses tables into decode slots; returns false on malformed input.
// used[c] tells which contexts have a table.
bool read_tables(const uint8_t* src, size_t size, int contexts, int max_symbol,
                 std::unique_ptr<DecTable[]>& tables, std::vector<uint8_t>& used);

void put_varint(std::vector<uint8_t>& out, uint64_t v);
bool get_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v);

}  // namespace tpde
