// DocumentDirectory: the daemon's in-memory view of the sealed documents (their segment hash
// chains, for FindPrefix), of which tenants may see each (the owner, and the tenants it granted),
// and of the forks that share them (so that a document in use is never dropped). It is a cache
// of what the store's state records say: the handler fills it from the store on first use and
// keeps it current as documents are sealed, granted and dropped and forks are created or
// dropped. A tenant's lookups consult only the entries it may see.
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
#include "core/ids.h"

namespace clusterkv::server {

class DocumentDirectory {
 public:
  struct Match {
    SequenceKey document;  // its tenant is the owner
    int32_t segments = 0;
    int64_t tokens = 0;
  };

  // Whether the entries were read from the store; MarkLoaded says they were.
  bool Loaded() const;
  void MarkLoaded();

  // `viewer` may find `document` by its segments (the owner itself, or a granted tenant).
  // Idempotent.
  void AddDocument(const std::string& viewer, const SequenceKey& document,
                   const v1::DocumentSegments& segments);
  // `viewer` no longer finds `document` (a revoked grant).
  void RemoveViewer(const std::string& viewer, const SequenceKey& document);
  // Whether `viewer` may find `document` (its owner, or a tenant it is granted to).
  bool Visible(const std::string& viewer, const SequenceKey& document) const;
  // The longest prefix of `hashes` (a prompt's chain, segment by segment) that a document
  // `viewer` may see holds; nullopt when none.
  std::optional<Match> Find(const std::string& viewer,
                            absl::Span<const std::string* const> hashes) const;

  // `fork` uses `document` (idempotent); RemoveFork forgets it.
  void AddFork(const SequenceKey& document, const SequenceKey& fork);
  void RemoveFork(const SequenceKey& fork);
  // Forks, of any tenant, that use `document`.
  int64_t Forks(const SequenceKey& document) const;
  // Forgets a dropped document: no tenant finds it any more.
  void RemoveDocument(const SequenceKey& document);

 private:
  mutable absl::Mutex mu_;
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
  // Per viewing tenant: segment hash -> the document holding that prefix.
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, Match>> by_hash_
      ABSL_GUARDED_BY(mu_);
  // Per viewing tenant: the documents it may see.
  absl::flat_hash_map<std::string, absl::flat_hash_set<SequenceKey>> visible_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SequenceKey, SequenceKey> base_of_fork_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SequenceKey, int64_t> forks_of_document_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_INTERNAL_DOCUMENT_DIRECTORY_H_
