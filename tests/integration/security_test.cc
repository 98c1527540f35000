// Tenants and security against the real clusterkvd:
//   - the matrix: every RPC x (own tenant / other tenant / no credentials / bad token), with the
//     expected status code asserted (token authentication: portable, needs no second uid);
//   - peer credentials on the Unix socket: the test's own uid mapped to a tenant sees its
//     sequences (and the clusterkv-tenant metadata is ignored); a map without it refuses the
//     connection;
//   - TCP needs a bearer token even in the peercred default;
//   - per-tenant quotas: RESOURCE_EXHAUSTED at the limit, other tenants unaffected.
// The TTL sweep is covered by tests/unit/security_ttl_test.cc (fake clock).
#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/auth/credentials.h"
#include "tests/integration/daemon_fixture.h"

namespace clusterkv::testing {
namespace {

using grpc::StatusCode;

constexpr char kTokenA[] = "token-of-tenant-a-0123456789";
constexpr char kTokenB[] = "token-of-tenant-b-9876543210";

// Who calls: the metadata a call carries.
struct Caller {
  std::string name;
  std::string token;            // "" = no authorization metadata
  std::string tenant_metadata;  // always sent; only --auth=none would honour it
};

class Calls {
 public:
  Calls(const std::string& target, Caller caller)
      : client_(MakeKvCacheClient(target, caller.tenant_metadata)), caller_(std::move(caller)) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = client_.Context(absl::Seconds(20));
    if (!caller_.token.empty()) context->AddMetadata("authorization", "Bearer " + caller_.token);
    return context;
  }
  v1::KvCache::Stub& stub() const { return *client_.stub; }
  const std::string& name() const { return caller_.name; }

