// DocumentDirectory: the daemon's in-memory view of each tenant's sealed documents (their
// segment hash chains, for FindPrefix) and of the forks that share them (so that a document in
// use is never dropped). It is a cache of what the store's state records say: the handler fills
// a tenant's part from the store on the tenant's first use and keeps it current as documents
// are sealed and forks are created or dropped. Tenants never see each other's entries.
//
// Thread-safe.
#ifndef CLUSTERKV_SERVER_INTERNAL_DOCUMENT_DIRECTORY_H_
#define CLUSTERKV_SERVER_INTERNAL_DOCUMENT_DIRECTORY_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "clusterkv/v1/kvcache.pb.h"

namespace clusterkv::server {

class DocumentDirectory {
 public:
  struct Match {
    std::string document;
    int32_t segments = 0;
    int64_t tokens = 0;
  };

  // Whether the tenant's entries were read from the store; MarkLoaded says they were.
  bool Loaded(const std::string& tenant) const;
  void MarkLoaded(const std::string& tenant);

  // A sealed document and its segments (idempotent).
  void AddDocument(const std::string& tenant, const std::string& document,
                   const v1::DocumentSegments& segments);
  // The longest prefix of `hashes` (a prompt's chain, segment by segment) that one of the
  // tenant's documents holds; nullopt when none.
  std::optional<Match> Find(const std::string& tenant,
                            absl::Span<const std::string* const> hashes) const;

  // `fork` of the tenant uses `document` (idempotent); RemoveFork forgets it.
  void AddFork(const std::string& tenant, const std::string& document, const std::string& fork);
  void RemoveFork(const std::string& tenant, const std::string& fork);
  // Forks of the tenant that use `document`.
  int64_t Forks(const std::string& tenant, const std::string& document) const;
  // Forgets a dropped document and its hashes.
  void RemoveDocument(const std::string& tenant, const std::string& document);

 private:
  struct Tenant {
    bool loaded = false;
    absl::flat_hash_map<std::string, Match> by_hash;
    absl::flat_hash_map<std::string, std::string> base_of_fork;
    absl::flat_hash_map<std::string, int64_t> forks_of_document;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Tenant> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_INTERNAL_DOCUMENT_DIRECTORY_H_
