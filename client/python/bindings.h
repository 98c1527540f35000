// Internal declarations shared by the files of the _clusterkv extension (module.cc registers
// everything). Python-facing behaviour is documented in clusterkv/__init__.py.
//
// GIL discipline: every call into libclusterkv that can block (network, K-means, attention)
// runs with the GIL released; numpy buffers are resolved to views before the release, and the
// arrays stay referenced by the calling frame until it returns.
#ifndef CLUSTERKV_CLIENT_PYTHON_BINDINGS_H_
#define CLUSTERKV_CLIENT_PYTHON_BINDINGS_H_

#include <cstdint>
#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "client/client.h"
#include "client/internal/client_internals.h"
#include "client/sequence.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"
#include "pybind11/numpy.h"
#include "pybind11/pybind11.h"

namespace clusterkv::python {

namespace py = pybind11;

// ---- errors (py_errors.cc) ----------------------------------------------------------------
// Creates clusterkv.Error and one subclass per absl status code (NotFoundError is also a
// LookupError, InvalidArgumentError a ValueError, UnavailableError a ConnectionError, ...) as
// attributes of `m`.
void RegisterErrors(py::module_& m);
// Raises the class of status.code() with attributes code (int), code_name ("NOT_FOUND") and
// message. Requires the GIL and a non-OK status.
[[noreturn]] void ThrowStatus(const absl::Status& status);
inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) ThrowStatus(status);
}
// InvalidArgumentError with `message`.
[[noreturn]] void ThrowInvalid(const std::string& message);

// ---- numpy arguments (py_numpy.cc) ----------------------------------------------------------
// float32 or float16 (native byte order); TypeError naming `what` otherwise.
DType ArrayDType(const py::array& a, const char* what);
// A [d0, d1, d2] array whose last axis is contiguous; InvalidArgumentError when ndim, the
// expected dims (a negative expected dim accepts any size >= 1) or the strides do not fit.
Tensor3View AsTensor3(const py::array& a, const char* what, int64_t d0, int64_t d1, int64_t d2);
// A [rows, cols] array with a contiguous last axis.
ConstMatrixView AsMatrix(const py::array& a, const char* what, int64_t rows, int64_t cols);
// A writeable float32 [rows, cols] array with a contiguous last axis.
MatrixView AsOutput(py::array& a, const char* what, int64_t rows, int64_t cols);
// Token ids: a 1-D numpy array of integers or a sequence of ints, each within int32;
// TypeError for other element types, InvalidArgumentError for another shape or range.
std::vector<int32_t> TokenIds(const py::handle& tokens, const char* what);

// ---- objects shared between the files ---------------------------------------------------------
// Owns the Client; Sequences hold a reference, so the Client outlives them (client.h).
struct ClientHandle {
  std::unique_ptr<client::Client> client;
  std::string target;
  std::string tenant;
};

// A Sequence with the mutex that serialises calls made with the GIL released (a Sequence is
// driven by one thread at a time; Python threads may share the object).
class SequenceHandle {
 public:
  SequenceHandle(std::shared_ptr<ClientHandle> client, std::unique_ptr<client::Sequence> sequence)
      : client_(std::move(client)), sequence_(std::move(sequence)) {}

  // Runs fn(Sequence&) with the GIL released and the mutex held; the result must not be a
  // Python object.
  template <typename Fn>
  auto Run(Fn&& fn) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    return fn(*sequence_);
  }
  // Runs fn(sequences) over several handles with the GIL released and every handle's mutex
  // held (each taken once, in address order, so concurrent batches cannot deadlock).
  template <typename Fn>
  static auto RunAll(const std::vector<SequenceHandle*>& handles, Fn&& fn) {
    std::vector<SequenceHandle*> order(handles);
    std::sort(order.begin(), order.end());
    order.erase(std::unique(order.begin(), order.end()), order.end());
    std::vector<client::Sequence*> sequences;
    for (SequenceHandle* h : handles) sequences.push_back(h->sequence_.get());
    py::gil_scoped_release release;
    std::vector<std::unique_lock<std::mutex>> locks;
    for (SequenceHandle* h : order) locks.emplace_back(h->mu_);
    return fn(sequences);
  }
  ClientHandle& client() { return *client_; }
  // The id and layout never change; readable without the mutex.
  const std::string& id() const { return sequence_->id(); }
  const KvLayout& layout() const { return sequence_->layout(); }

 private:
  std::shared_ptr<ClientHandle> client_;  // declared first: destroyed after the Sequence
  std::mutex mu_;
  std::unique_ptr<client::Sequence> sequence_;
};

// ---- registration (one function per file) ---------------------------------------------------
void RegisterClient(py::module_& m);    // KvLayout, Config, StoredPrefix, Client (py_client.cc)
void RegisterSequence(py::module_& m);  // Sequence (py_sequence.cc)
// Sequence.select and Sequence.index (py_select.cc), added to the Sequence class.
void RegisterSelect(py::class_<SequenceHandle, std::shared_ptr<SequenceHandle>>& cls);

}  // namespace clusterkv::python

#endif  // CLUSTERKV_CLIENT_PYTHON_BINDINGS_H_
