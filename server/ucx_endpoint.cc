#include "server/ucx_endpoint.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"
#include "core/stream_copy.h"
#include "core/ucx/progress_thread.h"
#include "core/ucx/ucx_handles.h"
#include "core/ucx/ucx_status.h"
#include "proto/ucx_wire.h"
#include "server/metrics/daemon_metrics.h"  // observability

namespace clusterkv::server {
namespace {

// Largest worker address / packed rkey a client may send (UCX's are a few hundred bytes).
constexpr size_t kMaxBlobBytes = size_t{64} << 10;
// UCX reads packed worker addresses without a length: parse them from a zero-padded copy so a
// truncated blob can never make it read past our buffer (RemoteKey pads rkeys itself).
constexpr size_t kBlobPadding = 4096;
// Bound on one put, the final flush and the reply: a client that stops progressing its worker
// must not hold the progress thread forever.
constexpr absl::Duration kTransferTimeout = absl::Seconds(10);
// Most worker-pool tasks one request's sequences are resolved by: a batch of cold sequences
// takes a few queue slots, not one per sequence, and still keeps that many threads busy.
constexpr size_t kMaxResolveTasks = 8;

std::string Padded(const std::string& blob) {
  std::string out = blob;
  out.resize(blob.size() + kBlobPadding, '\0');
  return out;
}

struct Session {
  uint64_t id = 0;
  CallContext call;
  uint64_t region_base = 0;
  uint64_t region_bytes = 0;
  std::shared_ptr<ucx::Endpoint> endpoint;
  std::unique_ptr<ucx::RemoteKey> rkey;  // holds `endpoint` too: released first
  // The client's region mapped into this process (ucp_rkey_ptr: same host, shared memory), or
  // null: blocks are then written with ucp_put_nbx.
  uint8_t* direct_base = nullptr;
};

// Where `rkey`'s whole region [base, base + bytes) is mapped here, or null when UCX cannot map
// it (another host, tcp only) or maps it in pieces.
uint8_t* MapDirect(ucp_rkey_h rkey, uint64_t base, uint64_t bytes) {
  void* first = nullptr;
  void* last = nullptr;
  if (bytes == 0 || ucp_rkey_ptr(rkey, base, &first) != UCS_OK ||
      ucp_rkey_ptr(rkey, base + bytes - 1, &last) != UCS_OK) {
    return nullptr;
  }
  auto* p = static_cast<uint8_t*>(first);
  return static_cast<uint8_t*>(last) == p + (bytes - 1) ? p : nullptr;
}

// Completion of a send: frees the request and the message buffer.
void OnSendDone(void* request, ucs_status_t /*status*/, void* user_data) {
  delete static_cast<std::string*>(user_data);
  ucp_request_free(request);
}

}  // namespace

// Whether UCX may pick a shared-memory transport: an explicit transport list (the option, else
// $UCX_TLS) that names none keeps it on tcp, where peer error handling must stay on.
static bool SharedMemoryPossible(const std::string& option) {
  std::string tls = option;
  if (tls.empty()) {
    const char* env = std::getenv("UCX_TLS");
    if (env == nullptr || *env == '\0') return true;
    tls = env;
  }
  for (absl::string_view t : absl::StrSplit(tls, ',')) {
    t = absl::StripPrefix(t, "^");
    if (t == "all" || t == "sm" || t == "shm" || t == "posix" || t == "sysv" || t == "cma" ||
        t == "knem" || t == "xpmem") {
      return true;
    }
  }
  return false;
}

class UcxDataPlane::Impl {
 public:
  Impl(std::shared_ptr<ucx::Context> context, std::shared_ptr<ucx::Worker> worker,
       std::unique_ptr<ucx::ProgressThread> progress, std::string address,
       const UcxDataPlaneOptions& options)
      : options_(options),
        context_(std::move(context)),
        worker_(std::move(worker)),
        progress_(std::move(progress)),
        address_(std::move(address)) {}

  absl::Status Register(void* base, size_t bytes) {
    if (arena_ != nullptr) return absl::FailedPreconditionError("arena already registered");
    ASSIGN_OR_RETURN(arena_, ucx::MemMap::Register(context_, base, bytes));
    return absl::OkStatus();
  }
  void Unregister() { arena_.reset(); }

