#include "client/connection.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/sync_stream.h"
#include "proto/fetch_wire.h"
#include "proto/rpc_support.h"

namespace clusterkv::client {
namespace {

constexpr char kFetchClustersMethod[] = "/clusterkv.v1.KvCache/FetchClusters";

}  // namespace

absl::Status ConnectionOptions::Validate() const {
  if (target.empty()) return absl::InvalidArgumentError("connection target is empty");
  if (tenant.empty() || tenant.size() > 128) {
    return absl::InvalidArgumentError("tenant must be 1-128 bytes");
  }
  for (char c : tenant) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("tenant contains a control character");
    }
  }
  for (char c : bearer_token) {  // a header value: printable ASCII only
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return absl::InvalidArgumentError("bearer_token must be printable ASCII without spaces");
    }
  }
  if (!tls_target_name_override.empty() && tls_root_cert_file.empty()) {
    return absl::InvalidArgumentError("tls_target_name_override needs tls_root_cert_file");
  }
  if (call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("call_timeout must be positive");
  }
  if (max_message_bytes < (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes must be at least 1 MiB, got ", max_message_bytes));
  }
  return retry.Validate();
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(ConnectionOptions options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_root_cert_file.empty()) {
    std::ifstream in(options.tls_root_cert_file, std::ios::binary);
    std::ostringstream pem;
    pem << in.rdbuf();
    if (!in.good() || pem.str().empty()) {
      return absl::NotFoundError(
          absl::StrCat("cannot read tls_root_cert_file '", options.tls_root_cert_file, "'"));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_target_name_override.empty()) {
      args.SetSslTargetNameOverride(options.tls_target_name_override);
    }
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  return CreateWithChannel(std::move(channel), std::move(options));
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::CreateWithChannel(
    std::shared_ptr<grpc::Channel> channel, ConnectionOptions options) {
  if (channel == nullptr) return absl::InvalidArgumentError("null channel");
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<v1::KvCache::StubInterface> stub = v1::KvCache::NewStub(channel);
  return std::unique_ptr<Connection>(
      new Connection(std::move(channel), std::move(stub), std::move(options)));
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::CreateWithStub(
    std::unique_ptr<v1::KvCache::StubInterface> stub, ConnectionOptions options) {
  if (stub == nullptr) return absl::InvalidArgumentError("null stub");
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<Connection>(new Connection(nullptr, std::move(stub), std::move(options)));
}

Connection::Connection(std::shared_ptr<grpc::Channel> channel,
                       std::unique_ptr<v1::KvCache::StubInterface> stub, ConnectionOptions options)
    : channel_(std::move(channel)), stub_(std::move(stub)), options_(std::move(options)) {
  if (options_.clock == nullptr) options_.clock = MakeSystemClock();
  if (channel_ != nullptr) {
    // The method the generated stub registers for FetchClusters, read here with raw responses.
    fetch_method_ = std::make_unique<grpc::internal::RpcMethod>(
        kFetchClustersMethod, grpc::internal::RpcMethod::SERVER_STREAMING, channel_);
  }
}

void Connection::Prepare(grpc::ClientContext* context) const {
  context->AddMetadata(rpc::kTenantMetadataKey, options_.tenant);
  if (!options_.bearer_token.empty()) {
    context->AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  context->set_deadline(absl::ToChronoTime(options_.clock->Now() + options_.call_timeout));
}

namespace {

// Runs a unary call with retries. `call` issues one attempt into a fresh context and response.
template <typename Resp, typename Call>
absl::StatusOr<Resp> RetryUnary(const RetryPolicy& policy, Clock& clock,
                                const std::function<void(grpc::ClientContext*)>& prepare,
                                Call call) {
  Resp response;
  absl::Status status = RetryWithBackoff(policy, clock, [&](int32_t) {
    grpc::ClientContext context;
    prepare(&context);
    response.Clear();
    return rpc::FromGrpcStatus(call(&context, &response));
  });
  if (!status.ok()) return status;
  return response;
}

}  // namespace

absl::StatusOr<v1::OpenSequenceResponse> Connection::OpenSequence(
    const v1::OpenSequenceRequest& request) {
  return RetryUnary<v1::OpenSequenceResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::OpenSequenceResponse* r) {
        return stub_->OpenSequence(c, request, r);
      });
}

absl::Status Connection::CloseSequence(const v1::CloseSequenceRequest& request) {
  v1::CloseSequenceResponse response;
  return RetryWithBackoff(options_.retry, clock(), [&](int32_t attempt) {
    grpc::ClientContext context;
    Prepare(&context);
    absl::Status s = rpc::FromGrpcStatus(stub_->CloseSequence(&context, request, &response));
    // A retried close that finds nothing means the lost attempt closed it.
    if (attempt > 0 && absl::IsNotFound(s)) return absl::OkStatus();
    return s;
  });
}

absl::StatusOr<v1::GetIndexResponse> Connection::GetIndex(const v1::GetIndexRequest& request) {
  return RetryUnary<v1::GetIndexResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::GetIndexResponse* r) {
        return stub_->GetIndex(c, request, r);
      });
}

