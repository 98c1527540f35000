// TokenRange: a half-open run of token rows [begin, end). Selections, cache slots and
// attention inputs are lists of ranges, so a recalled cluster is always one contiguous run.
#ifndef CLUSTERKV_CORE_TOKEN_RANGE_H_
#define CLUSTERKV_CORE_TOKEN_RANGE_H_

#include <cstdint>
#include <vector>

namespace clusterkv {

struct TokenRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  friend bool operator==(const TokenRange& a, const TokenRange& b) {
    return a.begin == b.begin && a.end == b.end;
  }
};

// Total tokens covered by `ranges` (ranges are assumed disjoint).
inline int64_t TotalTokens(const std::vector<TokenRange>& ranges) {
  int64_t n = 0;
  for (const TokenRange& r : ranges) n += r.size();
  return n;
}

// Sorts ranges by begin and merges overlapping or touching ones.
std::vector<TokenRange> NormalizeRanges(std::vector<TokenRange> ranges);

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_TOKEN_RANGE_H_
