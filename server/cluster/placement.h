// Placement of a new sequence in cluster mode: a pure function of the live nodes' published loads.
//
//   - Owner: the local node (the one the client asked) unless it is above its high watermark;
//     then the least-loaded live node below its own watermark (if every node is above, the
//     least-loaded of all: its store spills to the SSD, nothing is refused).
//   - Replicas (replication - 1 of them): the least-loaded live nodes other than the owner,
//     preferring nodes below their watermark.
// "Least loaded" is the lowest NodeLoad::Fraction(), ties broken by node id, so the choice is
// deterministic for a given snapshot of loads.
#ifndef CLUSTERKV_SERVER_CLUSTER_PLACEMENT_H_
#define CLUSTERKV_SERVER_CLUSTER_PLACEMENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/cluster/node_info.h"

namespace clusterkv::server::cluster {

struct Placement {
  std::string owner;
  std::vector<std::string> replicas;

  friend bool operator==(const Placement& a, const Placement& b) {
    return a.owner == b.owner && a.replicas == b.replicas;
  }
};

// `live`: the registered nodes (the local one among them). FailedPrecondition when `local` is
// not among them (this node is not registered); InvalidArgument for replication outside
// [1, 3]; Unavailable when fewer than `replication` nodes are live.
absl::StatusOr<Placement> PlaceSequence(const std::string& local, absl::Span<const NodeInfo> live,
                                        int replication);

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_PLACEMENT_H_