absl::StatusOr<v1::PutStateResponse> Connection::PutState(const v1::PutStateRequest& request) {
  // Chunks are immutable and the state record is a whole-record write: a retry is safe.
  return RetryUnary<v1::PutStateResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::PutStateResponse* r) {
        return stub_->PutState(c, request, r);
      });
}

absl::StatusOr<v1::GetStateResponse> Connection::GetState(const v1::GetStateRequest& request) {
  return RetryUnary<v1::GetStateResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::GetStateResponse* r) {
        return stub_->GetState(c, request, r);
      });
}

absl::StatusOr<v1::SealDocumentResponse> Connection::SealDocument(
    const v1::SealDocumentRequest& request) {
  return RetryUnary<v1::SealDocumentResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::SealDocumentResponse* r) {
        return stub_->SealDocument(c, request, r);
      });
}

absl::StatusOr<v1::FindPrefixResponse> Connection::FindPrefix(
    const v1::FindPrefixRequest& request) {
  return RetryUnary<v1::FindPrefixResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::FindPrefixResponse* r) {
        return stub_->FindPrefix(c, request, r);
      });
}

absl::StatusOr<v1::GrantDocumentResponse> Connection::GrantDocument(
    const v1::GrantDocumentRequest& request) {
  // Idempotent: granting twice (or revoking twice) answers OK.
  return RetryUnary<v1::GrantDocumentResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::GrantDocumentResponse* r) {
        return stub_->GrantDocument(c, request, r);
      });
}

absl::StatusOr<v1::ListSequencesResponse> Connection::ListSequences() {
  // The daemon answers a page at a time (its --max_list_sequences); read them all.
  v1::ListSequencesRequest request;
  v1::ListSequencesResponse all;
  while (true) {
    absl::StatusOr<v1::ListSequencesResponse> page = RetryUnary<v1::ListSequencesResponse>(
        options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
        [&](grpc::ClientContext* c, v1::ListSequencesResponse* r) {
          return stub_->ListSequences(c, request, r);
        });
    if (!page.ok()) return page.status();
    for (v1::SequenceInfo& info : *page->mutable_sequences()) {
      *all.add_sequences() = std::move(info);
    }
    if (page->next_start_after().empty()) return all;
    request.set_start_after(page->next_start_after());
  }
}

absl::StatusOr<v1::SelectResponse> Connection::Select(const v1::SelectRequest& request) {
  return RetryUnary<v1::SelectResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::SelectResponse* r) { return stub_->Select(c, request, r); });
}

absl::StatusOr<v1::StatsResponse> Connection::Stats() {
  const v1::StatsRequest request;
  return RetryUnary<v1::StatsResponse>(
      options_.retry, clock(), [this](grpc::ClientContext* c) { Prepare(c); },
      [&](grpc::ClientContext* c, v1::StatsResponse* r) { return stub_->Stats(c, request, r); });
}