  grpc::Status Open(const std::string& id, bool must_exist, v1::OpenSequenceResponse* out) const {
    v1::OpenSequenceRequest request;
    request.set_sequence_id(id);
    if (!must_exist) *request.mutable_layout() = TestLayout();
    request.set_must_exist(must_exist);
    return stub().OpenSequence(Context().get(), request, out);
  }
  grpc::Status Put(const std::vector<v1::PutClustersRequest>& messages) const {
    v1::PutClustersResponse response;
    auto context = Context();
    auto writer = stub().PutClusters(context.get(), &response);
    for (const v1::PutClustersRequest& m : messages) {
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  grpc::Status PutData(const std::string& id, const SequenceData& data) const {
    std::vector<v1::PutClustersRequest> messages;
    for (size_t i = 0; i < data.blocks.size(); i += 4) {
      v1::PutClustersRequest m;
      m.set_sequence_id(id);
      for (size_t j = i; j < std::min(data.blocks.size(), i + 4); ++j)
        *m.add_blocks() = data.blocks[j];
      messages.push_back(std::move(m));
    }
    v1::PutClustersRequest last;
    last.set_sequence_id(id);
    last.set_num_tokens(data.num_tokens);
    for (const v1::HeadIndex& index : data.indexes) *last.add_indexes() = index;
    messages.push_back(std::move(last));
    return Put(messages);
  }
  grpc::Status Fetch(const std::string& id, const v1::ClusterRef& ref, int* blocks) const {
    v1::FetchClustersRequest request;
    request.set_sequence_id(id);
    *request.add_clusters() = ref;
    auto context = Context();
    auto reader = stub().FetchClusters(context.get(), request);
    v1::FetchClustersResponse message;
    *blocks = 0;
    while (reader->Read(&message)) *blocks += message.blocks_size();
    return reader->Finish();
  }

 private:
  KvCacheClient client_;
  Caller caller_;
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string TokenLine(const std::string& tenant, const std::string& token) {
  return absl::StrCat(tenant, ":", server::auth::ToHex(server::auth::Sha256(token)), "\n");
}

// A daemon with the given extra flags; the scratch directory also holds the credential files.
class SecurityTest : public ::testing::Test {
 protected:
  SecurityTest() : files_("clusterkv-security") {
    WriteFile(tokens_file(),
              "# test tokens\n" + TokenLine("tenant-a", kTokenA) + TokenLine("tenant-b", kTokenB));
  }
  ~SecurityTest() override {
    if (daemon_ != nullptr && daemon_->running()) {
      absl::StatusOr<int> code = daemon_->Stop();
      EXPECT_TRUE(code.ok() && *code == 0) << daemon_->output();
    }
  }

  void StartDaemon(std::vector<std::string> flags) {
    DaemonProcessOptions options;
    options.flags = std::move(flags);
    daemon_ = std::make_unique<DaemonProcess>(options);
    const absl::Status started = daemon_->Start();
    ASSERT_TRUE(started.ok()) << started << "\n" << daemon_->output();
  }
  std::string tokens_file() const { return files_.Sub("tokens"); }
  std::string target() const { return daemon_->target(); }

  ScratchDir files_;
  std::unique_ptr<DaemonProcess> daemon_;
};

v1::SelectRequest SelectOn(const std::string& id) {
  v1::SelectRequest request;
  request.set_sequence_id(id);
  request.set_layer(0);
  request.set_budget(64);
  const v1::KvLayout layout = TestLayout();
  for (int i = 0; i < layout.num_q_heads() * layout.head_dim(); ++i) {
    request.add_queries(0.01f * static_cast<float>(i % 13));
  }
  return request;
}

// Every RPC once, by `caller`, on tenant-a's sequence "seq"; the codes by RPC name.
std::vector<std::pair<std::string, grpc::Status>> RunEveryRpc(const Calls& caller,
                                                              const SequenceData& data) {
  std::vector<std::pair<std::string, grpc::Status>> codes;
  v1::OpenSequenceResponse opened;
  codes.emplace_back("OpenSequence(must_exist)", caller.Open("seq", true, &opened));
  {
    v1::ListSequencesResponse response;
    grpc::Status s = caller.stub().ListSequences(caller.Context().get(), {}, &response);
    // Another tenant's list succeeds but must not show tenant-a's sequence.
    if (s.ok() && response.sequences_size() != (caller.name() == "own" ? 1 : 0)) {
      s = grpc::Status(StatusCode::INTERNAL, "wrong sequences listed");
    }
    codes.emplace_back("ListSequences", s);
  }
  {
    v1::PutClustersRequest m;
    m.set_sequence_id("seq");
    codes.emplace_back("PutClusters", caller.Put({m}));
  }
  {
    v1::AppendClustersRequest request;
    request.set_sequence_id("seq");
    v1::AppendClustersResponse response;
    codes.emplace_back("AppendClusters",
                       caller.stub().AppendClusters(caller.Context().get(), request, &response));
  }
  {
    v1::GetIndexRequest request;
    request.set_sequence_id("seq");
    v1::GetIndexResponse response;
    grpc::Status s = caller.stub().GetIndex(caller.Context().get(), request, &response);
    if (s.ok() && response.indexes_size() != static_cast<int>(data.indexes.size())) {
      s = grpc::Status(StatusCode::INTERNAL, "wrong index");
    }
    codes.emplace_back("GetIndex", s);
  }
  {
    int blocks = 0;
    grpc::Status s = caller.Fetch("seq", data.blocks[0].id(), &blocks);
    if (s.ok() && blocks != 1) s = grpc::Status(StatusCode::INTERNAL, "wrong block count");
    codes.emplace_back("FetchClusters", s);
  }
  {
    v1::SelectResponse response;
    codes.emplace_back("Select",
                       caller.stub().Select(caller.Context().get(), SelectOn("seq"), &response));
  }
  {
    v1::StatsResponse response;
    grpc::Status s = caller.stub().Stats(caller.Context().get(), {}, &response);
    if (s.ok() && response.sequences() != (caller.name() == "own" ? 1u : 0u)) {
      s = grpc::Status(StatusCode::INTERNAL, "stats leak another tenant's sequences");
    }
    codes.emplace_back("Stats", s);
  }
  {
    v1::ReportClientStatsRequest request;
    request.set_device_cache_hit_tokens(1);
    v1::ReportClientStatsResponse response;
    codes.emplace_back("ReportClientStats",
                       caller.stub().ReportClientStats(caller.Context().get(), request, &response));
  }
  {
    v1::HintClustersRequest request;
    request.set_sequence_id("seq");
    *request.add_clusters() = Ref(0, 0, 0);
    v1::HintClustersResponse response;
    codes.emplace_back("HintClusters",
                       caller.stub().HintClusters(caller.Context().get(), request, &response));
  }
  // Sessions and documents: a checkpoint, its read-back, sealing it as a document, finding it
  // and granting it. Another tenant finds nothing and names nothing.
  const std::string hash(32, 'h');
  {
    v1::PutStateRequest request;
    request.set_sequence_id("seq");
    request.mutable_state()->set_num_tokens(1);
    v1::PutStateResponse response;
    codes.emplace_back("PutState",
                       caller.stub().PutState(caller.Context().get(), request, &response));
  }
  {
    v1::GetStateRequest request;
    request.set_sequence_id("seq");
    v1::GetStateResponse response;
    codes.emplace_back("GetState",
                       caller.stub().GetState(caller.Context().get(), request, &response));
  }
  {
    v1::SealDocumentRequest request;
    request.set_sequence_id("seq");
    request.mutable_segments()->add_hashes(hash);
    request.mutable_segments()->add_tokens(1);
    for (int l = 0; l < TestLayout().num_layers(); ++l) request.mutable_segments()->add_clusters(0);
    v1::SealDocumentResponse response;
    codes.emplace_back("SealDocument",
                       caller.stub().SealDocument(caller.Context().get(), request, &response));
  }
  {
    v1::FindPrefixRequest request;
    request.add_hashes(hash);
    v1::FindPrefixResponse response;
    grpc::Status s = caller.stub().FindPrefix(caller.Context().get(), request, &response);
    if (s.ok() && response.document() != (caller.name() == "own" ? "seq" : "")) {
      s = grpc::Status(StatusCode::INTERNAL, "a document seen across tenants");
    }
    codes.emplace_back("FindPrefix", s);
  }
  {
    v1::GrantDocumentRequest request;
    request.set_sequence_id("seq");
    request.set_tenant("tenant-z");
    v1::GrantDocumentResponse response;
    codes.emplace_back("GrantDocument",
                       caller.stub().GrantDocument(caller.Context().get(), request, &response));
  }
  {
    v1::CloseSequenceRequest request;
    request.set_sequence_id("seq");
    v1::CloseSequenceResponse response;
    codes.emplace_back("CloseSequence",
                       caller.stub().CloseSequence(caller.Context().get(), request, &response));
  }
  return codes;
}

TEST_F(SecurityTest, EveryRpcByOwnOtherNoAndBadCredentials) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--auth=token", "--tokens_file=" + tokens_file()}));
  const Calls own(target(), {"own", kTokenA, "tenant-b"});  // metadata tenant is ignored
  const Calls other(target(), {"other", kTokenB, "tenant-a"});
  const Calls none(target(), {"none", "", "tenant-a"});
  const Calls bad(target(), {"bad", "not-a-valid-token", "tenant-a"});

  const SequenceData data = MakeSequenceData(/*seed=*/8, /*clusters=*/2, /*layers=*/4);
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(own.Open("seq", false, &opened));
  ASSERT_TRUE(opened.created());
  ASSERT_GRPC_OK(own.PutData("seq", data));

  // Other tenant: no existence leak (NOT_FOUND) on every call naming the sequence; tenant-wide
  // calls succeed on its own (empty) view.
  const std::vector<std::pair<std::string, StatusCode>> other_codes = {
      {"OpenSequence(must_exist)", StatusCode::NOT_FOUND},
      {"ListSequences", StatusCode::OK},
      {"PutClusters", StatusCode::NOT_FOUND},
      {"AppendClusters", StatusCode::NOT_FOUND},
      {"GetIndex", StatusCode::NOT_FOUND},
      {"FetchClusters", StatusCode::NOT_FOUND},
      {"Select", StatusCode::NOT_FOUND},
      {"Stats", StatusCode::OK},
      {"ReportClientStats", StatusCode::OK},
      {"HintClusters", StatusCode::OK},  // answered before any lookup: promotes nothing
      {"PutState", StatusCode::NOT_FOUND},
      {"GetState", StatusCode::NOT_FOUND},
      {"SealDocument", StatusCode::NOT_FOUND},
      {"FindPrefix", StatusCode::OK},  // its own (empty) directory
      {"GrantDocument", StatusCode::NOT_FOUND},
      {"CloseSequence", StatusCode::NOT_FOUND},
  };
  for (const Calls* caller : {&other, &none, &bad, &own}) {  // own last: it closes "seq"
    const auto codes = RunEveryRpc(*caller, data);
    ASSERT_EQ(codes.size(), other_codes.size());
    for (size_t i = 0; i < codes.size(); ++i) {
      const auto& [rpc, status] = codes[i];
      ASSERT_EQ(rpc, other_codes[i].first);
      StatusCode want = StatusCode::OK;
      if (caller == &other) want = other_codes[i].second;
      if (caller == &none || caller == &bad) want = StatusCode::UNAUTHENTICATED;
      EXPECT_EQ(status.error_code(), want)
          << caller->name() << " " << rpc << ": " << status.error_message();
      if (caller == &none || caller == &bad) {  // one message: never which part failed
        EXPECT_EQ(status.error_message(), "the call carries no valid credentials for this daemon");
      }
    }
  }
  // ConnectDataPlane creates a session for the caller's tenant; without credentials it is
  // refused before the request is looked at. (Its own outcome depends on UCX in the build.)
  for (const Calls* caller : {&own, &other, &none, &bad}) {
    v1::ConnectDataPlaneRequest request;
    v1::ConnectDataPlaneResponse response;
    const grpc::Status s =
        caller->stub().ConnectDataPlane(caller->Context().get(), request, &response);
    if (caller == &none || caller == &bad) {
      EXPECT_EQ(s.error_code(), StatusCode::UNAUTHENTICATED) << caller->name();
    } else {
      EXPECT_NE(s.error_code(), StatusCode::UNAUTHENTICATED) << caller->name();
    }
  }
}

TEST_F(SecurityTest, PeerCredentialsMapOwnUidToTenant) {
  WriteFile(files_.Sub("peers"), absl::StrCat("# uid:tenant\n", getuid(), ":tenant-a\n"));
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--auth=peercred", "--tokens_file=" + tokens_file(),
                                       "--peer_tenants_file=" + files_.Sub("peers")}));
  // No token: the socket peer's uid decides; the metadata's "tenant-b" is ignored.
  const Calls by_uid(target(), {"uid", "", "tenant-b"});
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(by_uid.Open("peer-seq", false, &opened));
  // tenant-a's token sees the sequence the uid created; tenant-b's does not.
  const Calls a(target(), {"a", kTokenA, ""});
  const Calls b(target(), {"b", kTokenB, ""});
  EXPECT_TRUE(a.Open("peer-seq", true, &opened).ok());
  EXPECT_EQ(b.Open("peer-seq", true, &opened).error_code(), StatusCode::NOT_FOUND);
  // A bad token on the socket is refused even though the uid is admitted.
  const Calls bad(target(), {"bad", "wrong", ""});
  EXPECT_EQ(bad.Open("peer-seq", true, &opened).error_code(), StatusCode::UNAUTHENTICATED);
}

