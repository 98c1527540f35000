#include "tools/clusterkv_bench/grpc_minimal.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/sync_stream.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_demo/daemon_launcher.h"

namespace clusterkv::bench {
namespace {

constexpr int64_t kMaxSlots = 1 << 16;
// Any method name reaches the generic service; the client calls this one.
constexpr char kMethod[] = "/clusterkv.bench.GrpcMinimal/Stream";

void PutInt64(std::string& out, int64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i)
    b[i] = static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
  out.append(b, 8);
}

int64_t GetInt64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return static_cast<int64_t>(v);
}

// Streams the requested blocks of the pool: one message per write, each a list of slices that
// point into the pool (no copy), the next message when the previous write is done.
class StreamReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit StreamReactor(Ring* pool) : pool_(pool) { StartRead(&incoming_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
      return;
    }
    absl::StatusOr<GrpcMinimalRequest> request = DecodeGrpcMinimalRequest(incoming_);
    if (!request.ok()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          std::string(request.status().message())));
      return;
    }
    if (request->block_bytes > pool_->bytes()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "block larger than the pool"));
      return;
    }
    request_ = *std::move(request);
    counts_ = MessageBlockCounts(static_cast<int64_t>(request_.slots.size()), request_.block_bytes,
                                 request_.message_bytes);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading"));
      return;
    }
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (message_ == counts_.size()) {
      Finish(grpc::Status::OK);
      return;
    }
    slices_.clear();
    const size_t bytes = static_cast<size_t>(request_.block_bytes);
    for (int64_t k = 0; k < counts_[message_]; ++k, ++next_) {
      slices_.emplace_back(
          pool_->Slot(request_.slots[static_cast<size_t>(next_)], request_.block_bytes), bytes,
          grpc::Slice::STATIC_SLICE);
    }
    ++message_;
    outgoing_ = grpc::ByteBuffer(slices_.data(), slices_.size());
    StartWrite(&outgoing_);
  }

  Ring* pool_;
  grpc::ByteBuffer incoming_;
  GrpcMinimalRequest request_;
  std::vector<int64_t> counts_;
  size_t message_ = 0;  // next message
  int64_t next_ = 0;    // next block
  std::vector<grpc::Slice> slices_;
  grpc::ByteBuffer outgoing_;
};

}  // namespace

grpc::ByteBuffer EncodeGrpcMinimalRequest(const GrpcMinimalRequest& request) {
  std::string out;
  out.reserve(24 + 8 * request.slots.size());
  PutInt64(out, request.block_bytes);
  PutInt64(out, request.message_bytes);
  PutInt64(out, static_cast<int64_t>(request.slots.size()));
  for (int64_t s : request.slots) PutInt64(out, s);
  grpc::Slice slice(out);
  return grpc::ByteBuffer(&slice, 1);
}

absl::StatusOr<GrpcMinimalRequest> DecodeGrpcMinimalRequest(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InvalidArgumentError("unreadable request");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  if (bytes.size() < 24 || bytes.size() % 8 != 0) {
    return absl::InvalidArgumentError("request is not a whole header");
  }
  GrpcMinimalRequest r;
  r.block_bytes = GetInt64(bytes.data());
  r.message_bytes = GetInt64(bytes.data() + 8);
  const int64_t n = GetInt64(bytes.data() + 16);
  if (r.block_bytes < 1 || r.message_bytes < 1 || n < 0 || n > kMaxSlots ||
      bytes.size() != static_cast<size_t>(24 + 8 * n)) {
    return absl::InvalidArgumentError("bad request sizes");
  }
  r.slots.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    r.slots[static_cast<size_t>(i)] = GetInt64(bytes.data() + 24 + 8 * i);
    if (r.slots[static_cast<size_t>(i)] < 0) return absl::InvalidArgumentError("negative slot");
  }
  return r;
}

std::vector<int64_t> MessageBlockCounts(int64_t blocks, int64_t block_bytes,
                                        int64_t message_bytes) {
  std::vector<int64_t> counts;
  int64_t in_message = 0;
  int64_t bytes = 0;
  for (int64_t i = 0; i < blocks; ++i) {
    if (in_message > 0 && bytes >= message_bytes) {
      counts.push_back(in_message);
      in_message = 0;
      bytes = 0;
    }
    ++in_message;
    bytes += block_bytes;
  }
  if (in_message > 0) counts.push_back(in_message);
  return counts;
}

class GrpcMinimalServer::Service final : public grpc::CallbackGenericService {
 public:
  explicit Service(Ring* pool) : pool_(pool) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    return new StreamReactor(pool_);
  }

 private:
  Ring* pool_;
};

