#include "tools/clusterkv/admin.h"

#include <chrono>
#include <functional>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/rpc_support.h"
#include "tools/clusterkv/health_check.h"

namespace clusterkv::admin {

const char kCommandsUsage[] =
    "Commands:\n"
    "  list                  the tenant's sequences: id, layout, tokens\n"
    "  stats                 tier usage and counters of the daemon\n"
    "  drop <sequence_id>    delete a sequence (every block, index and record)\n"
    "  health                grpc.health.v1 check; exit 0 when SERVING, else 1\n"
    "  index <sequence_id>   clusters and tokens per (layer, kv head)\n"
    "Exit codes: 0 ok, 1 failure (daemon unreachable, call failed), 2 usage error.\n";

namespace {

constexpr int kMaxMessageBytes = 64 << 20;

// One connection to the daemon; every call carries the tenant and the per-call deadline.
class Session {
 public:
  explicit Session(const AdminOptions& options) : options_(options) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (!options.tls_root_cert_pem.empty()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = options.tls_root_cert_pem;
      credentials = grpc::SslCredentials(ssl);
    }
    channel_ = grpc::CreateCustomChannel(options.target, credentials, args);
    stub_ = v1::KvCache::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata(rpc::kTenantMetadataKey, options_.tenant);
    if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(options_.timeout));
    return context;
  }

  v1::KvCache::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const AdminOptions& options() const { return options_; }

 private:
  AdminOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
};

std::string LayoutString(const v1::KvLayout& proto) {
  absl::StatusOr<KvLayout> layout = rpc::FromProto(proto);
  if (!layout.ok()) return "(invalid layout)";
  return layout->DebugString();
}

absl::Status List(Session& session, std::ostream& out) {
  out << absl::StrFormat("%-40s %-48s %12s\n", "SEQUENCE", "LAYOUT", "TOKENS");
  v1::ListSequencesRequest request;
  int64_t listed = 0;
  while (true) {  // the daemon answers a page at a time
    v1::ListSequencesResponse response;
    const grpc::Status s =
        session.stub().ListSequences(session.Context().get(), request, &response);
    if (!s.ok()) return rpc::FromGrpcStatus(s);
    for (const v1::SequenceInfo& info : response.sequences()) {
      out << absl::StrFormat("%-40s %-48s %12d\n", info.sequence_id(),
                             LayoutString(info.layout()), info.num_tokens());
    }
    listed += response.sequences_size();
    if (response.next_start_after().empty()) break;
    request.set_start_after(response.next_start_after());
  }
  out << listed << " sequence(s) of tenant '" << session.options().tenant << "'\n";
  return absl::OkStatus();
}

absl::Status Stats(Session& session, std::ostream& out) {
  v1::StatsResponse r;
  const grpc::Status s = session.stub().Stats(session.Context().get(), v1::StatsRequest(), &r);
  if (!s.ok()) return rpc::FromGrpcStatus(s);
  out << absl::StrFormat("%-6s %12s %10s %12s %12s\n", "TIER", "BYTES", "BLOCKS", "HITS", "MISSES");
  auto row = [&out](const char* name, const v1::TierStats& t) {
    out << absl::StrFormat("%-6s %12s %10d %12d %12d\n", name, FormatBytes(t.bytes()), t.blocks(),
                           t.hits(), t.misses());
  };
  row("host", r.host());
  row("ssd", r.ssd());
  const double used = r.host_capacity_bytes() == 0
                          ? 0.0
                          : 100.0 * static_cast<double>(r.host().bytes()) /
                                static_cast<double>(r.host_capacity_bytes());
  out << absl::StrFormat("host capacity        %s (%.1f%% used)\n",
                         FormatBytes(r.host_capacity_bytes()), used);
  out << absl::StrFormat("evictions            %d\n", r.evictions());
  out << absl::StrFormat("promotions           %d\n", r.promotions());
  out << absl::StrFormat("write-through puts   %d\n", r.write_through_puts());
  out << absl::StrFormat("spilled puts         %d\n", r.spilled_puts());
  out << absl::StrFormat("checksum failures    %d\n", r.checksum_failures());
  out << absl::StrFormat("slab fragmentation   %.3f\n", r.slab_fragmentation());
  out << absl::StrFormat("tenant '%s': %d sequence(s), host %s, ssd %s\n", session.options().tenant,
                         r.sequences(), FormatBytes(r.tenant_host_bytes()),
                         FormatBytes(r.tenant_ssd_bytes()));
  return absl::OkStatus();
}

