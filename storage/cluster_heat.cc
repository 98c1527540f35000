#include "storage/cluster_heat.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/base/internal/raw_logging.h"

namespace clusterkv::storage {

ClusterHeat::ClusterHeat(const ClusterHeatOptions& options) : options_(options) {
  ABSL_RAW_CHECK(options_.half_life_fetches > 0.0 && options_.put_score >= 0.0 && options_.max_clusters >= 1 &&
                     options_.map_fetches_per_bucket >= 1 && options_.map_buckets >= 1 &&
                     options_.map_sequences >= 1 && options_.map_bucket_clusters >= 1,
                 "ClusterHeatOptions out of range (the daemon validates its flags first)");
}

double ClusterHeat::DecayedLocked(const Entry& e) const {
  const double age = static_cast<double>(clock_ - e.at);
  return e.score * std::exp2(-age / options_.half_life_fetches);
}

void ClusterHeat::RecordFetch(const SequenceKey& sequence, absl::Span<const ClusterId> clusters) {
  absl::MutexLock lock(&mu_);
  ++clock_;
  ++stats_.fetches;
  stats_.recalls += clusters.size();
  auto& table = scores_[sequence];
  for (const ClusterId& c : clusters) {
    auto [it, inserted] = table.try_emplace(c);
    Entry& e = it->second;
    if (inserted) ++tracked_;
    e.score = DecayedLocked(e) + 1.0;
    e.at = clock_;
    e.recalled = true;
  }
  if (tracked_ > options_.max_clusters) PruneLocked();
  RecordMapLocked(sequence, clusters);
}

// Forgets the colder half of every score (by decayed value), so that pruning runs once per
// max_clusters / 2 new clusters at most.
void ClusterHeat::PruneLocked() {
  std::vector<double> all;
  all.reserve(tracked_);
  for (const auto& [seq, table] : scores_) {
    for (const auto& [c, e] : table) all.push_back(DecayedLocked(e));
  }
  const size_t keep = options_.max_clusters / 2;
  if (all.size() <= keep) return;
  // The keep-th hottest score: entries strictly colder go, ties at it go too past `keep`.
  std::nth_element(all.begin(), all.begin() + static_cast<ptrdiff_t>(keep), all.end(),
                   std::greater<double>());
  const double threshold = all[keep];
  size_t kept_at_threshold = 0;
  size_t kept_above = 0;
  for (double v : all) kept_above += v > threshold ? 1 : 0;
  for (auto seq_it = scores_.begin(); seq_it != scores_.end();) {
    auto& table = seq_it->second;
    for (auto it = table.begin(); it != table.end();) {
      const double v = DecayedLocked(it->second);
      const bool keep_it =
          v > threshold || (v == threshold && kept_above + kept_at_threshold++ < keep);
      if (keep_it) {
        ++it;
      } else {
        table.erase(it++);
        --tracked_;
        ++stats_.forgotten;
      }
    }
    if (table.empty()) {
      scores_.erase(seq_it++);
    } else {
      ++seq_it;
    }
  }
}

void ClusterHeat::RecordMapLocked(const SequenceKey& sequence,
                                  absl::Span<const ClusterId> clusters) {
  auto it = maps_.find(sequence);
  if (it == maps_.end()) {
    if (maps_.size() >= static_cast<size_t>(options_.map_sequences)) {
      // Keep the sequences fetched most recently: drop the one idle longest.
      auto oldest = std::min_element(maps_.begin(), maps_.end(), [](const auto& a, const auto& b) {
        return a.second.last_fetch < b.second.last_fetch;
      });
      maps_.erase(oldest);
    }
    it = maps_.try_emplace(sequence).first;
  }
  SequenceMap& m = it->second;
  if (m.fetches % static_cast<uint64_t>(options_.map_fetches_per_bucket) == 0) {
    m.buckets.emplace_back();
    if (m.buckets.size() > static_cast<size_t>(options_.map_buckets)) m.buckets.pop_front();
  }
  ++m.fetches;
  m.last_fetch = clock_;
  Bucket& b = m.buckets.back();
  for (const ClusterId& c : clusters) {
    auto found = b.counts.find(c);
    if (found != b.counts.end()) {
      ++found->second;
    } else if (b.counts.size() < static_cast<size_t>(options_.map_bucket_clusters)) {
      b.counts.emplace(c, 1);
    } else {
      ++b.other;
    }
  }
}

void ClusterHeat::RecordPut(const SequenceKey& sequence, const ClusterId& cluster) {
  if (options_.put_score <= 0.0) return;
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = scores_[sequence].try_emplace(cluster);
  if (!inserted) return;
  ++tracked_;
  it->second.score = options_.put_score;
  it->second.at = clock_;
  if (tracked_ > options_.max_clusters) PruneLocked();
}

double ClusterHeat::Score(const SequenceKey& sequence, const ClusterId& cluster) const {
  absl::MutexLock lock(&mu_);
  auto seq = scores_.find(sequence);
  if (seq == scores_.end()) return 0.0;
  auto it = seq->second.find(cluster);
  return it == seq->second.end() ? 0.0 : DecayedLocked(it->second);
}

std::vector<ClusterHeat::Heat> ClusterHeat::Scores(absl::Span<const BlockKey* const> keys) const {
  std::vector<Heat> out(keys.size());
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto seq = scores_.find(keys[i]->sequence);
    if (seq == scores_.end()) continue;
    auto it = seq->second.find(keys[i]->cluster);
    if (it != seq->second.end()) out[i] = Heat{DecayedLocked(it->second), it->second.recalled};
  }
  return out;
}