absl::Status Connection::ReportClientStats(const v1::ReportClientStatsRequest& request) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::ReportClientStatsResponse response;
  return rpc::FromGrpcStatus(stub_->ReportClientStats(&context, request, &response));
}

Connection::~Connection() {
  absl::MutexLock lock(&hints_mu_);
  hints_mu_.Await(absl::Condition(
      +[](int* in_flight) { return *in_flight == 0; }, &hints_in_flight_));
}

bool Connection::HintClusters(const v1::HintClustersRequest& request) {
  {
    absl::MutexLock lock(&hints_mu_);
    if (hints_in_flight_ >= kMaxHintsInFlight) {
      ++hints_dropped_;
      return false;
    }
    ++hints_in_flight_;
  }
  // Owned by the call until its callback, which deletes it and then lets the destructor go.
  struct Call {
    grpc::ClientContext context;
    v1::HintClustersRequest request;
    v1::HintClustersResponse response;
  };
  auto* call = new Call;
  Prepare(&call->context);
  call->request = request;
  stub_->async()->HintClusters(&call->context, &call->request, &call->response,
                               [this, call](grpc::Status status) {
                                 delete call;
                                 absl::MutexLock lock(&hints_mu_);
                                 if (!status.ok()) ++hints_refused_;
                                 --hints_in_flight_;
                               });
  return true;
}

uint64_t Connection::hints_dropped() const {
  absl::MutexLock lock(&hints_mu_);
  return hints_dropped_;
}

uint64_t Connection::hints_refused() const {
  absl::MutexLock lock(&hints_mu_);
  return hints_refused_;
}

