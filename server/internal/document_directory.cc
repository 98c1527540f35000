#include "server/internal/document_directory.h"

#include <utility>

namespace clusterkv::server {

bool DocumentDirectory::Loaded(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = tenants_.find(tenant);
  return it != tenants_.end() && it->second.loaded;
}

void DocumentDirectory::MarkLoaded(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  tenants_[tenant].loaded = true;
}

void DocumentDirectory::AddDocument(const std::string& tenant, const std::string& document,
                                    const v1::DocumentSegments& segments) {
  absl::MutexLock lock(&mu_);
  Tenant& t = tenants_[tenant];
  for (int j = 0; j < segments.hashes_size(); ++j) {
    // The first document to hold a prefix keeps serving it: forks then share one copy.
    t.by_hash.try_emplace(segments.hashes(j), Match{document, j + 1, segments.tokens(j)});
  }
}

std::optional<DocumentDirectory::Match> DocumentDirectory::Find(
    const std::string& tenant, absl::Span<const std::string* const> hashes) const {
  absl::MutexLock lock(&mu_);
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return std::nullopt;
  // Each hash covers the whole chain before it, so the longest hash found is the longest
  // stored prefix; its document holds every shorter one too.
  for (size_t j = hashes.size(); j > 0; --j) {
    auto it = t->second.by_hash.find(*hashes[j - 1]);
    if (it != t->second.by_hash.end() && it->second.segments == static_cast<int32_t>(j)) {
      return it->second;
    }
  }
  return std::nullopt;
}

void DocumentDirectory::AddFork(const std::string& tenant, const std::string& document,
                                const std::string& fork) {
  absl::MutexLock lock(&mu_);
  Tenant& t = tenants_[tenant];
  if (t.base_of_fork.emplace(fork, document).second) ++t.forks_of_document[document];
}

void DocumentDirectory::RemoveFork(const std::string& tenant, const std::string& fork) {
  absl::MutexLock lock(&mu_);
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return;
  auto it = t->second.base_of_fork.find(fork);
  if (it == t->second.base_of_fork.end()) return;
  auto count = t->second.forks_of_document.find(it->second);
  if (count != t->second.forks_of_document.end() && --count->second <= 0) {
    t->second.forks_of_document.erase(count);
  }
  t->second.base_of_fork.erase(it);
}

int64_t DocumentDirectory::Forks(const std::string& tenant, const std::string& document) const {
  absl::MutexLock lock(&mu_);
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return 0;
  auto it = t->second.forks_of_document.find(document);
  return it == t->second.forks_of_document.end() ? 0 : it->second;
}

void DocumentDirectory::RemoveDocument(const std::string& tenant, const std::string& document) {
  absl::MutexLock lock(&mu_);
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return;
  absl::erase_if(t->second.by_hash,
                 [&](const auto& entry) { return entry.second.document == document; });
}

}  // namespace clusterkv::server