void ClusterHeat::DropSequence(const SequenceKey& sequence) {
  absl::MutexLock lock(&mu_);
  if (auto it = scores_.find(sequence); it != scores_.end()) {
    tracked_ -= it->second.size();
    scores_.erase(it);
  }
  maps_.erase(sequence);
}

std::optional<HeatMap> ClusterHeat::Map(const SequenceKey& sequence, int32_t max_rows) const {
  absl::MutexLock lock(&mu_);
  auto it = maps_.find(sequence);
  if (it == maps_.end()) return std::nullopt;
  const SequenceMap& m = it->second;
  HeatMap out;
  out.fetches_per_bucket = options_.map_fetches_per_bucket;
  out.fetches = m.fetches;
  const uint64_t per = static_cast<uint64_t>(options_.map_fetches_per_bucket);
  const uint64_t last_start = m.fetches == 0 ? 0 : (m.fetches - 1) / per * per;
  out.first_fetch = last_start - (m.buckets.size() - 1) * per;
  // Rows: the clusters with the most recalls over the kept buckets; ties in id order.
  absl::flat_hash_map<ClusterId, uint64_t> totals;
  for (const Bucket& b : m.buckets) {
    for (const auto& [c, n] : b.counts) totals[c] += n;
  }
  std::vector<std::pair<ClusterId, uint64_t>> ranked(totals.begin(), totals.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (ranked.size() > static_cast<size_t>(std::max(max_rows, 0))) {
    ranked.resize(static_cast<size_t>(std::max(max_rows, 0)));
  }
  for (const auto& [c, n] : ranked) {
    out.rows.push_back(c);
    std::vector<uint32_t> row;
    row.reserve(m.buckets.size());
    for (const Bucket& b : m.buckets) {
      auto f = b.counts.find(c);
      row.push_back(f == b.counts.end() ? 0 : f->second);
    }
    out.counts.push_back(std::move(row));
  }
  for (const Bucket& b : m.buckets) out.other.push_back(b.other);
  return out;
}

ClusterHeatStats ClusterHeat::Stats() const {
  absl::MutexLock lock(&mu_);
  ClusterHeatStats out = stats_;
  out.tracked_clusters = tracked_;
  return out;
}

}  // namespace clusterkv::storage
