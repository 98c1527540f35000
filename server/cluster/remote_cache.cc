#include "server/cluster/remote_cache.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/auth/credentials.h"

namespace clusterkv::server::cluster {

SequenceKey CacheKeyOf(const SequenceKey& key, int64_t incarnation) {
  std::string material = key.tenant;
  material.push_back('\0');
  material += key.sequence;
  return SequenceKey{kCacheTenant, absl::StrCat(auth::ToHex(auth::Sha256(material)).substr(0, 32),
                                                "-", incarnation)};
}

RemoteCache::Acquired RemoteCache::Acquire(const SequenceKey& key, int64_t incarnation) {
  absl::MutexLock lock(&mu_);
  Acquired out;
  auto it = copies_.find(key);
  if (it != copies_.end() && it->second.incarnation != incarnation) {
    out.stale = it->second.cache_key;
    copies_.erase(it);
    it = copies_.end();
  }
  if (it == copies_.end()) {
    Copy copy;
    copy.incarnation = incarnation;
    copy.cache_key = CacheKeyOf(key, incarnation);
    it = copies_.emplace(key, std::move(copy)).first;
  }
  out.cache_key = it->second.cache_key;
  out.has_meta = it->second.has_meta;
  return out;
}

void RemoteCache::MarkMeta(const SequenceKey& key, int64_t incarnation) {
  absl::MutexLock lock(&mu_);
  auto it = copies_.find(key);
  if (it != copies_.end() && it->second.incarnation == incarnation) it->second.has_meta = true;
}

std::vector<ClusterId> RemoteCache::Missing(const SequenceKey& key, int64_t incarnation,
                                            absl::Span<const ClusterId> clusters) const {
  absl::flat_hash_set<ClusterId> seen;
  std::vector<ClusterId> missing;
  absl::MutexLock lock(&mu_);
  auto it = copies_.find(key);
  const bool valid = it != copies_.end() && it->second.incarnation == incarnation;
  for (const ClusterId& c : clusters) {
    if (valid && it->second.blocks.contains(c)) continue;
    if (seen.insert(c).second) missing.push_back(c);
  }
  return missing;
}

void RemoteCache::MarkCached(const SequenceKey& key, int64_t incarnation,
                             const ClusterId& cluster) {
  absl::MutexLock lock(&mu_);
  auto it = copies_.find(key);
  if (it != copies_.end() && it->second.incarnation == incarnation) {
    it->second.blocks.insert(cluster);
  }
}

std::optional<SequenceKey> RemoteCache::Forget(const SequenceKey& key) {
  absl::MutexLock lock(&mu_);
  auto it = copies_.find(key);
  if (it == copies_.end()) return std::nullopt;
  SequenceKey cache_key = it->second.cache_key;
  copies_.erase(it);
  return cache_key;
}

std::optional<SequenceKey> RemoteCache::ForgetIf(const SequenceKey& key, int64_t incarnation) {
  absl::MutexLock lock(&mu_);
  auto it = copies_.find(key);
  if (it == copies_.end() || it->second.incarnation != incarnation) return std::nullopt;
  SequenceKey cache_key = it->second.cache_key;
  copies_.erase(it);
  return cache_key;
}

std::vector<RemoteCache::Held> RemoteCache::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<Held> out;
  out.reserve(copies_.size());
  for (const auto& [key, copy] : copies_) out.push_back(Held{key, copy.incarnation});
  return out;
}

size_t RemoteCache::size() const {
  absl::MutexLock lock(&mu_);
  return copies_.size();
}

}  // namespace clusterkv::server::cluster
