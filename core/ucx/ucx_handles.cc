#include "core/ucx/ucx_handles.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/ucx/ucx_status.h"

namespace clusterkv::ucx {
namespace {

// Bound on an endpoint close: a flush close to a peer that stopped answering is cancelled
// (and the endpoint force-closed) after this long.
constexpr absl::Duration kCloseTimeout = absl::Seconds(5);

}  // namespace

// ---- Context ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Context>> Context::Create(const ContextOptions& options) {
  ucp_config_t* config = nullptr;
  if (ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_config_read");
  }
  if (!options.transports.empty()) {
    if (ucs_status_t s = ucp_config_modify(config, "TLS", options.transports.c_str());
        s != UCS_OK) {
      ucp_config_release(config);
      return absl::InvalidArgumentError(
          absl::StrCat("bad UCX transport list '", options.transports, "': ",
                       ucs_status_string(s)));
    }
  }
  ucp_params_t params;
  std::memset(&params, 0, sizeof(params));
  params.field_mask =
      UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  // MemMap and rkey packing are context calls made off the progress thread.
  params.mt_workers_shared = 1;
  params.name = options.name.c_str();
  ucp_context_h context = nullptr;
  const ucs_status_t s = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (s != UCS_OK) return FromUcsStatus(s, "ucp_init");
  return std::unique_ptr<Context>(new Context(context));
}

Context::~Context() { ucp_cleanup(context_); }

// ---- Worker -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(std::shared_ptr<Context> context,
                                                      bool serialized) {
  if (context == nullptr) return absl::InvalidArgumentError("null UCX context");
  ucp_worker_params_t params;
  std::memset(&params, 0, sizeof(params));
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = serialized ? UCS_THREAD_MODE_SERIALIZED : UCS_THREAD_MODE_SINGLE;
  ucp_worker_h worker = nullptr;
  if (ucs_status_t s = ucp_worker_create(context->get(), &params, &worker); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_worker_create");
  }
  return std::unique_ptr<Worker>(new Worker(std::move(context), worker));
}

Worker::~Worker() { ucp_worker_destroy(worker_); }

absl::StatusOr<std::string> Worker::Address() const {
  ucp_address_t* address = nullptr;
  size_t length = 0;
  if (ucs_status_t s = ucp_worker_get_address(worker_, &address, &length); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_worker_get_address");
  }
  std::string out(reinterpret_cast<const char*>(address), length);
  ucp_worker_release_address(worker_, address);
  return out;
}

// ---- WaitRequest --------------------------------------------------------------------------

absl::Status WaitRequest(ucp_worker_h worker, ucs_status_ptr_t request, absl::string_view what,
                         absl::Time deadline) {
  if (request == nullptr) return absl::OkStatus();
  if (UCS_PTR_IS_ERR(request)) return FromUcsStatus(UCS_PTR_STATUS(request), what);
  ucs_status_t status;
  bool cancelled = false;
  int spins = 0;
  while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) {
    ucp_worker_progress(worker);
    // Reading the clock is cheap next to a progress call, but not free: check every 64.
    if (!cancelled && (++spins & 63) == 0 && absl::Now() >= deadline) {
      ucp_request_cancel(worker, request);
      cancelled = true;
    }
  }
  ucp_request_free(request);
  if (cancelled) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
  }
  return FromUcsStatus(status, what);
}

// ---- Endpoint -----------------------------------------------------------------------------

struct Endpoint::ErrorState {
  ErrorCallback callback;
  bool failed = false;
};

Endpoint::Endpoint(std::shared_ptr<Worker> worker, std::unique_ptr<ErrorState> error)
    : worker_(std::move(worker)), error_(std::move(error)) {}

void Endpoint::OnError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* state = static_cast<ErrorState*>(arg);
  state->failed = true;
  if (state->callback) state->callback(status);
}

