// The project's one conversion of UCX's ucs_status_t into absl::Status (STYLE.md "Errors").
#ifndef CLUSTERKV_CORE_UCX_UCX_STATUS_H_
#define CLUSTERKV_CORE_UCX_UCX_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ucs/type/status.h"

namespace clusterkv::ucx {

// OK for UCS_OK; otherwise the closest absl code, with `what` and UCX's own text in the
// message: UNAVAILABLE for a peer or link that went away (unreachable, connection reset,
// endpoint timeout, canceled), RESOURCE_EXHAUSTED for no memory/resources, INVALID_ARGUMENT
// for invalid parameters, UNIMPLEMENTED for unsupported operations, DEADLINE_EXCEEDED for
// timeouts, NOT_FOUND for no such element/device, INTERNAL otherwise. UCS_INPROGRESS is a
// programming error here (the caller must wait for the request first) and maps to INTERNAL.
absl::Status FromUcsStatus(ucs_status_t status, absl::string_view what);

}  // namespace clusterkv::ucx

#endif  // CLUSTERKV_CORE_UCX_UCX_STATUS_H_
