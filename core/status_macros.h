// RETURN_IF_ERROR / ASSIGN_OR_RETURN: the one pair of status-propagation macros of the project
// (Debian's Abseil 20220623 ships none).
//
// Example:
//   RETURN_IF_ERROR(layout.Validate());
//   ASSIGN_OR_RETURN(std::vector<float> keys, ReadNpy(path));
#ifndef CLUSTERKV_CORE_STATUS_MACROS_H_
#define CLUSTERKV_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CLUSTERKV_CONCAT_INNER_(a, b) a##b
#define CLUSTERKV_CONCAT_(a, b) CLUSTERKV_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    ::absl::Status clusterkv_status_ = (expr);             \
    if (!clusterkv_status_.ok()) return clusterkv_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  CLUSTERKV_ASSIGN_OR_RETURN_IMPL_(CLUSTERKV_CONCAT_(clusterkv_statusor_, __LINE__), lhs, expr)

#define CLUSTERKV_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()

#endif  // CLUSTERKV_CORE_STATUS_MACROS_H_
