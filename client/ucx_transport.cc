#include "client/ucx_transport.h"

#include <cstring>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "client/ucx_host_memory.h"
#include "core/status_macros.h"
#include "core/ucx/progress_thread.h"
#include "core/ucx/ucx_handles.h"
#include "core/ucx/ucx_status.h"
#include "proto/ucx_wire.h"

namespace clusterkv::client {
namespace {

// Most blocks one completion may report (a request names at most what the client sent).
constexpr size_t kMaxCompletionBlocks = size_t{1} << 20;

void OnSendDone(void* request, ucs_status_t /*status*/, void* user_data) {
  delete static_cast<std::string*>(user_data);
  ucp_request_free(request);
}

absl::Status FromWireCode(int32_t code, absl::string_view message) {
  if (code == 0) return absl::OkStatus();
  if (code < 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InternalError(absl::StrCat("daemon answered unknown code ", code));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

}  // namespace

class UcxTransport::Impl {
 public:
  Impl(Connection* connection, const UcxTransportOptions& options,
       std::shared_ptr<ucx::Context> context, std::shared_ptr<ucx::Worker> worker,
       std::shared_ptr<UcxRegion> region, std::string address, std::string rkey)
      : connection_(connection),
        options_(options),
        context_(std::move(context)),
        worker_(std::move(worker)),
        region_(std::move(region)),
        address_(std::move(address)),
        rkey_(std::move(rkey)) {}

  absl::Status StartProgress() {
    ucp_am_handler_param_t param;
    std::memset(&param, 0, sizeof(param));
    param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                       UCP_AM_HANDLER_PARAM_FIELD_ARG;
    param.id = wire::kAmFetchCompletion;
    param.cb = &Impl::OnCompletion;
    param.arg = this;
    // No progress thread yet: the worker is still ours to call.
    RETURN_IF_ERROR(ucx::FromUcsStatus(ucp_worker_set_am_recv_handler(worker_->get(), &param),
                                       "ucp_worker_set_am_recv_handler"));
    ASSIGN_OR_RETURN(progress_, ucx::ProgressThread::Start(worker_, options_.busy_poll));
    return absl::OkStatus();
  }

  ~Impl() {
    Break(0, absl::CancelledError("UCX transport closing"), /*any_generation=*/true);
    if (progress_ != nullptr) {
      (void)progress_->RunStatus([&]() -> absl::Status {
        endpoint_.reset();
        return absl::OkStatus();
      });
      progress_->Stop();
    }
  }

  absl::Status Connect() {
    // Serialises (re)connects. Held across the ConnectDataPlane RPC (a blocking call, no
    // gRPC Start*) and no UCX call: the endpoint is made on the progress thread.
    absl::MutexLock connect_lock(&connect_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (live_) return absl::OkStatus();
    }
    v1::ConnectDataPlaneRequest request;
    request.set_worker_address(address_);
    request.set_rkey(rkey_);
    request.set_region_base(reinterpret_cast<uint64_t>(region_->base()));
    request.set_region_bytes(region_->size());
    ASSIGN_OR_RETURN(v1::ConnectDataPlaneResponse response,
                     connection_->ConnectDataPlane(request));
    uint64_t generation = 0;
    {
      absl::MutexLock lock(&mu_);
      generation = ++generation_;
    }
    RETURN_IF_ERROR(progress_->RunStatus([&]() -> absl::Status {
      if (endpoint_ != nullptr) endpoint_->MarkFailed();
      endpoint_.reset();
      ASSIGN_OR_RETURN(endpoint_, ucx::Endpoint::Create(
                                      worker_, response.worker_address(),
                                      [this, generation](ucs_status_t status) {
                                        Break(generation,
                                              ucx::FromUcsStatus(status, "daemon endpoint"));
                                      },
                                      response.peer_error_handling()));
      endpoint_generation_ = generation;
      return absl::OkStatus();
    }));
    absl::MutexLock lock(&mu_);
    if (generation_ != generation) return absl::UnavailableError("data-plane session broke");
    session_id_ = response.session_id();
    live_ = true;
    return absl::OkStatus();
  }

  std::unique_ptr<DirectMemory> NewMemory() { return std::make_unique<UcxHostMemory>(region_); }

  // slot_bytes 0: keys+values (FetchInto); > 0: whole blocks (FetchBlocksInto).
  absl::StatusOr<std::vector<DirectFetchResult>> FetchInto(absl::string_view sequence_id,
                                                           absl::Span<const DirectFetch> blocks,
                                                           uint32_t slot_bytes) {
    if (blocks.empty()) return std::vector<DirectFetchResult>();
    if (sequence_id.size() > wire::kMaxTextBytes) {
      return absl::InvalidArgumentError("sequence id too long");
    }
    wire::FetchRequest request;
    request.sequence_id = std::string(sequence_id);
    request.block_slot_bytes = slot_bytes;
    request.entries.reserve(blocks.size());
    for (const DirectFetch& b : blocks) request.entries.push_back(ToWire(b));
    ASSIGN_OR_RETURN(Completion reply, RoundTrip([&](uint64_t request_id, uint64_t session_id) {
                       request.request_id = request_id;
                       request.session_id = session_id;
                       return wire::Encode(request);
                     }));
    const auto* completion = std::get_if<wire::FetchCompletion>(&reply);
    if (completion == nullptr) {
      return absl::DataLossError("daemon answered a fetch with a batch completion");
    }
    RETURN_IF_ERROR(FromWireCode(completion->code, completion->message));
    if (completion->blocks.size() != blocks.size()) {
      return absl::DataLossError(absl::StrCat("daemon reported ", completion->blocks.size(),
                                              " blocks for a request of ", blocks.size()));
    }
    return Results(completion->blocks, blocks);
  }

  // Sequences without blocks and ids too long for the wire are answered here; the others go
  // out in requests of at most kMaxBatchSequences sequences and kMaxBatchTextBytes of ids
  // (one request unless the batch is larger than that).
  absl::StatusOr<std::vector<SequenceFetchResult>> FetchBatchInto(
      absl::Span<const SequenceFetch> batch) {
    std::vector<SequenceFetchResult> results(batch.size(), std::vector<DirectFetchResult>());
    std::vector<size_t> chunk;  // the batch indexes of the next request's sequences
    size_t text_bytes = 4;      // its sequence table
    for (size_t i = 0; i < batch.size(); ++i) {
      const SequenceFetch& part = batch[i];
      if (part.blocks.empty()) continue;  // nothing to recall: no request, as FetchInto
      if (part.sequence_id.size() > wire::kMaxTextBytes) {
        results[i] = absl::InvalidArgumentError("sequence id too long");
        continue;
      }
      const size_t id_bytes = 2 + part.sequence_id.size();
      if (chunk.size() == wire::kMaxBatchSequences ||
          text_bytes + id_bytes > wire::kMaxBatchTextBytes) {
        RETURN_IF_ERROR(FetchChunk(batch, chunk, results));
        chunk.clear();
        text_bytes = 4;
      }
      chunk.push_back(i);
      text_bytes += id_bytes;
    }
    if (!chunk.empty()) RETURN_IF_ERROR(FetchChunk(batch, chunk, results));
    return results;
  }

  uint8_t* region_base() const { return region_->base(); }
  size_t region_bytes() const { return region_->size(); }
  uint64_t session_id() {
    absl::MutexLock lock(&mu_);
    return live_ ? session_id_ : 0;
  }

 private:
  // What a request's completion message decodes to: the reply to a single-sequence request or
  // to a batch.
  using Completion = std::variant<wire::FetchCompletion, wire::BatchFetchCompletion>;

  struct Pending {
    absl::Notification done;
    absl::StatusOr<Completion> result;
  };

  static wire::FetchEntry ToWire(const DirectFetch& b) {
    return wire::FetchEntry{b.id.head.layer, b.id.head.kv_head, b.id.cluster, b.expected_tokens,
                            b.region_offset};
  }

  // The daemon's block results of `blocks`, in order (same length).
  static std::vector<DirectFetchResult> Results(absl::Span<const wire::BlockResult> wire_results,
                                                absl::Span<const DirectFetch> blocks) {
    std::vector<DirectFetchResult> results(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const wire::BlockResult& b = wire_results[i];
      results[i].status = FromWireCode(
          b.code, absl::StrCat("daemon could not recall block ", ToString(blocks[i].id)));
      results[i].num_tokens = b.num_tokens;
      results[i].bytes = b.bytes;
    }
    return results;
  }

  // One batch request for the sequences batch[chunk[k]] (each with blocks), filling their
  // entries of `results`. A whole-request error, or a sequence's verdict that means the plane
  // cannot serve it (IsDataPlaneUnavailable), is returned: as DataPlane::FetchBatchInto, the
  // caller then falls back for the whole batch.
  absl::Status FetchChunk(absl::Span<const SequenceFetch> batch, absl::Span<const size_t> chunk,
                          std::vector<SequenceFetchResult>& results) {
    wire::BatchFetchRequest request;
    request.sequence_ids.reserve(chunk.size());
    for (size_t k = 0; k < chunk.size(); ++k) {
      const SequenceFetch& part = batch[chunk[k]];
      request.sequence_ids.emplace_back(part.sequence_id);
      for (const DirectFetch& b : part.blocks) {
        request.entries.push_back(wire::BatchFetchEntry{ToWire(b), static_cast<uint32_t>(k)});
      }
    }
    ASSIGN_OR_RETURN(Completion reply, RoundTrip([&](uint64_t request_id, uint64_t session_id) {
                       request.request_id = request_id;
                       request.session_id = session_id;
                       return wire::Encode(request);
                     }));
    const auto* completion = std::get_if<wire::BatchFetchCompletion>(&reply);
    if (completion == nullptr) {
      return absl::DataLossError("daemon answered a batch with a single-sequence completion");
    }
    RETURN_IF_ERROR(FromWireCode(completion->code, completion->message));
    if (completion->sequences.size() != chunk.size() ||
        completion->blocks.size() != request.entries.size()) {
      return absl::DataLossError(absl::StrCat("daemon reported ", completion->sequences.size(),
                                              " sequences and ", completion->blocks.size(),
                                              " blocks for a batch of ", chunk.size(), " and ",
                                              request.entries.size()));
    }
    absl::Span<const wire::BlockResult> blocks = completion->blocks;
    for (size_t k = 0; k < chunk.size(); ++k) {
      const SequenceFetch& part = batch[chunk[k]];
      const absl::Span<const wire::BlockResult> mine = blocks.subspan(0, part.blocks.size());
      blocks.remove_prefix(part.blocks.size());
      const wire::SequenceResult& verdict = completion->sequences[k];
      absl::Status status = FromWireCode(verdict.code, verdict.message);
      if (IsDataPlaneUnavailable(status)) return status;
      if (status.ok()) {
        results[chunk[k]] = Results(mine, part.blocks);
      } else {
        results[chunk[k]] = std::move(status);
      }
    }
    return absl::OkStatus();
  }

  // Sends the request `encode` writes (given its request id and the session's id) and waits,
  // bounded by fetch_timeout, for its completion. The Connect() error; UNAVAILABLE when the
  // session broke; DEADLINE_EXCEEDED without a completion in time (the session is then
  // dropped: the next request opens a new one); the UCX error of the send.
  absl::StatusOr<Completion> RoundTrip(
      absl::FunctionRef<std::string(uint64_t request_id, uint64_t session_id)> encode) {
    RETURN_IF_ERROR(Connect());
    Pending pending;
    uint64_t generation = 0;
    uint64_t request_id = 0;
    uint64_t session_id = 0;
    {
      absl::MutexLock lock(&mu_);
      if (!live_) return absl::UnavailableError("no data-plane session");
      request_id = ++next_request_id_;
      session_id = session_id_;
      generation = generation_;
      pending_[request_id] = &pending;
    }
    auto* message = new std::string(encode(request_id, session_id));
    // Sent from this thread, which then progresses the worker itself for up to fetch_spin: a
    // completion arriving in that window costs no thread hand-off at all. After it, the
    // progress thread takes over (EventWatch: it sleeps on the worker's event fd meanwhile).
    absl::Status driven = progress_->Drive([&] {
      Send(generation, request_id, message);
      ucp_worker_h worker = worker_->get();
      const absl::Time until = absl::Now() + options_.fetch_spin;
      while (!pending.done.HasBeenNotified()) {
        if (ucp_worker_progress(worker) == 0 && absl::Now() >= until) break;
      }
    });
    if (!driven.ok()) {
      delete message;
      Complete(request_id, driven);
    }
    // Not in yet: the progress thread takes the completion from the worker's event fd.
    ucx::ProgressThread::EventWatch watch;
    if (driven.ok() && !pending.done.HasBeenNotified()) watch = progress_->WatchEvents();
    if (!pending.done.WaitForNotificationWithTimeout(options_.fetch_timeout)) {
      bool completed = false;
      {
        absl::MutexLock lock(&mu_);
        pending_.erase(request_id);
        completed = pending.done.HasBeenNotified();  // set under mu_ by Complete
      }
      if (!completed) {
        // The daemon may be gone (a restart over shared memory shows no error): start over
        // with a new session on the next fetch.
        Break(generation, absl::DeadlineExceededError("data-plane fetch timed out"));
        return absl::DeadlineExceededError(
            absl::StrCat("no data-plane completion within ", absl::FormatDuration(options_.fetch_timeout)));
      }
    }
    return std::move(pending.result);
  }

  // Progress thread, or a Drive() caller.
  void Send(uint64_t generation, uint64_t request_id, std::string* message) {
    if (endpoint_ == nullptr || endpoint_generation_ != generation || endpoint_->failed()) {
      delete message;
      Complete(request_id, absl::UnavailableError("data-plane session broke"));
      return;
    }
    ucp_request_param_t param;
    std::memset(&param, 0, sizeof(param));
    param.op_attr_mask =
        UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.flags = UCP_AM_SEND_FLAG_EAGER;
    param.cb.send = &OnSendDone;
    param.user_data = message;
    ucs_status_ptr_t sent = ucp_am_send_nbx(endpoint_->get(), wire::kAmFetchRequest, nullptr, 0,
                                            message->data(), message->size(), &param);
    if (sent == nullptr) {
      delete message;  // done at once: the callback will not run
    } else if (UCS_PTR_IS_ERR(sent)) {
      delete message;
      Complete(request_id, ucx::FromUcsStatus(UCS_PTR_STATUS(sent), "ucp_am_send_nbx"));
    }
  }

  // AM callback, inside ucp_worker_progress (the progress thread or a Drive() caller).
  static ucs_status_t OnCompletion(void* arg, const void* /*header*/, size_t /*header_length*/,
                                   void* data, size_t length, const ucp_am_recv_param_t* param) {
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) return UCS_OK;  // daemon: eager
    auto* self = static_cast<Impl*>(arg);
    const absl::string_view bytes(static_cast<const char*>(data), length);
    // A message that does not decode names no request; its request will time out.
    absl::StatusOr<wire::MessageHeader> header = wire::PeekHeader(bytes);
    if (!header.ok()) return UCS_OK;
    if (header->kind == wire::Kind::kBatchFetchCompletion) {
      absl::StatusOr<wire::BatchFetchCompletion> completion = wire::DecodeBatchFetchCompletion(
          bytes, wire::BatchLimits{wire::kMaxBatchSequences, kMaxCompletionBlocks,
                                   wire::kMaxBatchTextBytes});
      if (completion.ok()) self->Complete(header->request_id, Completion(*std::move(completion)));
    } else {
      absl::StatusOr<wire::FetchCompletion> completion =
          wire::DecodeFetchCompletion(bytes, kMaxCompletionBlocks);
      if (completion.ok()) self->Complete(header->request_id, Completion(*std::move(completion)));
    }
    return UCS_OK;
  }

  void Complete(uint64_t request_id, absl::StatusOr<Completion> result) {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;  // timed out already
    it->second->result = std::move(result);
    it->second->done.Notify();
    pending_.erase(it);
  }

  // Ends the session of `generation` (any session when `any_generation`): fails its pending
  // fetches and closes its endpoint. Safe from any thread and from inside progress.
  void Break(uint64_t generation, const absl::Status& why, bool any_generation = false) {
    {
      absl::MutexLock lock(&mu_);
      if (!any_generation && generation != generation_) return;
      live_ = false;
      session_id_ = 0;
      for (auto& [id, pending] : pending_) {
        pending->result = absl::UnavailableError(why.message());
        pending->done.Notify();
      }
      pending_.clear();
    }
    if (any_generation || progress_ == nullptr) return;
    (void)progress_->Post([this, generation] {
      if (endpoint_ != nullptr && endpoint_generation_ == generation) {
        endpoint_->MarkFailed();
        endpoint_.reset();
      }
    });
  }

  Connection* connection_;
  const UcxTransportOptions options_;
  std::shared_ptr<ucx::Context> context_;
  std::shared_ptr<ucx::Worker> worker_;
  std::shared_ptr<UcxRegion> region_;
  const std::string address_;
  const std::string rkey_;
  std::unique_ptr<ucx::ProgressThread> progress_;

  absl::Mutex connect_mu_;
  absl::Mutex mu_;
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t session_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Pending*> pending_ ABSL_GUARDED_BY(mu_);

  // Progress thread only.
  std::shared_ptr<ucx::Endpoint> endpoint_;
  uint64_t endpoint_generation_ = 0;
};

absl::StatusOr<std::unique_ptr<UcxTransport>> UcxTransport::Create(
    Connection* connection, const UcxTransportOptions& options) {
  if (connection == nullptr) return absl::InvalidArgumentError("null connection");
  if (options.region_bytes < (size_t{1} << 20)) {
    return absl::InvalidArgumentError("the UCX region must be at least 1 MiB");
  }
  if (options.fetch_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the UCX fetch timeout must be positive");
  }
  ucx::ContextOptions context_options;
  context_options.transports = options.transports;
  context_options.name = "libclusterkv";
  ASSIGN_OR_RETURN(std::shared_ptr<ucx::Context> context, ucx::Context::Create(context_options));
  ASSIGN_OR_RETURN(std::shared_ptr<ucx::Worker> worker,
                   ucx::Worker::Create(context, /*serialized=*/true));
  ASSIGN_OR_RETURN(std::string address, worker->Address());
  ASSIGN_OR_RETURN(std::shared_ptr<UcxRegion> region,
                   UcxRegion::Create(context, options.region_bytes));
  ASSIGN_OR_RETURN(std::string rkey, region->map().PackRkey());
  auto impl = std::make_unique<Impl>(connection, options, std::move(context), std::move(worker),
                                     std::move(region), std::move(address), std::move(rkey));
  RETURN_IF_ERROR(impl->StartProgress());
  return std::unique_ptr<UcxTransport>(new UcxTransport(std::move(impl)));
}

UcxTransport::UcxTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UcxTransport::~UcxTransport() = default;

absl::Status UcxTransport::Connect() { return impl_->Connect(); }
std::unique_ptr<DirectMemory> UcxTransport::NewMemory() { return impl_->NewMemory(); }
absl::StatusOr<std::vector<DirectFetchResult>> UcxTransport::FetchInto(
    absl::string_view sequence_id, absl::Span<const DirectFetch> blocks) {
  return impl_->FetchInto(sequence_id, blocks, /*slot_bytes=*/0);
}
absl::StatusOr<std::vector<SequenceFetchResult>> UcxTransport::FetchBatchInto(
    absl::Span<const SequenceFetch> batch) {
  return impl_->FetchBatchInto(batch);
}
absl::StatusOr<std::vector<DirectFetchResult>> UcxTransport::FetchBlocksInto(
    absl::string_view sequence_id, absl::Span<const DirectFetch> blocks, uint32_t slot_bytes) {
  if (slot_bytes == 0) return absl::InvalidArgumentError("whole-block slots of 0 bytes");
  return impl_->FetchInto(sequence_id, blocks, slot_bytes);
}
uint8_t* UcxTransport::region_base() const { return impl_->region_base(); }
size_t UcxTransport::region_bytes() const { return impl_->region_bytes(); }
uint64_t UcxTransport::session_id() const { return impl_->session_id(); }

}  // namespace clusterkv::client
