// Conversions shared by server/ and client/: absl::Status <-> grpc::Status (the one conversion
// of grpc::Status in the project) and core <-> proto layouts and ids.
#ifndef CLUSTERKV_PROTO_RPC_SUPPORT_H_
#define CLUSTERKV_PROTO_RPC_SUPPORT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "core/ids.h"
#include "core/kv_layout.h"
#include "grpcpp/support/status.h"

namespace clusterkv::rpc {

// Metadata key carrying the caller's tenant until authentication lands (the daemon's
// CallContext is where it is read).
inline constexpr char kTenantMetadataKey[] = "clusterkv-tenant";

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

v1::KvLayout ToProto(const KvLayout& layout);
// InvalidArgument for an unknown dtype or an invalid layout.
absl::StatusOr<KvLayout> FromProto(const v1::KvLayout& layout);

v1::ClusterRef ToProto(const ClusterId& id);
ClusterId FromProto(const v1::ClusterRef& ref);

}  // namespace clusterkv::rpc

#endif  // CLUSTERKV_PROTO_RPC_SUPPORT_H_
