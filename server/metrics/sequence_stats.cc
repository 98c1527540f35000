#include "server/metrics/sequence_stats.h"

#include <algorithm>

namespace clusterkv::server::metrics {

void SequenceStatsBook::Add(const std::string& tenant, const std::string& sequence,
                            const SequenceReport& report) {
  absl::MutexLock lock(&mu_);
  Key key(tenant, sequence);
  auto it = sequences_.find(key);
  if (it == sequences_.end()) {
    if (sequences_.size() >= static_cast<size_t>(std::max(options_.max_sequences, 1))) {
      auto stalest = std::min_element(sequences_.begin(), sequences_.end(),
                                      [](const auto& a, const auto& b) {
                                        return a.second.last_add < b.second.last_add;
                                      });
      sequences_.erase(stalest);
    }
    it = sequences_.emplace(key, Entry()).first;
    it->second.history.tenant = tenant;
    it->second.history.sequence = sequence;
  }
  Entry& e = it->second;
  e.last_add = ++adds_;
  ++e.history.reports;
  e.history.points.push_back(report);
  while (e.history.points.size() > static_cast<size_t>(std::max(options_.max_points, 1))) {
    e.history.points.pop_front();
  }
}

void SequenceStatsBook::Drop(const std::string& tenant, const std::string& sequence) {
  absl::MutexLock lock(&mu_);
  sequences_.erase(Key(tenant, sequence));
}

std::vector<SequenceHistory> SequenceStatsBook::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<SequenceHistory> out;
  out.reserve(sequences_.size());
  for (const auto& [key, e] : sequences_) out.push_back(e.history);
  return out;
}

bool SequenceStatsBook::Get(const std::string& tenant, const std::string& sequence,
                            SequenceHistory* out) const {
  absl::MutexLock lock(&mu_);
  auto it = sequences_.find(Key(tenant, sequence));
  if (it == sequences_.end()) return false;
  *out = it->second.history;
  return true;
}

}  // namespace clusterkv::server::metrics
