// absl::Status -> Python exceptions: the one conversion of the extension.
#include <array>
#include <string>

#include "absl/strings/str_cat.h"
#include "bindings.h"

namespace clusterkv::python {
namespace {

struct ErrorClass {
  absl::StatusCode code;
  const char* name;     // class name in the module
  const char* builtin;  // second base from builtins, or null
};

// Every code absl defines (= gRPC's numbering).
constexpr ErrorClass kClasses[] = {
    {absl::StatusCode::kCancelled, "CancelledError", nullptr},
    {absl::StatusCode::kUnknown, "UnknownError", nullptr},
    {absl::StatusCode::kInvalidArgument, "InvalidArgumentError", "ValueError"},
    {absl::StatusCode::kDeadlineExceeded, "DeadlineExceededError", "TimeoutError"},
    {absl::StatusCode::kNotFound, "NotFoundError", "LookupError"},
    {absl::StatusCode::kAlreadyExists, "AlreadyExistsError", nullptr},
    {absl::StatusCode::kPermissionDenied, "PermissionDeniedError", "PermissionError"},
    {absl::StatusCode::kResourceExhausted, "ResourceExhaustedError", nullptr},
    {absl::StatusCode::kFailedPrecondition, "FailedPreconditionError", nullptr},
    {absl::StatusCode::kAborted, "AbortedError", nullptr},
    {absl::StatusCode::kOutOfRange, "OutOfRangeError", "IndexError"},
    {absl::StatusCode::kUnimplemented, "UnimplementedError", "NotImplementedError"},
    {absl::StatusCode::kInternal, "InternalError", nullptr},
    {absl::StatusCode::kUnavailable, "UnavailableError", "ConnectionError"},
    {absl::StatusCode::kDataLoss, "DataLossError", nullptr},
    {absl::StatusCode::kUnauthenticated, "UnauthenticatedError", "PermissionError"},
};

constexpr int kMaxCode = 16;

// The classes, indexed by code (0 = the base Error). Owned references created once when the
// module is imported and kept for the life of the interpreter, like pybind11's own exception
// types (the exception translator cannot carry state).
std::array<PyObject*, kMaxCode + 1>& Classes() {
  static std::array<PyObject*, kMaxCode + 1> classes{};
  return classes;
}

}  // namespace

void RegisterErrors(py::module_& m) {
  py::module_ builtins = py::module_::import("builtins");
  py::object type = builtins.attr("type");
  py::dict base_ns;
  base_ns["__module__"] = "clusterkv";
  base_ns["__doc__"] =
      "Base of the errors libclusterkv reports. Attributes: code (int, absl/gRPC numbering), "
      "code_name (e.g. 'NOT_FOUND') and message.";
  py::object base = type("Error", py::make_tuple(builtins.attr("Exception")), base_ns);
  m.attr("Error") = base;
  Classes()[0] = base.inc_ref().ptr();
  for (const ErrorClass& c : kClasses) {
    py::tuple bases = c.builtin == nullptr ? py::make_tuple(base)
                                           : py::make_tuple(base, builtins.attr(c.builtin));
    py::dict ns;
    ns["__module__"] = "clusterkv";
    ns["__doc__"] = absl::StrCat("Status code ", absl::StatusCodeToString(c.code), ".");
    py::object cls = type(c.name, bases, ns);
    m.attr(c.name) = cls;
    Classes()[static_cast<int>(c.code)] = cls.inc_ref().ptr();
  }
}

void ThrowStatus(const absl::Status& status) {
  const int code = static_cast<int>(status.code());
  PyObject* cls = code > 0 && code <= kMaxCode && Classes()[code] != nullptr ? Classes()[code]
                                                                            : Classes()[0];
  const std::string code_name = absl::StatusCodeToString(status.code());
  const std::string message(status.message());
  py::object error = py::reinterpret_borrow<py::object>(cls)(
      message.empty() ? code_name : absl::StrCat(code_name, ": ", message));
  error.attr("code") = code;
  error.attr("code_name") = code_name;
  error.attr("message") = message;
  PyErr_SetObject(cls, error.ptr());
  throw py::error_already_set();
}

void ThrowInvalid(const std::string& message) {
  ThrowStatus(absl::InvalidArgumentError(message));
}

}  // namespace clusterkv::python
