// NodeInfo: what a clusterkvd publishes about itself under its membership key: its
// id, the gRPC address other daemons call it on, whether it serves the UCX data plane, and its
// load (tier capacity and usage), refreshed at every keep-alive. Stored as JSON.
//
// Load: a node holds `host_bytes + ssd_bytes` of blocks against a host tier of
// `host_capacity_bytes`. Its load fraction is held bytes / host capacity: above the node's
// high watermark it no longer keeps everything in host memory (recalls start to hit the SSD),
// and placement (placement.h) sends new sequences elsewhere.
#ifndef CLUSTERKV_SERVER_CLUSTER_NODE_INFO_H_
#define CLUSTERKV_SERVER_CLUSTER_NODE_INFO_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::server::cluster {

struct NodeLoad {
  uint64_t host_capacity_bytes = 0;
  uint64_t host_bytes = 0;
  uint64_t ssd_bytes = 0;
  double high_watermark = 0.9;

  // (host + ssd bytes) / host capacity; 0 for a node without capacity information.
  double Fraction() const;
  bool AboveHighWatermark() const { return Fraction() > high_watermark; }
};

struct NodeInfo {
  std::string node_id;
  std::string grpc_address;  // host:port of the node's TCP (TLS) listener
  bool ucx = false;          // serves the UCX data plane (to clients and to peer pulls)
  // Its UCX worker address (ucp_worker_get_address), as registered; empty without UCX. Peers
  // still open sessions through ConnectDataPlane (which authenticates and exchanges rkeys);
  // the registered address tells them up front that UCX is there and what it listens on.
  std::string ucx_address;
  NodeLoad load;
};

std::string EncodeNodeInfo(const NodeInfo& info);
// InvalidArgument for anything that is not an encoded NodeInfo with a valid node id.
absl::StatusOr<NodeInfo> DecodeNodeInfo(absl::string_view json);

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_NODE_INFO_H_
