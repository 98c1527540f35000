// The standard gRPC health check (grpc.health.v1.Health/Check) as a client call. Debian's gRPC
// ships the server side only (no generated health stub), so the call goes through
// grpc::GenericStub with the two tiny messages encoded by hand:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  // UNKNOWN 0, SERVING 1, NOT_SERVING 2
//
// Example:
//   ASSIGN_OR_RETURN(HealthStatus s, CheckHealth(*channel, "", absl::Seconds(5)));
//   if (s == HealthStatus::kServing) ...
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_HEALTH_CHECK_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_HEALTH_CHECK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace clusterkv::admin {

enum class HealthStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// "SERVING", "NOT_SERVING", ...
absl::string_view HealthStatusName(HealthStatus status);

// The serving status of `service` ("" = the whole server). The call's gRPC error otherwise
// (UNAVAILABLE when nothing listens, NOT_FOUND for a service the server does not know,
// DEADLINE_EXCEEDED past `timeout`); DataLoss for a response that does not parse.
absl::StatusOr<HealthStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                         const std::string& service, absl::Duration timeout);

// Encoding and decoding of the two messages; exposed for tests.
std::string EncodeHealthCheckRequest(const std::string& service);
absl::StatusOr<HealthStatus> DecodeHealthCheckResponse(absl::string_view bytes);

}  // namespace clusterkv::admin

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_HEALTH_CHECK_H_
