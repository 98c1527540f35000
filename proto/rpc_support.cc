#include "proto/rpc_support.h"

#include "absl/strings/str_cat.h"

namespace clusterkv::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

v1::KvLayout ToProto(const KvLayout& layout) {
  v1::KvLayout out;
  out.set_num_layers(layout.num_layers);
  out.set_num_q_heads(layout.num_q_heads);
  out.set_num_kv_heads(layout.num_kv_heads);
  out.set_head_dim(layout.head_dim);
  switch (layout.dtype) {
    case DType::kFloat16:
      out.set_dtype(v1::DTYPE_FP16);
      break;
    case DType::kBFloat16:
      out.set_dtype(v1::DTYPE_BF16);
      break;
    case DType::kFloat32:
      out.set_dtype(v1::DTYPE_FP32);
      break;
  }
  return out;
}

absl::StatusOr<KvLayout> FromProto(const v1::KvLayout& layout) {
  KvLayout out;
  out.num_layers = layout.num_layers();
  out.num_q_heads = layout.num_q_heads();
  out.num_kv_heads = layout.num_kv_heads();
  out.head_dim = layout.head_dim();
  switch (layout.dtype()) {
    case v1::DTYPE_FP16:
      out.dtype = DType::kFloat16;
      break;
    case v1::DTYPE_BF16:
      out.dtype = DType::kBFloat16;
      break;
    case v1::DTYPE_FP32:
      out.dtype = DType::kFloat32;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("layout dtype must be FP16, BF16 or FP32, got ", layout.dtype()));
  }
  if (absl::Status s = out.Validate(); !s.ok()) return s;
  return out;
}

v1::ClusterRef ToProto(const ClusterId& id) {
  v1::ClusterRef ref;
  ref.set_layer(id.head.layer);
  ref.set_kv_head(id.head.kv_head);
  ref.set_cluster(id.cluster);
  return ref;
}

ClusterId FromProto(const v1::ClusterRef& ref) {
  return ClusterId{HeadId{ref.layer(), ref.kv_head()}, ref.cluster()};
}

}  // namespace clusterkv::rpc