bool Endpoint::failed() const { return error_->failed; }
void Endpoint::MarkFailed() { error_->failed = true; }

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Create(
    std::shared_ptr<Worker> worker, absl::string_view remote_worker_address,
    ErrorCallback on_error, bool peer_errors) {
  if (worker == nullptr) return absl::InvalidArgumentError("null UCX worker");
  if (remote_worker_address.empty()) {
    return absl::InvalidArgumentError("empty UCX worker address");
  }
  auto error = std::make_unique<ErrorState>();
  error->callback = std::move(on_error);
  ucp_ep_params_t params;
  std::memset(&params, 0, sizeof(params));
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(remote_worker_address.data());
  params.err_mode = peer_errors ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  params.err_handler.cb = &Endpoint::OnError;
  params.err_handler.arg = error.get();
  ucp_ep_h ep = nullptr;
  if (ucs_status_t s = ucp_ep_create(worker->get(), &params, &ep); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_ep_create");
  }
  std::unique_ptr<Endpoint> out(new Endpoint(std::move(worker), std::move(error)));
  out->ep_ = ep;
  return out;
}

absl::Status Endpoint::Flush(absl::Time deadline) {
  ucp_request_param_t param;
  std::memset(&param, 0, sizeof(param));
  return WaitRequest(worker_->get(), ucp_ep_flush_nbx(ep_, &param), "ucp_ep_flush_nbx",
                     deadline);
}

Endpoint::~Endpoint() {
  if (ep_ == nullptr) return;
  ucp_request_param_t param;
  std::memset(&param, 0, sizeof(param));
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = failed() ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  absl::Status closed = WaitRequest(worker_->get(), ucp_ep_close_nbx(ep_, &param),
                                    "ucp_ep_close_nbx", absl::Now() + kCloseTimeout);
  if (!closed.ok() && !failed()) {
    // The flush close did not finish (a peer that stopped answering): force it.
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    closed = WaitRequest(worker_->get(), ucp_ep_close_nbx(ep_, &param), "ucp_ep_close_nbx");
  }
  (void)closed;  // nothing more a destructor can do; the endpoint is released either way
}

// ---- RemoteKey ----------------------------------------------------------------------------

// UCX 1.13 unpacks a packed rkey without a length and, when one transport's part fails to
// unpack, its cleanup releases parts it never initialised and crashes the process. A peer's
// rkey is therefore checked against the packed layout first: u64 md_map, u8 memory type, then
// per md bit a u8 size and that many bytes, then at most a short system-device trailer.
// This rejects truncated, empty and random blobs; it cannot prove that well-formed bytes are
// a key UCX will accept (see the data-plane notes in server/ucx_endpoint.h).
constexpr int kMaxRkeyMds = 16;        // UCP_MAX_MDS of UCX 1.13
constexpr size_t kMaxRkeyTrailer = 64;  // sys_dev + distances

