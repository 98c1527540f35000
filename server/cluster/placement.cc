#include "server/cluster/placement.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace clusterkv::server::cluster {

absl::StatusOr<Placement> PlaceSequence(const std::string& local, absl::Span<const NodeInfo> live,
                                        int replication) {
  if (replication < 1 || replication > 3) {
    return absl::InvalidArgumentError("replication must be 1, 2 or 3");
  }
  // Candidates in preference order: below their watermark first, then least loaded, then id.
  std::vector<const NodeInfo*> order;
  const NodeInfo* self = nullptr;
  for (const NodeInfo& n : live) {
    order.push_back(&n);
    if (n.node_id == local) self = &n;
  }
  if (self == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", local, " is not registered in the cluster"));
  }
  std::sort(order.begin(), order.end(), [](const NodeInfo* a, const NodeInfo* b) {
    return std::make_tuple(a->load.AboveHighWatermark(), a->load.Fraction(), a->node_id) <
           std::make_tuple(b->load.AboveHighWatermark(), b->load.Fraction(), b->node_id);
  });
  order.erase(std::unique(order.begin(), order.end(),
                          [](const NodeInfo* a, const NodeInfo* b) {
                            return a->node_id == b->node_id;
                          }),
              order.end());
  if (static_cast<int>(order.size()) < replication) {
    return absl::UnavailableError(absl::StrCat("replication ", replication, " needs ",
                                               replication, " live nodes; ", order.size(),
                                               " are live"));
  }
  Placement placement;
  placement.owner = self->load.AboveHighWatermark() ? order.front()->node_id : local;
  for (const NodeInfo* n : order) {
    if (static_cast<int>(placement.replicas.size()) + 1 >= replication) break;
    if (n->node_id != placement.owner) placement.replicas.push_back(n->node_id);
  }
  return placement;
}

}  // namespace clusterkv::server::cluster