  absl::Status Start(RequestHandler* handler, WorkerPool* pool) {
    return progress_->RunStatus([&]() -> absl::Status {
      if (handler_ != nullptr) return absl::FailedPreconditionError("already started");
      handler_ = handler;
      metrics_ = handler->options().instrumentation.metrics;
      pool_ = pool;
      progress_->SetTickOnThread([this] { Tick(); });
      ucp_am_handler_param_t param;
      std::memset(&param, 0, sizeof(param));
      param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                         UCP_AM_HANDLER_PARAM_FIELD_ARG;
      param.id = wire::kAmFetchRequest;
      param.cb = &Impl::OnFetchRequest;
      param.arg = this;
      return ucx::FromUcsStatus(ucp_worker_set_am_recv_handler(worker_->get(), &param),
                                "ucp_worker_set_am_recv_handler");
    });
  }

  absl::StatusOr<v1::ConnectDataPlaneResponse> Connect(const CallContext& call,
                                                       const v1::ConnectDataPlaneRequest& req) {
    if (req.worker_address().empty() || req.worker_address().size() > kMaxBlobBytes) {
      return absl::InvalidArgumentError("worker_address must be 1 byte to 64 KiB");
    }
    if (req.rkey().empty() || req.rkey().size() > kMaxBlobBytes) {
      return absl::InvalidArgumentError("rkey must be 1 byte to 64 KiB");
    }
    if (req.region_base() == 0 || req.region_bytes() == 0 ||
        req.region_base() + req.region_bytes() < req.region_base()) {
      return absl::InvalidArgumentError("region_base/region_bytes describe no valid region");
    }
    // Checked before any endpoint exists (UCX parses neither blob with a length).
    RETURN_IF_ERROR(ucx::CheckPackedRkey(req.rkey()));
    const std::string address = Padded(req.worker_address());
    const std::string& rkey = req.rkey();
    const uint64_t id = NewSessionId();
    const bool peer_errors =
        options_.peer_errors == UcxPeerErrors::kAlways ||
        (options_.peer_errors == UcxPeerErrors::kRemoteOnly &&
         (!call.local_peer || !SharedMemoryPossible(options_.transports)));
    ASSIGN_OR_RETURN(uint64_t session_id, progress_->Run<uint64_t>([&]() -> absl::StatusOr<uint64_t> {
      if (handler_ == nullptr) return absl::FailedPreconditionError("data plane not started");
      if (sessions_.size() >= options_.max_sessions) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the daemon holds ", sessions_.size(), " data-plane sessions"));
      }
      auto session = std::make_unique<Session>();
      session->id = id;
      session->call = call;
      session->region_base = req.region_base();
      session->region_bytes = req.region_bytes();
      absl::StatusOr<std::unique_ptr<ucx::Endpoint>> ep = ucx::Endpoint::Create(
          worker_, address, [this, id](ucs_status_t) {
            // Inside progress: close the endpoint later, from a task.
            (void)progress_->Post([this, id] { DropSession(id); });
          },
          peer_errors);
      if (!ep.ok()) return absl::InvalidArgumentError(ep.status().message());
      session->endpoint = *std::move(ep);
      absl::StatusOr<std::unique_ptr<ucx::RemoteKey>> key =
          ucx::RemoteKey::Unpack(session->endpoint, rkey);
      if (!key.ok()) {
        session->endpoint->MarkFailed();  // nothing to flush: force the close
        return absl::InvalidArgumentError(key.status().message());
      }
      session->rkey = *std::move(key);
      if (options_.direct_shm) {
        session->direct_base =
            MapDirect(session->rkey->get(), session->region_base, session->region_bytes);
      }
      sessions_.emplace(id, std::move(session));
      num_sessions_.store(sessions_.size(), std::memory_order_relaxed);
      return id;
    }));
    v1::ConnectDataPlaneResponse response;
    response.set_worker_address(address_);
    response.set_session_id(session_id);
    response.set_peer_error_handling(peer_errors);
    return response;
  }