absl::Status CheckPackedRkey(absl::string_view packed) {
  if (packed.empty()) return absl::InvalidArgumentError("empty remote key");
  if (packed.size() < 9) return absl::InvalidArgumentError("remote key too short");
  uint64_t md_map = 0;
  for (int i = 0; i < 8; ++i) {
    md_map |= static_cast<uint64_t>(static_cast<uint8_t>(packed[i])) << (8 * i);
  }
  if (md_map == 0 || (md_map >> kMaxRkeyMds) != 0) {
    return absl::InvalidArgumentError("remote key names no valid memory domains");
  }
  if (static_cast<uint8_t>(packed[8]) != UCS_MEMORY_TYPE_HOST) {
    return absl::InvalidArgumentError("remote key is not of host memory");
  }
  size_t pos = 9;
  for (int md = 0; md < kMaxRkeyMds; ++md) {
    if ((md_map & (uint64_t{1} << md)) == 0) continue;
    if (pos >= packed.size()) return absl::InvalidArgumentError("remote key truncated");
    const size_t length = static_cast<uint8_t>(packed[pos++]);
    if (length > packed.size() - pos) {
      return absl::InvalidArgumentError("remote key has a malformed transport part");
    }
    pos += length;
  }
  if (packed.size() - pos > kMaxRkeyTrailer) {
    return absl::InvalidArgumentError("remote key has trailing bytes");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RemoteKey>> RemoteKey::Unpack(std::shared_ptr<Endpoint> endpoint,
                                                             absl::string_view packed) {
  if (endpoint == nullptr) return absl::InvalidArgumentError("null UCX endpoint");
  if (packed.empty()) return absl::InvalidArgumentError("empty remote key");
  if (absl::Status s = CheckPackedRkey(packed); !s.ok()) return s;
  // Zero padding after the key: UCX reads it without a length.
  std::string padded(packed);
  padded.resize(packed.size() + 4096, '\0');
  ucp_rkey_h rkey = nullptr;
  if (ucs_status_t s = ucp_ep_rkey_unpack(endpoint->get(), padded.data(), &rkey); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_ep_rkey_unpack");
  }
  return std::unique_ptr<RemoteKey>(new RemoteKey(std::move(endpoint), rkey));
}

RemoteKey::~RemoteKey() { ucp_rkey_destroy(rkey_); }

// ---- MemMap -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<MemMap>> MemMap::Map(std::shared_ptr<Context> context,
                                                    void* address, size_t bytes, bool allocate) {
  if (context == nullptr) return absl::InvalidArgumentError("null UCX context");
  if (bytes == 0) return absl::InvalidArgumentError("cannot map an empty UCX region");
  ucp_mem_map_params_t params;
  std::memset(&params, 0, sizeof(params));
  params.field_mask =
      UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.address = address;
  params.length = bytes;
  params.flags = allocate ? UCP_MEM_MAP_ALLOCATE : 0;
  ucp_mem_h memh = nullptr;
  if (ucs_status_t s = ucp_mem_map(context->get(), &params, &memh); s != UCS_OK) {
    return FromUcsStatus(s, absl::StrCat("ucp_mem_map of ", bytes, " bytes"));
  }
  ucp_mem_attr_t attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  if (ucs_status_t s = ucp_mem_query(memh, &attr); s != UCS_OK) {
    ucp_mem_unmap(context->get(), memh);
    return FromUcsStatus(s, "ucp_mem_query");
  }
  if (attr.length < bytes) {
    ucp_mem_unmap(context->get(), memh);
    return absl::InternalError(
        absl::StrCat("ucp_mem_map gave ", attr.length, " bytes, asked ", bytes));
  }
  auto* base = static_cast<uint8_t*>(attr.address);
  if (allocate) std::memset(base, 0, bytes);
  return std::unique_ptr<MemMap>(new MemMap(std::move(context), memh, base, bytes));
}

absl::StatusOr<std::unique_ptr<MemMap>> MemMap::Allocate(std::shared_ptr<Context> context,
                                                         size_t bytes) {
  return Map(std::move(context), nullptr, bytes, /*allocate=*/true);
}

absl::StatusOr<std::unique_ptr<MemMap>> MemMap::Register(std::shared_ptr<Context> context,
                                                         void* address, size_t bytes) {
  if (address == nullptr) return absl::InvalidArgumentError("null address to register");
  return Map(std::move(context), address, bytes, /*allocate=*/false);
}

MemMap::~MemMap() { ucp_mem_unmap(context_->get(), memh_); }

absl::StatusOr<std::string> MemMap::PackRkey() const {
  void* buffer = nullptr;
  size_t length = 0;
  if (ucs_status_t s = ucp_rkey_pack(context_->get(), memh_, &buffer, &length); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_rkey_pack");
  }
  std::string out(static_cast<const char*>(buffer), length);
  ucp_rkey_buffer_release(buffer);
  return out;
}

}  // namespace clusterkv::ucx
