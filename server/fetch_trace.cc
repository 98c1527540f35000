#include "server/fetch_trace.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"

namespace clusterkv::server {

void FetchTrace::AddBlocksLocked(int seq, const SequenceKey& sequence,
                                 absl::Span<const ClusterId> clusters,
                                 const storage::TieredStore& store) {
  const ClusterId* last = nullptr;  // the previous block written on the current line
  for (const ClusterId& c : clusters) {
    const storage::BlockKey key{sequence, c};
    const std::optional<uint64_t> bytes = store.BlockBytes(key);
    if (!bytes.has_value() || !sized_.insert(key).second) continue;
    if (last != nullptr && last->head == c.head && last->cluster + 1 == c.cluster) {
      absl::StrAppend(&text_, ",", *bytes);
    } else {
      if (last != nullptr) text_.push_back('\n');
      absl::StrAppend(&text_, "B ", seq, " ", c.head.layer, ".", c.head.kv_head, ".", c.cluster,
                      " ", *bytes);
    }
    last = &c;
  }
  if (last != nullptr) text_.push_back('\n');
}

void FetchTrace::Record(const SequenceKey& sequence, absl::Span<const ClusterId> clusters,
                        const storage::TieredStore& store) {
  absl::MutexLock lock(&mu_);
  if (text_.size() >= max_bytes_) {
    ++dropped_;
    return;
  }
  auto [it, first] = sequences_.try_emplace(sequence, static_cast<int>(sequences_.size()));
  const int seq = it->second;
  if (text_.empty()) text_ = "# clusterkv fetch trace v1 (server/fetch_trace.h)\n";
  if (first) AddBlocksLocked(seq, sequence, store.ListBlocks(sequence), store);
  std::vector<ClusterId> unsized;
  for (const ClusterId& c : clusters) {
    if (!sized_.contains(storage::BlockKey{sequence, c})) unsized.push_back(c);
  }
  if (!unsized.empty()) {
    std::sort(unsized.begin(), unsized.end());
    unsized.erase(std::unique(unsized.begin(), unsized.end()), unsized.end());
    AddBlocksLocked(seq, sequence, unsized, store);
  }
  absl::StrAppend(&text_, "F ", seq);
  const HeadId* head = nullptr;
  for (const ClusterId& c : clusters) {
    if (head == nullptr || !(*head == c.head)) {
      absl::StrAppend(&text_, " ", c.head.layer, ".", c.head.kv_head, ":", c.cluster);
      head = &c.head;
    } else {
      absl::StrAppend(&text_, ",", c.cluster);
    }
  }
  text_.push_back('\n');
}

absl::Status FetchTrace::WriteTo(const std::string& path) const {
  const std::string text = Text();
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("cannot write the fetch trace ", path));
  return absl::OkStatus();
}

uint64_t FetchTrace::dropped_fetches() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

std::string FetchTrace::Text() const {
  absl::MutexLock lock(&mu_);
  return text_;
}

}  // namespace clusterkv::server