absl::StatusOr<v1::AppendClustersResponse> Connection::AppendClusters(
    const v1::AppendClustersRequest& request) {
  // Retried as it is: the daemon answers a retry of an applied append with OK when the
  // request names its first cluster ids (HeadIndex.first_cluster).
  v1::AppendClustersResponse response;
  absl::Status status = RetryWithBackoff(options_.retry, clock(), [&](int32_t) {
    grpc::ClientContext context;
    Prepare(&context);
    response.Clear();
    return rpc::FromGrpcStatus(stub_->AppendClusters(&context, request, &response));
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::PutClustersResponse> Connection::PutOnce(
    absl::Span<const v1::PutClustersRequest> messages) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::PutClustersResponse response;
  std::unique_ptr<grpc::ClientWriterInterface<v1::PutClustersRequest>> writer =
      stub_->PutClusters(&context, &response);
  for (const v1::PutClustersRequest& message : messages) {
    // A failed write means the stream is over (the daemon answered early, or the connection
    // broke); Finish() says which.
    if (!writer->Write(message)) break;
  }
  writer->WritesDone();
  absl::Status status = rpc::FromGrpcStatus(writer->Finish());
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::PutClustersResponse> Connection::PutBlockByBlock(
    absl::Span<const v1::PutClustersRequest> messages) {
  v1::PutClustersResponse total;
  auto put_one = [&](const v1::PutClustersRequest& message) -> absl::Status {
    absl::StatusOr<v1::PutClustersResponse> r;
    absl::Status s = RetryWithBackoff(options_.retry, clock(), [&](int32_t) {
      r = PutOnce(absl::MakeConstSpan(&message, 1));
      return r.status();
    });
    if (absl::IsAlreadyExists(s)) return absl::OkStatus();
    if (!s.ok()) return s;
    total.set_blocks_stored(total.blocks_stored() + r->blocks_stored());
    total.set_bytes_stored(total.bytes_stored() + r->bytes_stored());
    return absl::OkStatus();
  };
  v1::PutClustersRequest tail;  // indexes and the token count go last, after every block
  for (const v1::PutClustersRequest& message : messages) {
    for (const v1::ClusterBlock& block : message.blocks()) {
      v1::PutClustersRequest one;
      one.set_sequence_id(message.sequence_id());
      one.set_write_through(message.write_through());
      *one.add_blocks() = block;
      if (absl::Status s = put_one(one); !s.ok()) return s;
    }
    tail.set_sequence_id(message.sequence_id());
    tail.set_write_through(tail.write_through() || message.write_through());
    for (const v1::HeadIndex& index : message.indexes()) *tail.add_indexes() = index;
    if (message.num_tokens() > 0) tail.set_num_tokens(message.num_tokens());
  }
  if (tail.indexes_size() > 0 || tail.num_tokens() > 0) {
    if (absl::Status s = put_one(tail); !s.ok()) return s;
  }
  return total;
}

absl::StatusOr<v1::PutClustersResponse> Connection::PutClusters(
    absl::Span<const v1::PutClustersRequest> messages) {
  if (messages.empty()) return v1::PutClustersResponse();
  absl::StatusOr<v1::PutClustersResponse> result;
  int32_t attempts = 0;
  absl::Status status = RetryWithBackoff(options_.retry, clock(), [&](int32_t attempt) {
    attempts = attempt + 1;
    result = PutOnce(messages);
    return result.status();
  });
  if (absl::IsAlreadyExists(status) && attempts > 1) {
    // A lost attempt stored a prefix of the stream (or all of it). The daemon refuses the
    // whole stream at the first existing block, so store the rest block by block.
    return PutBlockByBlock(messages);
  }
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<v1::ConnectDataPlaneResponse> Connection::ConnectDataPlane(
    const v1::ConnectDataPlaneRequest& request) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::ConnectDataPlaneResponse response;
  RETURN_IF_ERROR(rpc::FromGrpcStatus(stub_->ConnectDataPlane(&context, request, &response)));
  return response;
}

absl::Status Connection::FetchClusters(const v1::FetchClustersRequest& request,
                                       const BlockCallback& on_block) {
  absl::Status callback_status;  // the callback's error ends the fetch, never retried
  absl::Status malformed;        // a response that is not a FetchClustersResponse: DataLoss
  const auto deliver = [&](const v1::ClusterBlock& block) {
    callback_status = on_block(block);
    return callback_status;
  };
  absl::Status status = RetryWithBackoff(options_.retry, clock(), [&](int32_t) -> absl::Status {
    grpc::ClientContext context;
    Prepare(&context);
    bool stopped = false;
    grpc::Status finished;
    if (fetch_method_ != nullptr) {
      // Responses read raw and walked block by block (proto/fetch_wire.h): each block's bytes
      // are copied once, into one reused ClusterBlock, and never parsed into a whole message.
      std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
          grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
              channel_.get(), *fetch_method_, &context, request));
      grpc::ByteBuffer message;
      v1::ClusterBlock scratch;
      while (!stopped && reader->Read(&message)) {
        const absl::Status s = wire::ForEachFetchedBlock(message, scratch, deliver);
        if (!s.ok() && callback_status.ok()) malformed = s;
        stopped = !s.ok();
      }
      if (stopped) context.TryCancel();
      finished = reader->Finish();
    } else {  // over an injected stub (tests): the typed stream
      std::unique_ptr<grpc::ClientReaderInterface<v1::FetchClustersResponse>> reader =
          stub_->FetchClusters(&context, request);
      v1::FetchClustersResponse response;
      while (!stopped && reader->Read(&response)) {
        for (const v1::ClusterBlock& block : response.blocks()) {
          if (!deliver(block).ok()) {
            stopped = true;
            break;
          }
        }
      }
      if (stopped) context.TryCancel();
      finished = reader->Finish();
    }
    if (!callback_status.ok()) {
      // Finish() said CANCELLED, our own doing.
      return absl::CancelledError("fetch cancelled by its block callback");
    }
    if (!malformed.ok()) return malformed;
    return rpc::FromGrpcStatus(finished);
  });
  if (!callback_status.ok()) return callback_status;
  return status;
}

}  // namespace clusterkv::client
