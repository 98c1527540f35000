// Directory: which node owns each sequence, and which nodes hold replicas. One etcd
// key per sequence (cluster_keys.h) with a DirectoryEntry as JSON; entries carry no lease (a
// sequence outlives its owner's registration: its replica takes it over, or it waits for the
// owner to come back). Every write is a transaction, so two nodes never both own a sequence:
//   - Claim: create the entry only if the key does not exist (create_revision == 0);
//   - TakeOver: rewrite it only if it is unchanged since it was read (mod_revision) AND the
//     old owner's membership key is gone (create_revision == 0: its lease expired);
//   - Remove: delete it only if it is unchanged since it was read.
// The key's create_revision is the sequence's incarnation: a sequence dropped and created
// again under the same id has a new one, so a cached copy of the old one is never served.
//
// Thread-safe (stateless over the etcd client).
#ifndef CLUSTERKV_SERVER_CLUSTER_DIRECTORY_H_
#define CLUSTERKV_SERVER_CLUSTER_DIRECTORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/ids.h"
#include "core/kv_layout.h"
#include "server/cluster/cluster_keys.h"
#include "server/cluster/etcd_client.h"

namespace clusterkv::server::cluster {

struct DirectoryEntry {
  std::string owner;
  std::vector<std::string> replicas;
  KvLayout layout;
  // From etcd (not part of the stored JSON): the key's create and mod revisions.
  int64_t incarnation = 0;
  int64_t mod_revision = 0;

  // The owner, then the replicas: every node that holds a full copy.
  std::vector<std::string> Holders() const;
  bool Holds(absl::string_view node) const;
};

std::string EncodeDirectoryEntry(const DirectoryEntry& entry);
// InvalidArgument for anything that is not an encoded entry (bad node ids or layout included).
absl::StatusOr<DirectoryEntry> DecodeDirectoryEntry(absl::string_view json);

class Directory {
 public:
  // Neither is owned; both must outlive the directory.
  Directory(EtcdClient* etcd, const ClusterKeys* keys) : etcd_(etcd), keys_(keys) {}

  // The entry of `key`, or nullopt when no node has the sequence.
  absl::StatusOr<std::optional<DirectoryEntry>> Lookup(const SequenceKey& key);

  struct ClaimResult {
    bool claimed = false;   // this call created the entry
    DirectoryEntry entry;   // the stored entry: ours, or the one that was there
  };
  absl::StatusOr<ClaimResult> Claim(const SequenceKey& key, const DirectoryEntry& entry);

  // Makes `new_owner` (a replica in `seen`) the owner; the other replicas stay. False when the
  // entry changed since `seen` or the old owner is registered again.
  absl::StatusOr<bool> TakeOver(const SequenceKey& key, const DirectoryEntry& seen,
                                const std::string& new_owner);
  // Adds `replica` (not a holder in `seen`) to the entry's replicas; false when the entry
  // changed since `seen`.
  absl::StatusOr<bool> AddReplica(const SequenceKey& key, const DirectoryEntry& seen,
                                  const std::string& replica);
  // Deletes the entry; false when it changed since `seen`.
  absl::StatusOr<bool> Remove(const SequenceKey& key, const DirectoryEntry& seen);

  // Every entry of `tenant` (all tenants when empty), in key order. Entries that do not parse
  // are skipped.
  absl::StatusOr<std::vector<std::pair<SequenceKey, DirectoryEntry>>> List(
      absl::string_view tenant);

  // Records that `node` has joined the cluster; true the first time ever.
  absl::StatusOr<bool> MarkJoined(absl::string_view node);

 private:
  EtcdClient* const etcd_;
  const ClusterKeys* const keys_;
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_DIRECTORY_H_
