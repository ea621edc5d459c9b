// Frequency tables: the compact serialisation (docs/format.md, "Tables") parsed into rANS
// decode slots.
#include "entropy/tables.hpp"

#include <cstring>

namespace tpde {

bool get_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) return false;
    const uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

bool read_tables(const uint8_t* src, size_t size, int contexts, int max_symbol,
                 std::unique_ptr<DecTable[]>& tables, std::vector<uint8_t>& used) {
  const uint8_t* p = src;
  const uint8_t* end = src + size;
  tables.reset(
      new DecTable[static_cast<size_t>(contexts)]);  // left uninitialised: filled per used context
  used.assign(static_cast<size_t>(contexts), 0);
  for (int c = 0; c < contexts; ++c) {
    uint64_t nsym;
    if (!get_varint(p, end, nsym) || nsym > static_cast<uint64_t>(max_symbol) + 1) return false;
    if (nsym == 0) continue;
    used[c] = 1;
    DecTable& table = tables[c];
    uint64_t cum = 0;
    int64_t last = -1;
    for (uint64_t k = 0; k < nsym; ++k) {
      uint64_t gap, fm1;
      if (!get_varint(p, end, gap) || !get_varint(p, end, fm1)) return false;
      const int64_t sym = last + 1 + static_cast<int64_t>(gap);
      if (gap > 255 || sym > max_symbol || fm1 >= kProbScale) return false;
      const uint64_t freq = fm1 + 1;
      if (cum + freq > kProbScale) return false;
      std::memset(table.symbol + cum, static_cast<int>(sym), freq);
      table.freq[sym] = static_cast<uint16_t>(freq);
      table.start[sym] = static_cast<uint16_t>(cum);
      cum += freq;
      last = sym;
    }
    if (cum != kProbScale) return false;
  }
  return p == end;
}

}  // namespace tpde
