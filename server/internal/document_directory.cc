#include "server/internal/document_directory.h"

#include <utility>

namespace clusterkv::server {

bool DocumentDirectory::Loaded() const {
  absl::MutexLock lock(&mu_);
  return loaded_;
}

void DocumentDirectory::MarkLoaded() {
  absl::MutexLock lock(&mu_);
  loaded_ = true;
}

void DocumentDirectory::AddDocument(const std::string& viewer, const SequenceKey& document,
                                    const v1::DocumentSegments& segments) {
  absl::MutexLock lock(&mu_);
  visible_[viewer].insert(document);
  auto& hashes = by_hash_[viewer];
  for (int j = 0; j < segments.hashes_size(); ++j) {
    // The first document to hold a prefix keeps serving it: forks then share one copy.
    hashes.try_emplace(segments.hashes(j), Match{document, j + 1, segments.tokens(j)});
  }
}

void DocumentDirectory::RemoveViewer(const std::string& viewer, const SequenceKey& document) {
  absl::MutexLock lock(&mu_);
  if (auto v = visible_.find(viewer); v != visible_.end()) v->second.erase(document);
  auto it = by_hash_.find(viewer);
  if (it == by_hash_.end()) return;
  absl::erase_if(it->second, [&](const auto& entry) { return entry.second.document == document; });
}

bool DocumentDirectory::Visible(const std::string& viewer, const SequenceKey& document) const {
  absl::MutexLock lock(&mu_);
  auto v = visible_.find(viewer);
  return v != visible_.end() && v->second.contains(document);
}

std::optional<DocumentDirectory::Match> DocumentDirectory::Find(
    const std::string& viewer, absl::Span<const std::string* const> hashes) const {
  absl::MutexLock lock(&mu_);
  auto t = by_hash_.find(viewer);
  if (t == by_hash_.end()) return std::nullopt;
  // Each hash covers the whole chain before it, so the longest hash found is the longest
  // stored prefix; its document holds every shorter one too.
  for (size_t j = hashes.size(); j > 0; --j) {
    auto it = t->second.find(*hashes[j - 1]);
    if (it != t->second.end() && it->second.segments == static_cast<int32_t>(j)) {
      return it->second;
    }
  }
  return std::nullopt;
}

void DocumentDirectory::AddFork(const SequenceKey& document, const SequenceKey& fork) {
  absl::MutexLock lock(&mu_);
  if (base_of_fork_.emplace(fork, document).second) ++forks_of_document_[document];
}

void DocumentDirectory::RemoveFork(const SequenceKey& fork) {
  absl::MutexLock lock(&mu_);
  auto it = base_of_fork_.find(fork);
  if (it == base_of_fork_.end()) return;
  auto count = forks_of_document_.find(it->second);
  if (count != forks_of_document_.end() && --count->second <= 0) {
    forks_of_document_.erase(count);
  }
  base_of_fork_.erase(it);
}

int64_t DocumentDirectory::Forks(const SequenceKey& document) const {
  absl::MutexLock lock(&mu_);
  auto it = forks_of_document_.find(document);
  return it == forks_of_document_.end() ? 0 : it->second;
}

void DocumentDirectory::RemoveDocument(const SequenceKey& document) {
  absl::MutexLock lock(&mu_);
  for (auto& [viewer, documents] : visible_) documents.erase(document);
  for (auto& [viewer, hashes] : by_hash_) {
    absl::erase_if(hashes, [&](const auto& entry) { return entry.second.document == document; });
  }
}

}  // namespace clusterkv::server
