// Move-only RAII owners of the UCX (UCP) handles used by the data plane: Context, Worker,
// Endpoint, MemMap and RemoteKey, plus WaitRequest, the one place that turns the three outcomes
// of a `*_nbx` call (done, error, or a request to progress and free) into an absl::Status.
//
// Teardown order is encoded by ownership: each owner holds a shared_ptr to what it depends on,
// so a RemoteKey keeps its Endpoint alive, an Endpoint its Worker, a Worker (and a MemMap) its
// Context. Whatever order the last references are dropped in, UCX sees rkey before endpoint,
// endpoints before worker, worker before context.
//
// Threading: the Context (created with shared-worker locking) and MemMap are thread-safe.
// A Worker is created UCS_THREAD_MODE_SINGLE: it, its Endpoints and their RemoteKeys are used
// -- created, called and DESTROYED -- only on the worker's progress thread (progress_thread.h),
// or while no such thread runs. ucp_worker_signal is the exception UCX allows from any thread.
// A Worker created `serialized` (UCS_THREAD_MODE_SERIALIZED) may also be used by other threads
// one at a time, through ProgressThread::Drive, which serialises them with the progress thread.
//
// Example:
//   ASSIGN_OR_RETURN(std::shared_ptr<Context> ctx, Context::Create({}));
//   ASSIGN_OR_RETURN(std::shared_ptr<Worker> worker, Worker::Create(ctx));
//   ASSIGN_OR_RETURN(std::string address, worker->Address());
//   ASSIGN_OR_RETURN(std::unique_ptr<MemMap> region, MemMap::Allocate(ctx, 64 << 20));
//   ASSIGN_OR_RETURN(std::string rkey, region->PackRkey());
#ifndef CLUSTERKV_CORE_UCX_UCX_HANDLES_H_
#define CLUSTERKV_CORE_UCX_UCX_HANDLES_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ucp/api/ucp.h"

namespace clusterkv::ucx {

struct ContextOptions {
  // UCX_TLS-like list of transports ("tcp,self", "sm,self", ...). Empty: UCX's default, which
  // the UCX_TLS environment variable may still set.
  std::string transports;
  // UCX context name in its logs.
  std::string name = "clusterkv";
};

// ucp_context_h with RMA, active messages and wakeup (event fd) features.
class Context {
 public:
  // InvalidArgument for an unknown transport list; the UCX error otherwise.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Context>> Create(
      const ContextOptions& options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  ucp_context_h get() const { return context_; }

 private:
  explicit Context(ucp_context_h context) : context_(context) {}
  ucp_context_h context_;
};

// ucp_worker_h (UCS_THREAD_MODE_SINGLE or SERIALIZED, see the file comment). Keeps its Context
// alive.
class Worker {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Worker>> Create(
      std::shared_ptr<Context> context, bool serialized = false);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  ucp_worker_h get() const { return worker_; }
  const std::shared_ptr<Context>& context() const { return context_; }
  // The packed worker address a peer passes to ucp_ep_create.
  [[nodiscard]] absl::StatusOr<std::string> Address() const;

 private:
  Worker(std::shared_ptr<Context> context, ucp_worker_h worker)
      : context_(std::move(context)), worker_(worker) {}
  std::shared_ptr<Context> context_;
  ucp_worker_h worker_;
};

// Waits for the outcome of a `*_nbx` call on `worker`: nullptr (done at once) is OK, an error
// pointer is its status, and a request is progressed until it completes, then freed. On a
// request still in progress at `deadline`, the request is cancelled, progressed to its end and
// DEADLINE_EXCEEDED returned. Call on the worker's thread. `what` names the operation.
[[nodiscard]] absl::Status WaitRequest(ucp_worker_h worker, ucs_status_ptr_t request,
                                       absl::string_view what,
                                       absl::Time deadline = absl::InfiniteFuture());

// ucp_ep_h with peer error handling (UCP_ERR_HANDLING_MODE_PEER): a peer that vanishes is
// reported to `on_error` (on the worker's thread, from inside progress) instead of aborting.
// Destruction closes it: a flush close, or a forced close once it failed (MarkFailed or the
// error callback), progressing the worker until the close completes (bounded). Keeps its
// Worker alive.
class Endpoint {
 public:
  using ErrorCallback = std::function<void(ucs_status_t status)>;
  // `remote_worker_address`: a peer Worker::Address(). InvalidArgument for an empty address;
  // the UCX error otherwise (an address that does not parse, no common transport).
  // `peer_errors` false creates it UCP_ERR_HANDLING_MODE_NONE: UCX 1.13 then may use the
  // shared-memory transports (posix/sysv/cma), which peer error handling excludes (it leaves
  // only tcp), at the price of never reporting a vanished peer.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Endpoint>> Create(
      std::shared_ptr<Worker> worker, absl::string_view remote_worker_address,
      ErrorCallback on_error, bool peer_errors = true);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  ucp_ep_h get() const { return ep_; }
  Worker& worker() const { return *worker_; }
  // True once the peer failed (error callback) or MarkFailed() was called.
  bool failed() const;
  void MarkFailed();
  // ucp_ep_flush_nbx, waited for (see WaitRequest).
  [[nodiscard]] absl::Status Flush(absl::Time deadline = absl::InfiniteFuture());