absl::Status Drop(Session& session, const std::string& sequence_id, std::ostream& out) {
  v1::CloseSequenceRequest request;
  request.set_sequence_id(sequence_id);
  request.set_drop(true);
  v1::CloseSequenceResponse response;
  const grpc::Status s = session.stub().CloseSequence(session.Context().get(), request, &response);
  if (!s.ok()) return rpc::FromGrpcStatus(s);
  out << "dropped sequence '" << sequence_id << "'\n";
  return absl::OkStatus();
}

absl::Status Index(Session& session, const std::string& sequence_id, std::ostream& out) {
  v1::GetIndexRequest request;
  request.set_sequence_id(sequence_id);
  v1::GetIndexResponse r;
  const grpc::Status s = session.stub().GetIndex(session.Context().get(), request, &r);
  if (!s.ok()) return rpc::FromGrpcStatus(s);
  out << "sequence '" << sequence_id << "': " << LayoutString(r.layout()) << ", " << r.num_tokens()
      << " tokens\n";
  out << absl::StrFormat("%6s %8s %10s %12s\n", "LAYER", "KV_HEAD", "CLUSTERS", "TOKENS");
  int64_t clusters = 0;
  for (const v1::HeadIndex& head : r.indexes()) {
    int64_t tokens = 0;
    for (int32_t size : head.sizes()) tokens += size;
    clusters += head.sizes_size();
    out << absl::StrFormat("%6d %8d %10d %12d\n", head.layer(), head.kv_head(), head.sizes_size(),
                           tokens);
  }
  out << r.indexes_size() << " indexed head(s), " << clusters << " cluster(s)\n";
  return absl::OkStatus();
}

// Returns the exit code; prints the status on failure.
int Report(const AdminOptions& options, const std::string& command, const absl::Status& status,
           std::ostream& err) {
  if (status.ok()) return kExitOk;
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
    err << "clusterkv: cannot reach clusterkvd at " << options.target << ": " << status.message()
        << "\n";
  } else {
    err << "clusterkv " << command << ": " << absl::StatusCodeToString(status.code()) << ": "
        << status.message() << "\n";
  }
  return kExitFailure;
}

int UsageError(const std::string& message, std::ostream& err) {
  err << "clusterkv: " << message << "\n\n" << kCommandsUsage << "See clusterkv --help.\n";
  return kExitUsage;
}

}  // namespace

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit + 1 < static_cast<int>(std::size(kUnits))) {
    value /= 1024.0;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

int RunCommand(const AdminOptions& options, const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err) {
  if (args.empty()) return UsageError("no command given", err);
  const std::string& command = args[0];
  const size_t operands = args.size() - 1;
  const bool takes_sequence = command == "drop" || command == "index";
  const bool takes_none = command == "list" || command == "stats" || command == "health";
  if (!takes_sequence && !takes_none) {
    return UsageError(absl::StrCat("unknown command '", command, "'"), err);
  }
  if (takes_none && operands != 0) {
    return UsageError(absl::StrCat("'", command, "' takes no operands"), err);
  }
  if (takes_sequence && operands != 1) {
    return UsageError(absl::StrCat("'", command, "' takes one operand: <sequence_id>"), err);
  }
  Session session(options);
  if (command == "health") {
    absl::StatusOr<HealthStatus> health = CheckHealth(session.channel(), "", options.timeout);
    if (!health.ok()) return Report(options, command, health.status(), err);
    out << HealthStatusName(*health) << "\n";
    return *health == HealthStatus::kServing ? kExitOk : kExitFailure;
  }
  absl::Status status;
  if (command == "list") status = List(session, out);
  if (command == "stats") status = Stats(session, out);
  if (command == "drop") status = Drop(session, args[1], out);
  if (command == "index") status = Index(session, args[1], out);
  return Report(options, command, status, err);
}

}  // namespace clusterkv::admin