TEST_F(SecurityTest, PeerCredentialsDefaultTenantIsUid) {
  WriteFile(tokens_file(), TokenLine(absl::StrCat("uid-", getuid()), kTokenA));
  // No --peer_tenants_file. (DaemonProcess passes --auth=none; clusterkvd's own default is
  // peercred.)
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--auth=peercred", "--tokens_file=" + tokens_file()}));
  const Calls by_uid(target(), {"uid", "", "demo"});
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(by_uid.Open("mine", false, &opened));
  const Calls by_token(target(), {"token", kTokenA, ""});
  EXPECT_TRUE(by_token.Open("mine", true, &opened).ok());
}

TEST_F(SecurityTest, PeerCredentialsRefuseUnmappedUid) {
  WriteFile(files_.Sub("peers"), absl::StrCat(getuid() + 1, ":someone-else\n"));
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon({"--auth=peercred", "--peer_tenants_file=" + files_.Sub("peers")}));
  const Calls refused(target(), {"refused", "", "tenant-a"});
  v1::OpenSequenceResponse opened;
  const grpc::Status s = refused.Open("x", false, &opened);
  EXPECT_TRUE(s.error_code() == StatusCode::UNAVAILABLE ||
              s.error_code() == StatusCode::UNAUTHENTICATED)
      << s.error_code() << ": " << s.error_message();
  // The daemon itself is unaffected: it still stops cleanly (checked by the fixture).
}

