#include "tools/clusterkv/health_check.h"

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/rpc_support.h"

namespace clusterkv::admin {
namespace {

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Reads a varint at *pos; false when the bytes end first or it runs past 10 bytes.
bool GetVarint(absl::string_view bytes, size_t* pos, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 70 && *pos < bytes.size(); shift += 7) {
    const auto byte = static_cast<uint8_t>(bytes[(*pos)++]);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

absl::string_view HealthStatusName(HealthStatus status) {
  switch (status) {
    case HealthStatus::kServing:
      return "SERVING";
    case HealthStatus::kNotServing:
      return "NOT_SERVING";
    case HealthStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case HealthStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

std::string EncodeHealthCheckRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;                 // proto3: a default field is not written
  out.push_back(static_cast<char>((1 << 3) | 2));  // field 1, length-delimited
  PutVarint(service.size(), &out);
  out += service;
  return out;
}

absl::StatusOr<HealthStatus> DecodeHealthCheckResponse(absl::string_view bytes) {
  uint64_t status = 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint64_t tag = 0;
    if (!GetVarint(bytes, &pos, &tag)) return absl::DataLossError("truncated health tag");
    const uint64_t field = tag >> 3;
    uint64_t value = 0;
    switch (tag & 7) {
      case 0:  // varint
        if (!GetVarint(bytes, &pos, &value)) return absl::DataLossError("truncated varint");
        if (field == 1) status = value;
        break;
      case 1:  // fixed64
        if (bytes.size() - pos < 8) return absl::DataLossError("truncated fixed64");
        pos += 8;
        break;
      case 2:  // length-delimited
        if (!GetVarint(bytes, &pos, &value) || value > bytes.size() - pos) {
          return absl::DataLossError("truncated length-delimited field");
        }
        pos += value;
        break;
      case 5:  // fixed32
        if (bytes.size() - pos < 4) return absl::DataLossError("truncated fixed32");
        pos += 4;
        break;
      default:
        return absl::DataLossError(absl::StrCat("bad wire type in health response tag ", tag));
    }
  }
  if (status > 3) return HealthStatus::kUnknown;
  return static_cast<HealthStatus>(status);
}

absl::StatusOr<HealthStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                         const std::string& service, absl::Duration timeout) {
  const std::string request_bytes = EncodeHealthCheckRequest(service);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  grpc::CompletionQueue cq;
  grpc::GenericStub stub(channel);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, kCheckMethod, request, &cq);
  call->StartCall();
  grpc::Status status;
  int finish_tag = 0;
  call->Finish(&response, &status, &finish_tag);
  void* tag = nullptr;
  bool ok = false;
  const bool got = cq.Next(&tag, &ok);
  cq.Shutdown();
  void* drained_tag = nullptr;
  bool drained_ok = false;
  while (cq.Next(&drained_tag, &drained_ok)) {
  }
  if (!got || tag != &finish_tag) return absl::InternalError("health check did not complete");
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::DataLossError("unreadable health response");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return DecodeHealthCheckResponse(bytes);
}

}  // namespace clusterkv::admin
