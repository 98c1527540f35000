// The layout of cluster mode's keys in etcd, in one place:
//
//   /clusterkv/<cluster>/nodes/<node_id>             NodeInfo JSON, under the node's lease
//   /clusterkv/<cluster>/seq/<tenant>/<sequence_id>  DirectoryEntry JSON (no lease)
//   /clusterkv/<cluster>/joined/<node_id>            "1": the node has joined this cluster before
//
// Tenants and sequence ids are opaque strings (no control characters, up to 128 bytes), so
// they are percent-encoded ('%', '/' and bytes outside 0x21..0x7e): one tenant's prefix never
// covers another tenant's keys ("a" vs "a/b"). Node ids and cluster names are restricted to
// [A-Za-z0-9._-]{1,64} and used as they are.
//
// Immutable after construction; thread-safe.
#ifndef CLUSTERKV_SERVER_CLUSTER_CLUSTER_KEYS_H_
#define CLUSTERKV_SERVER_CLUSTER_CLUSTER_KEYS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/ids.h"

namespace clusterkv::server::cluster {

// InvalidArgument unless `name` matches [A-Za-z0-9._-]{1,64}; `what` names it in the message.
absl::Status ValidateName(absl::string_view what, absl::string_view name);

// Percent-encoding of one key component, and its inverse (InvalidArgument for bad escapes).
std::string EscapeComponent(absl::string_view raw);
absl::StatusOr<std::string> UnescapeComponent(absl::string_view escaped);

class ClusterKeys {
 public:
  // `cluster` must pass ValidateName (checked by the caller).
  explicit ClusterKeys(std::string cluster);

  const std::string& cluster() const { return cluster_; }
  std::string NodesPrefix() const;
  std::string Node(absl::string_view node_id) const;
  std::string SequencesPrefix() const;
  std::string TenantPrefix(absl::string_view tenant) const;
  std::string Sequence(const SequenceKey& key) const;
  std::string Joined(absl::string_view node_id) const;

  // The sequence of a key under SequencesPrefix(); InvalidArgument for any other key.
  absl::StatusOr<SequenceKey> ParseSequence(absl::string_view key) const;
  // The node id of a key under NodesPrefix(); InvalidArgument for any other key.
  absl::StatusOr<std::string> ParseNode(absl::string_view key) const;

 private:
  std::string cluster_;
  std::string root_;  // "/clusterkv/<cluster>/"
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_CLUSTER_KEYS_H_