TEST_F(SecurityTest, TcpNeedsTokenInPeerCredMode) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--auth=peercred", "--tokens_file=" + tokens_file(),
                                       "--tcp_address=127.0.0.1:0", "--allow_insecure_tcp"}));
  const std::string out = daemon_->output();
  const size_t at = out.find("tcp port ");
  ASSERT_NE(at, std::string::npos) << out;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      out.substr(at + 9, out.find_first_not_of("0123456789", at + 9) - at - 9), &port));
  const std::string tcp = absl::StrCat("127.0.0.1:", port);
  v1::OpenSequenceResponse opened;
  EXPECT_EQ(Calls(tcp, {"none", "", "tenant-a"}).Open("t", false, &opened).error_code(),
            StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Calls(tcp, {"bad", "nope", "tenant-a"}).Open("t", false, &opened).error_code(),
            StatusCode::UNAUTHENTICATED);
  ASSERT_GRPC_OK(Calls(tcp, {"a", kTokenA, ""}).Open("t", false, &opened));
  // Same tenant over the Unix socket with the same token.
  EXPECT_TRUE(Calls(target(), {"a", kTokenA, ""}).Open("t", true, &opened).ok());
}

TEST_F(SecurityTest, AuthenticatedTcpWithoutTokensFileIsRefusedAtStart) {
  DaemonProcessOptions options;
  options.flags = {"--auth=peercred", "--tcp_address=127.0.0.1:0", "--allow_insecure_tcp"};
  DaemonProcess daemon(options);
  const absl::Status started = daemon.Start();
  EXPECT_FALSE(started.ok());
  EXPECT_NE(daemon.output().find("--tokens_file"), std::string::npos) << daemon.output();
}