  void Stop() {
    (void)progress_->RunStatus([&]() -> absl::Status {
      if (handler_ != nullptr) {
        ucp_am_handler_param_t param;
        std::memset(&param, 0, sizeof(param));
        param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB;
        param.id = wire::kAmFetchRequest;
        param.cb = nullptr;
        (void)ucp_worker_set_am_recv_handler(worker_->get(), &param);
      }
      sessions_.clear();  // closes every endpoint, on this thread
      in_flight_.clear();  // no put runs any more: release their blocks
      num_sessions_.store(0, std::memory_order_relaxed);
      progress_->SetTickOnThread(nullptr);
      handler_ = nullptr;
      metrics_ = nullptr;
      return absl::OkStatus();
    });
    progress_->Stop();
  }

  size_t num_sessions() const { return num_sessions_.load(std::memory_order_relaxed); }
  const std::string& worker_address() const { return address_; }
  uint64_t requests_served() const { return requests_served_.load(std::memory_order_relaxed); }

 private:
  uint64_t NewSessionId() {
    absl::MutexLock lock(&rng_mu_);
    uint64_t id = 0;
    while (id == 0) id = absl::Uniform<uint64_t>(rng_);
    return id;
  }

  // AM callback, inside ucp_worker_progress: copy the message out and serve it from a task.
  static ucs_status_t OnFetchRequest(void* arg, const void* /*header*/, size_t /*header_length*/,
                                     void* data, size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<Impl*>(arg);
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
      return UCS_OK;  // clients send requests eagerly; a rendezvous one is dropped
    }
    std::string bytes(static_cast<const char*>(data), length);
    (void)self->progress_->Post([self, bytes = std::move(bytes)] { self->Serve(bytes); });
    return UCS_OK;
  }

  void DropSession(uint64_t id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    it->second->endpoint->MarkFailed();
    sessions_.erase(it);  // rkey, then endpoint (forced close: no put of it runs after this)
    num_sessions_.store(sessions_.size(), std::memory_order_relaxed);
    // Its requests in flight are over: release their blocks (a late flush callback finds none).
    absl::erase_if(in_flight_, [id](const auto& entry) { return entry.second->session_id == id; });
  }

  // A fetch request between its arrival and its reply: one part per sequence (a single-sequence
  // request is one part), each resolved on the progress thread when its sequence is loaded and
  // its blocks are all in the host tier, else by a task of the worker pool; then every part's
  // blocks are put on the progress thread behind one flush and one reply. The deadline is set
  // once, at arrival, and bounds the whole request.
  struct FetchJob {
    struct Part {
      size_t first = 0;  // its first entry's index in the request (and in the reply's blocks)
      std::vector<wire::FetchEntry> entries;
      v1::FetchClustersRequest fetch;
      RequestHandler::ResolvedFetch resolved;
    };
    bool batch = false;  // a batch request, answered with a batch completion
    uint64_t request_id = 0;
    uint64_t session_id = 0;
    uint32_t block_slot_bytes = 0;  // see wire::FetchRequest (single requests only)
    CallContext call;
    absl::Time deadline;
    std::vector<Part> parts;  // the request's sequences, in order
    // Parts still being resolved by the pool, plus one while they are being handed out;
    // whoever takes it to zero completes the request.
    std::atomic<size_t> unresolved{0};
  };

  // The live session a request names; null when it is unknown, dropped or failing (nobody to
  // answer).
  Session* LiveSession(uint64_t id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->endpoint->failed()) return nullptr;
    return it->second.get();
  }

  // One fetch message, on the progress thread: a single-sequence or a batch request, decoded
  // and bound to its session's tenant (never one from the message). A single request that does
  // not decode is dropped (no trustworthy session to answer; the client times out); a batch
  // that does not decode (malformed, or beyond the limits) but names a live session is answered
  // with the reason as its whole-request status.
  void Serve(const std::string& bytes) {
    if (handler_ == nullptr) return;
    absl::StatusOr<wire::MessageHeader> header = wire::PeekHeader(bytes);
    if (!header.ok()) return;
    Session* session = LiveSession(header->session_id);
    if (session == nullptr) return;
    const size_t max_clusters =
        static_cast<size_t>(std::max(handler_->options().max_fetch_clusters, 0));
    auto job = std::make_shared<FetchJob>();
    job->request_id = header->request_id;
    job->session_id = session->id;
    job->call = session->call;  // the session's tenant, never one from the message
    job->deadline = absl::Now() + kTransferTimeout;
    if (header->kind == wire::Kind::kBatchFetchRequest) {
      absl::StatusOr<wire::BatchFetchRequest> request = wire::DecodeBatchFetchRequest(
          bytes,
          wire::BatchLimits{wire::kMaxBatchSequences, max_clusters, wire::kMaxBatchTextBytes});
      if (!request.ok()) {
        wire::BatchFetchCompletion refused;
        refused.request_id = header->request_id;
        refused.session_id = session->id;
        refused.code = static_cast<int32_t>(request.status().code());
        refused.message = std::string(request.status().message());
        Answer(*session, wire::Encode(refused), 0);
        return;
      }
      job->batch = true;
      job->parts.resize(request->sequence_ids.size());
      for (size_t k = 0; k < job->parts.size(); ++k) {
        job->parts[k].fetch.set_sequence_id(std::move(request->sequence_ids[k]));
      }
      for (size_t i = 0; i < request->entries.size(); ++i) {
        const wire::BatchFetchEntry& e = request->entries[i];
        FetchJob::Part& part = job->parts[e.sequence];  // checked by the decoder
        if (part.entries.empty()) part.first = i;       // entries come grouped by sequence
        part.entries.push_back(e.block);
      }
    } else {
      absl::StatusOr<wire::FetchRequest> request = wire::DecodeFetchRequest(bytes, max_clusters);
      if (!request.ok()) return;
      job->block_slot_bytes = request->block_slot_bytes;
      FetchJob::Part& part = job->parts.emplace_back();
      part.fetch.set_sequence_id(std::move(request->sequence_id));
      part.entries = std::move(request->entries);
    }
    for (FetchJob::Part& part : job->parts) {
      for (const wire::FetchEntry& e : part.entries) {
        v1::ClusterRef* ref = part.fetch.add_clusters();
        ref->set_layer(e.layer);
        ref->set_kv_head(e.kv_head);
        ref->set_cluster(e.cluster);
      }
    }
    Resolve(std::move(job));
  }

  // Resolves every part without waiting on the store: a part whose blocks are all
  // host-resident here (one batch pin, no I/O), the others on the worker pool, spread over at
  // most kMaxResolveTasks tasks that post the resolved blocks back to this thread (a full pool
  // makes a refused task's parts RESOURCE_EXHAUSTED). Whoever resolves last completes the
  // request.
  void Resolve(std::shared_ptr<FetchJob> job) {
    std::vector<size_t> slow;  // parts that need I/O (or a trace, or a peer)
    for (size_t k = 0; k < job->parts.size(); ++k) {
      FetchJob::Part& part = job->parts[k];
      std::optional<RequestHandler::ResolvedFetch> resident =
          handler_->TryResolveResident(job->call, part.fetch);
      if (resident.has_value()) {
        part.resolved = *std::move(resident);
      } else if (pool_ == nullptr) {  // no pool (tests of the data plane alone): resolve here
        part.resolved = handler_->ResolveFetch(job->call, part.fetch);
      } else {
        slow.push_back(k);
      }
    }
    const size_t tasks = std::min(slow.size(), kMaxResolveTasks);
    job->unresolved.store(tasks + 1, std::memory_order_relaxed);
    for (size_t t = 0; t < tasks; ++t) {
      std::vector<size_t> parts;  // slow[t], slow[t + tasks], ...
      for (size_t i = t; i < slow.size(); i += tasks) parts.push_back(slow[i]);
      // The task reads the handler through its own copy of the pointer: handler_ belongs to
      // this thread (Stop clears it); the handler itself outlives the pool.
      const absl::Status queued = pool_->Submit([this, job, parts, handler = handler_] {
        for (size_t k : parts) {
          job->parts[k].resolved = handler->ResolveFetch(job->call, job->parts[k].fetch);
        }
        if (job->unresolved.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          // After Stop() the post fails and the job (with its pins) is released here.
          (void)progress_->Post([this, job] { Complete(job); });
        }
      });
      if (!queued.ok()) {
        // RESOURCE_EXHAUSTED: the daemon is saturated.
        for (size_t k : parts) job->parts[k].resolved.status = queued;
        job->unresolved.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
    if (job->unresolved.fetch_sub(1, std::memory_order_acq_rel) == 1) Complete(std::move(job));
  }

  // Puts a resolved request's blocks and starts the flush that completes them, on the progress
  // thread. The reply goes out when the flush completes (OnFlushDone); nothing here waits. A
  // part that failed to resolve gets its status (a batch's sequence verdict, a single request's
  // whole-request status) and nothing written.
  void Complete(std::shared_ptr<FetchJob> job) {
    if (handler_ == nullptr) return;  // stopped meanwhile
    Session* session = LiveSession(job->session_id);
    if (session == nullptr) return;  // the client went away meanwhile

    size_t entries = 0;
    for (const FetchJob::Part& part : job->parts) entries += part.entries.size();
    std::vector<wire::BlockResult> blocks(entries);
    bool put_any = false;
    for (FetchJob::Part& part : job->parts) {
      const absl::Span<wire::BlockResult> results =
          absl::MakeSpan(blocks).subspan(part.first, part.entries.size());
      const absl::Status& verdict = part.resolved.status;
      // A put that fails means the client stopped taking data (without peer error handling
      // this is how a vanished client shows), and so does, for a single request, an
      // UNAVAILABLE one: release its session. A batch's sequence keeps its verdict.
      bool stopped = false;
      if (verdict.ok()) {
        stopped =
            !PutBlocks(*session, part.entries, job->block_slot_bytes, part.resolved, results).ok();
        put_any = true;
      } else if (job->batch) {
        for (wire::BlockResult& r : results) r.code = static_cast<int32_t>(verdict.code());
      } else {
        stopped = absl::IsUnavailable(verdict);
      }
      if (stopped) {
        DropSession(session->id);
        return;
      }
    }
    std::string reply =
        job->batch ? BatchReply(*job, std::move(blocks)) : SingleReply(*job, std::move(blocks));
    if (!put_any) {  // nothing was put: answer now
      Answer(*session, std::move(reply), job->parts.size());
      return;
    }
    auto flight = std::make_unique<InFlight>();
    flight->session_id = session->id;
    flight->deadline = job->deadline;
    flight->reply = std::move(reply);
    flight->sequences = job->parts.size();
    flight->blocks = std::move(job);
    StartFlush(*session, std::move(flight));
  }

  static std::string SingleReply(const FetchJob& job, std::vector<wire::BlockResult> blocks) {
    wire::FetchCompletion completion;
    completion.request_id = job.request_id;
    completion.session_id = job.session_id;
    const absl::Status& status = job.parts[0].resolved.status;
    completion.code = static_cast<int32_t>(status.code());
    completion.message = std::string(status.message());
    completion.blocks = std::move(blocks);
    return wire::Encode(completion);
  }

  static std::string BatchReply(const FetchJob& job, std::vector<wire::BlockResult> blocks) {
    wire::BatchFetchCompletion completion;
    completion.request_id = job.request_id;
    completion.session_id = job.session_id;
    for (const FetchJob::Part& part : job.parts) {
      const absl::Status& verdict = part.resolved.status;
      completion.sequences.push_back(wire::SequenceResult{static_cast<int32_t>(verdict.code()),
                                                          std::string(verdict.message())});
    }
    completion.blocks = std::move(blocks);
    return wire::Encode(completion);
  }

  // What a flush's completion callback needs to find its request.
  struct FlushContext {
    Impl* self;
    uint64_t flight;
  };

  // A request whose puts are being flushed: answered when the flush completes, or its session
  // dropped when the request's deadline passes first (Tick).
  struct InFlight {
    uint64_t session_id = 0;
    absl::Time deadline;
    std::string reply;                   // the encoded completion
    size_t sequences = 1;                // the sequences the request named (metrics)
    std::shared_ptr<const void> blocks;  // the job: holds its blocks' pins (or copies)
  };

  // Starts the non-blocking flush that completes every put issued for `flight`.
  void StartFlush(Session& session, std::unique_ptr<InFlight> flight) {
    const uint64_t id = next_flight_++;
    ucp_request_param_t param;
    std::memset(&param, 0, sizeof(param));
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &Impl::OnFlushDone;
    param.user_data = new FlushContext{this, id};
    ucs_status_ptr_t flush = ucp_ep_flush_nbx(session.endpoint->get(), &param);
    if (flush == nullptr || UCS_PTR_IS_ERR(flush)) {
      delete static_cast<FlushContext*>(param.user_data);  // the callback will not run
      if (UCS_PTR_IS_ERR(flush)) {
        DropSession(session.id);
        return;
      }
      Finish(*flight, UCS_OK);
      return;
    }
    in_flight_.emplace(id, std::move(flight));
  }

  // Flush completion, inside ucp_worker_progress on the progress thread.
  static void OnFlushDone(void* request, ucs_status_t status, void* user_data) {
    auto* context = static_cast<FlushContext*>(user_data);
    Impl* self = context->self;
    const uint64_t id = context->flight;
    delete context;
    ucp_request_free(request);
    // Answer outside progress (a reply is a send).
    (void)self->progress_->Post([self, id, status] {
      auto it = self->in_flight_.find(id);
      if (it == self->in_flight_.end()) return;  // its session was dropped meanwhile
      std::unique_ptr<InFlight> flight = std::move(it->second);
      self->in_flight_.erase(it);
      self->Finish(*flight, status);
    });
  }

  // Replies to a flushed request (or drops its session when the flush failed).
  void Finish(InFlight& flight, ucs_status_t flushed) {
    flight.blocks.reset();  // every put is complete (or failed): release the blocks
    auto it = sessions_.find(flight.session_id);
    if (it == sessions_.end()) return;
    Session& session = *it->second;
    if (flushed != UCS_OK || session.endpoint->failed()) {
      DropSession(session.id);
      return;
    }
    // Direct writes (memcpy into the mapped region) happen-before the completion is sent.
    std::atomic_thread_fence(std::memory_order_release);
    Answer(session, std::move(flight.reply), flight.sequences);
  }

  // Counts the request (naming `sequences` sequences) as answered, then sends its reply: a
  // client that has its reply finds the request counted.
  void Answer(Session& session, std::string reply, size_t sequences) {
    requests_served_.fetch_add(1, std::memory_order_relaxed);
    if (metrics_ != nullptr) metrics_->ObserveUcxRequest(sequences);
    Reply(session, std::move(reply));
  }

  // Runs on every turn of the progress loop: a request whose flush has not completed by its
  // deadline belongs to a client that stopped taking data; its session is dropped (which
  // force-closes the endpoint and releases the request's blocks).
  void Tick() {
    if (in_flight_.empty()) return;
    const absl::Time now = absl::Now();
    std::vector<uint64_t> expired;
    for (const auto& [id, flight] : in_flight_) {
      if (flight->deadline < now) expired.push_back(flight->session_id);
    }
    for (uint64_t session : expired) DropSession(session);
  }

  // Puts one sequence's resolved blocks, `entries` of its request in order, and sets each
  // block's result in `results`; nothing here waits. The blocks' pins (or copies) must stay
  // held until the endpoint's flush has completed every put issued here (StartFlush).
  // UNAVAILABLE when the endpoint failed or a put could not be issued (the client stopped
  // taking data); OK otherwise, whatever the blocks' own codes.
  absl::Status PutBlocks(Session& session, absl::Span<const wire::FetchEntry> entries,
                         uint32_t block_slot_bytes, const RequestHandler::ResolvedFetch& resolved,
                         absl::Span<wire::BlockResult> results) {
    const KvLayout& layout = resolved.plan.layout;
    const uint64_t row_bytes = static_cast<uint64_t>(layout.head_dim) * DTypeSize(layout.dtype);
    std::vector<ucs_status_ptr_t> pending;
    pending.reserve(entries.size());
    absl::Status put_error;
    auto put_one = [&](size_t index, const RequestHandler::ResolvedBlock& block) -> absl::Status {
      const wire::FetchEntry& entry = entries[index];
      wire::BlockResult& result = results[index];
      const int32_t tokens = block.num_tokens;
      result.num_tokens = tokens;
      if (entry.expected_tokens > 0 && entry.expected_tokens != tokens) {
        return absl::FailedPreconditionError(absl::StrCat(
            "block holds ", tokens, " tokens, the request expected ", entry.expected_tokens));
      }
      uint64_t positions = static_cast<uint64_t>(tokens) * sizeof(int32_t);
      uint64_t payload = static_cast<uint64_t>(tokens) * 2 * row_bytes;
      if (positions + payload != block.bytes.size()) {
        return absl::DataLossError("stored block size disagrees with its token count");
      }
      if (block_slot_bytes > 0) {
        // A whole block (a peer daemon pulling it into its own store): positions too.
        positions = 0;
        payload = block.bytes.size();
        if (payload > block_slot_bytes) {
          result.bytes = payload;  // tells the puller how large a slot it needs
          return absl::OutOfRangeError(absl::StrCat("block of ", payload,
                                                    " bytes exceeds the request's ",
                                                    block_slot_bytes, "-byte slots"));
        }
      }
      if (entry.slot_offset > session.region_bytes ||
          payload > session.region_bytes - entry.slot_offset) {
        return absl::InvalidArgumentError(
            absl::StrCat("slot [", entry.slot_offset, ", +", payload,
                         ") leaves the registered ", session.region_bytes, "-byte region"));
      }
      absl::StatusOr<ucs_status_ptr_t> issued = IssuePut(
          session, block.bytes.data() + positions, payload, session.region_base + entry.slot_offset);
      if (!issued.ok()) {
        put_error = issued.status();
        return put_error;
      }
      if (*issued != nullptr) pending.push_back(*issued);
      result.bytes = payload;
      return absl::OkStatus();
    };
    for (size_t i = 0; i < resolved.blocks.size() && i < entries.size(); ++i) {
      const RequestHandler::ResolvedBlock& block = resolved.blocks[i];
      absl::Status s = block.status;
      if (!put_error.ok() || session.endpoint->failed()) {
        s = absl::CancelledError("fetch stopped before this block");
      } else if (s.ok()) {
        s = put_one(i, block);
      }
      results[i].code = static_cast<int32_t>(s.code());
    }
    // A put in flight completes with the endpoint's flush (StartFlush); its request is released
    // by UCX when it does.
    for (ucs_status_ptr_t p : pending) ucp_request_free(p);
    if (session.endpoint->failed()) {
      return absl::UnavailableError("client endpoint failed during the fetch");
    }
    if (!put_error.ok()) {  // the client stopped taking data: give up on it
      return absl::UnavailableError(put_error.message());
    }
    return absl::OkStatus();
  }
  // Starts a put; null when it completed at once. Its source must stay valid until the request
  // completes.
  absl::StatusOr<ucs_status_ptr_t> IssuePut(Session& session, const uint8_t* source,
                                            uint64_t bytes, uint64_t remote) {
    if (bytes == 0) return nullptr;
    if (session.direct_base != nullptr) {
      // Same host: the region is mapped here, so the block is one copy (the caller checked
      // [remote, remote + bytes) against the region). Streaming stores: this process never
      // reads the client's cache memory back (D51). Visible before the completion message
      // (StreamCopy fences; Serve's release fence orders the rest).
      StreamCopy(session.direct_base + (remote - session.region_base), source, bytes);
      return nullptr;
    }
    ucp_request_param_t param;
    std::memset(&param, 0, sizeof(param));
    if (arena_ != nullptr && source >= arena_->address() &&
        source + bytes <= arena_->address() + arena_->size()) {
      param.op_attr_mask = UCP_OP_ATTR_FIELD_MEMH;
      param.memh = arena_->get();
    }
    ucs_status_ptr_t request =
        ucp_put_nbx(session.endpoint->get(), source, bytes, remote, session.rkey->get(), &param);
    if (UCS_PTR_IS_ERR(request)) return ucx::FromUcsStatus(UCS_PTR_STATUS(request), "ucp_put_nbx");
    return request;
  }

  void Reply(Session& session, std::string reply) {
    auto* message = new std::string(std::move(reply));
    ucp_request_param_t param;
    std::memset(&param, 0, sizeof(param));
    param.op_attr_mask =
        UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.flags = UCP_AM_SEND_FLAG_EAGER;
    param.cb.send = &OnSendDone;
    param.user_data = message;
    ucs_status_ptr_t request = ucp_am_send_nbx(session.endpoint->get(), wire::kAmFetchCompletion,
                                               nullptr, 0, message->data(), message->size(),
                                               &param);
    // Done at once or failed: the callback will not run. In flight: it frees both.
    if (request == nullptr || UCS_PTR_IS_ERR(request)) delete message;
  }

  const UcxDataPlaneOptions options_;
  std::shared_ptr<ucx::Context> context_;
  std::shared_ptr<ucx::Worker> worker_;
  std::unique_ptr<ucx::ProgressThread> progress_;
  const std::string address_;
  std::unique_ptr<ucx::MemMap> arena_;

  absl::Mutex rng_mu_;
  absl::BitGen rng_ ABSL_GUARDED_BY(rng_mu_);

  // Progress thread only.
  RequestHandler* handler_ = nullptr;
  metrics::DaemonMetrics* metrics_ = nullptr;  // the handler's; null: no metrics
  WorkerPool* pool_ = nullptr;  // fetches that need I/O; null: resolved on this thread
  absl::flat_hash_map<uint64_t, std::unique_ptr<Session>> sessions_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<InFlight>> in_flight_;
  uint64_t next_flight_ = 1;

  std::atomic<size_t> num_sessions_{0};
  std::atomic<uint64_t> requests_served_{0};
};

absl::StatusOr<std::unique_ptr<UcxDataPlane>> UcxDataPlane::Create(
    const UcxDataPlaneOptions& options) {
  ucx::ContextOptions context_options;
  context_options.transports = options.transports;
  context_options.name = "clusterkvd";
  ASSIGN_OR_RETURN(std::shared_ptr<ucx::Context> context, ucx::Context::Create(context_options));
  ASSIGN_OR_RETURN(std::shared_ptr<ucx::Worker> worker, ucx::Worker::Create(context));
  ASSIGN_OR_RETURN(std::string address, worker->Address());
  ASSIGN_OR_RETURN(std::unique_ptr<ucx::ProgressThread> progress,
                   ucx::ProgressThread::Start(worker, options.busy_poll));
  return std::unique_ptr<UcxDataPlane>(new UcxDataPlane(std::make_unique<Impl>(
      std::move(context), std::move(worker), std::move(progress), std::move(address), options)));
}

UcxDataPlane::UcxDataPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

UcxDataPlane::~UcxDataPlane() { Stop(); }

absl::Status UcxDataPlane::Register(void* base, size_t bytes) {
  return impl_->Register(base, bytes);
}

void UcxDataPlane::Unregister(void* /*base*/, size_t /*bytes*/) { impl_->Unregister(); }

absl::Status UcxDataPlane::Start(RequestHandler* handler, WorkerPool* pool) {
  if (handler == nullptr) return absl::InvalidArgumentError("null request handler");
  return impl_->Start(handler, pool);
}

absl::StatusOr<v1::ConnectDataPlaneResponse> UcxDataPlane::Connect(
    const CallContext& call, const v1::ConnectDataPlaneRequest& request) {
  return impl_->Connect(call, request);
}

void UcxDataPlane::Stop() { impl_->Stop(); }

size_t UcxDataPlane::num_sessions() const { return impl_->num_sessions(); }
const std::string& UcxDataPlane::worker_address() const { return impl_->worker_address(); }
uint64_t UcxDataPlane::requests_served() const { return impl_->requests_served(); }

}  // namespace clusterkv::server