 private:
  struct ErrorState;
  Endpoint(std::shared_ptr<Worker> worker, std::unique_ptr<ErrorState> error);
  static void OnError(void* arg, ucp_ep_h ep, ucs_status_t status);

  std::shared_ptr<Worker> worker_;
  std::unique_ptr<ErrorState> error_;  // stable address: UCX's callback argument
  ucp_ep_h ep_ = nullptr;
};

// Checks a peer's packed rkey against UCX 1.13's packed layout (md map, memory type, one
// length-prefixed part per memory domain) before UCX sees it: UCX reads it without a length
// and crashes on some malformed keys. InvalidArgument for a key that does not parse; OK does
// not prove UCX will accept it.
[[nodiscard]] absl::Status CheckPackedRkey(absl::string_view packed);

// ucp_rkey_h unpacked on an Endpoint from a peer's packed key. Keeps its Endpoint alive.
class RemoteKey {
 public:
  // InvalidArgument for a key CheckPackedRkey refuses; the UCX error for one that does not
  // unpack.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RemoteKey>> Unpack(
      std::shared_ptr<Endpoint> endpoint, absl::string_view packed);
  ~RemoteKey();
  RemoteKey(const RemoteKey&) = delete;
  RemoteKey& operator=(const RemoteKey&) = delete;

  ucp_rkey_h get() const { return rkey_; }
  Endpoint& endpoint() const { return *endpoint_; }

 private:
  RemoteKey(std::shared_ptr<Endpoint> endpoint, ucp_rkey_h rkey)
      : endpoint_(std::move(endpoint)), rkey_(rkey) {}
  std::shared_ptr<Endpoint> endpoint_;
  ucp_rkey_h rkey_;
};

// ucp_mem_h: memory registered with (Register) or allocated by (Allocate) UCX. Allocated
// memory is what makes ucp_put over shared memory run at memcpy speed when it is the TARGET
// (DESIGN.md section 10). Unmapped on destruction; keeps its Context alive. Thread-safe.
class MemMap {
 public:
  // UCP_MEM_MAP_ALLOCATE of `bytes` (zero-filled). InvalidArgument for 0 bytes;
  // ResourceExhausted / the UCX error when UCX cannot allocate.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MemMap>> Allocate(
      std::shared_ptr<Context> context, size_t bytes);
  // Registers existing memory [address, address + bytes), which must outlive the MemMap.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MemMap>> Register(
      std::shared_ptr<Context> context, void* address, size_t bytes);
  ~MemMap();
  MemMap(const MemMap&) = delete;
  MemMap& operator=(const MemMap&) = delete;

  ucp_mem_h get() const { return memh_; }
  uint8_t* address() const { return address_; }
  size_t size() const { return size_; }
  // The packed remote key a peer unpacks with RemoteKey::Unpack.
  [[nodiscard]] absl::StatusOr<std::string> PackRkey() const;

 private:
  MemMap(std::shared_ptr<Context> context, ucp_mem_h memh, uint8_t* address, size_t size)
      : context_(std::move(context)), memh_(memh), address_(address), size_(size) {}
  static absl::StatusOr<std::unique_ptr<MemMap>> Map(std::shared_ptr<Context> context,
                                                     void* address, size_t bytes, bool allocate);
  std::shared_ptr<Context> context_;
  ucp_mem_h memh_;
  uint8_t* address_;
  size_t size_;
};

}  // namespace clusterkv::ucx

#endif  // CLUSTERKV_CORE_UCX_UCX_HANDLES_H_