TEST_F(SecurityTest, QuotasRefuseAtTheLimitAndSpareOtherTenants) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--auth=token", "--tokens_file=" + tokens_file(),
                                       "--quota_sequences=2", "--quota_host_mib=1"}));
  const Calls a(target(), {"a", kTokenA, ""});
  const Calls b(target(), {"b", kTokenB, ""});
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(a.Open("s1", false, &opened));
  ASSERT_GRPC_OK(a.Open("s2", false, &opened));
  const grpc::Status third = a.Open("s3", false, &opened);
  EXPECT_EQ(third.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.error_message().find("sequence quota"), std::string::npos)
      << third.error_message();
  ASSERT_GRPC_OK(a.Open("s1", true, &opened));   // reopening is not creating
  ASSERT_GRPC_OK(b.Open("s1", false, &opened));  // tenant-b has its own count
  ASSERT_GRPC_OK(b.Open("s2", false, &opened));

  // ~3 MiB of blocks against a 1 MiB host quota.
  const SequenceData big = MakeSequenceData(/*seed=*/3, /*clusters=*/2, /*layers=*/4);
  const grpc::Status put = a.PutData("s1", big);
  EXPECT_EQ(put.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(put.error_message().find("host-tier quota"), std::string::npos) << put.error_message();
  // tenant-b stores its ~0.4 MiB untouched by tenant-a's full quota.
  SequenceData small = MakeSequenceData(/*seed=*/4, /*clusters=*/1, /*layers=*/1);
  ASSERT_GRPC_OK(b.PutData("s1", small));
  int blocks = 0;
  ASSERT_GRPC_OK(b.Fetch("s1", small.blocks[0].id(), &blocks));
  EXPECT_EQ(blocks, 1);
  // Dropping frees tenant-a's quota.
  v1::CloseSequenceRequest drop;
  drop.set_sequence_id("s2");
  drop.set_drop(true);
  v1::CloseSequenceResponse closed;
  ASSERT_GRPC_OK(a.stub().CloseSequence(a.Context().get(), drop, &closed));
  ASSERT_GRPC_OK(a.Open("s3", false, &opened));
}

}  // namespace
}  // namespace clusterkv::testing