absl::StatusOr<std::unique_ptr<GrpcMinimalServer>> GrpcMinimalServer::Start(
    const std::string& target, Ring* pool, int max_message_bytes) {
  std::unique_ptr<GrpcMinimalServer> s(new GrpcMinimalServer());
  s->service_ = std::make_unique<Service>(pool);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(target, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  builder.RegisterCallbackGenericService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr)
    return absl::UnavailableError(absl::StrCat("cannot serve on ", target));
  return s;
}

GrpcMinimalServer::~GrpcMinimalServer() {
  if (server_ != nullptr) server_->Shutdown();
}

GrpcMinimalClient::GrpcMinimalClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      method_(std::make_unique<grpc::internal::RpcMethod>(
          kMethod, grpc::internal::RpcMethod::SERVER_STREAMING, channel_)) {}

GrpcMinimalClient::~GrpcMinimalClient() = default;

absl::StatusOr<std::unique_ptr<GrpcMinimalClient>> GrpcMinimalClient::Create(
    const std::string& target, int max_message_bytes) {
  // The same channel settings as client::Connection's.
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(max_message_bytes);
  args.SetMaxReceiveMessageSize(max_message_bytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  if (channel == nullptr) return absl::UnavailableError(absl::StrCat("no channel to ", target));
  return std::unique_ptr<GrpcMinimalClient>(new GrpcMinimalClient(std::move(channel)));
}

absl::Status GrpcMinimalClient::Fetch(const GrpcMinimalRequest& request,
                                      const std::function<uint8_t*(int64_t block)>& destination,
                                      absl::Duration timeout) const {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  // The factory generated stubs use for a server-streaming call, here with raw ByteBuffers
  // both ways (grpc::SerializationTraits<ByteBuffer> moves the received slices, no copy).
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          channel_.get(), *method_, &context, EncodeGrpcMinimalRequest(request)));
  const int64_t blocks = static_cast<int64_t>(request.slots.size());
  const size_t block_bytes = static_cast<size_t>(request.block_bytes);
  int64_t block = 0;
  grpc::ByteBuffer message;
  std::vector<grpc::Slice> slices;
  absl::Status status;
  while (status.ok() && reader->Read(&message)) {
    if (!message.Dump(&slices).ok()) {
      status = absl::DataLossError("unreadable message");
      break;
    }
    size_t offset = 0;  // into the current block; a message holds whole blocks
    for (const grpc::Slice& s : slices) {
      const uint8_t* p = s.begin();
      size_t left = s.size();
      while (left > 0) {
        if (block >= blocks) {
          status = absl::DataLossError("more bytes than the requested blocks");
          break;
        }
        const size_t n = std::min(left, block_bytes - offset);
        std::memcpy(destination(block) + offset, p, n);
        p += n;
        left -= n;
        offset += n;
        if (offset == block_bytes) {
          offset = 0;
          ++block;
        }
      }
      if (!status.ok()) break;
    }
    if (status.ok() && offset != 0) status = absl::DataLossError("a message split a block");
  }
  if (!status.ok()) {
    context.TryCancel();
    (void)reader->Finish();
    return status;
  }
  const grpc::Status finished = reader->Finish();
  if (!finished.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(finished.error_code()),
                        finished.error_message());
  }
  if (block != blocks) return absl::DataLossError("blocks missing from the answer");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GrpcMinimalProcess>> GrpcMinimalProcess::Start(
    const std::string& binary, const std::string& parent_dir, int64_t pool_bytes, uint64_t seed) {
  std::unique_ptr<GrpcMinimalProcess> p(new GrpcMinimalProcess());
  ASSIGN_OR_RETURN(p->dir_, ScratchDir::Create(parent_dir, "grpc_minimal"));
  const std::string socket = p->dir_->Sub("minimal.sock");
  ASSIGN_OR_RETURN(
      p->launcher_,
      demo::DaemonLauncher::Start(binary,
                                  {"--socket=" + socket, absl::StrCat("--pool_bytes=", pool_bytes),
                                   absl::StrCat("--seed=", seed)},
                                  absl::Seconds(60), kGrpcMinimalReadyLine));
  p->target_ = "unix:" + socket;
  return p;
}

pid_t GrpcMinimalProcess::pid() const { return launcher_ != nullptr ? launcher_->pid() : -1; }

GrpcMinimalProcess::~GrpcMinimalProcess() {
  if (launcher_ != nullptr) {
    absl::StatusOr<int> code = launcher_->Stop();
    if (!code.ok() || *code != 0) {
      std::cerr << "clusterkv_bench: the grpc_minimal server did not exit cleanly\n";
    }
  }
  launcher_.reset();
  dir_.reset();
}

}  // namespace clusterkv::bench
