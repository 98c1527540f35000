// Cluster mode end to end: a real etcd and three real clusterkvd processes on one
// machine (own sockets, data dirs, TCP ports; TLS and the peer token between them).
//   - a sequence written through node 1 is recalled bit-exact through node 3 (which fetches it
//     from node 1 into a read-only copy: remote misses, then hits, in node 3's metrics); its
//     index, open and listing answer the same through any node;
//   - a put through a node that does not own the sequence reaches the owner;
//   - a drop through any node removes every copy, and a sequence created again under the same
//     id is never served from an old copy;
//   - a node above its high watermark places new sequences on the least-loaded node;
//   - tenants stay apart across nodes, with bearer tokens over TLS: tenant B through node 3
//     cannot see tenant A's sequence owned by node 1;
//   - a UCX data-plane client of node 3 recalls node 1's sequence bit-exact (UCX builds);
//   - daemons that serve UCX pull each other's blocks over it (tcp, and shared memory), the
//     remote bytes all counted as UCX bytes; without UCX on the owner the pull is gRPC.
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/connection.h"
#include "gtest/gtest.h"
#include "server/auth/credentials.h"
#include "server/cluster/node_info.h"
#include "tests/integration/cluster_fixture.h"
#if defined(CLUSTERKV_WITH_UCX)
#include "tests/integration/ucx_test_util.h"
#endif

namespace clusterkv::testing {
namespace {

std::vector<v1::ClusterRef> RefsOf(const std::vector<v1::ClusterBlock>& blocks) {
  std::vector<v1::ClusterRef> refs;
  for (const v1::ClusterBlock& b : blocks) refs.push_back(b.id());
  return refs;
}

class ClusterTest : public ::testing::Test {
 protected:
  void StartCluster(ClusterBenchOptions options = {}) {
    const absl::Status s = bench_.Start(options);
    if (absl::IsFailedPrecondition(s)) GTEST_SKIP() << s;
    ASSERT_TRUE(s.ok()) << s;
  }
  void TearDown() override {
    for (int code : bench_.StopAll()) EXPECT_EQ(code, 0);
  }
  ClusterBench bench_;
};

TEST_F(ClusterTest, WrittenThroughNode1RecalledBitExactThroughNode3) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const KvCacheClient n1 = bench_.Client(0, "tenant-a");
  const KvCacheClient n2 = bench_.Client(1, "tenant-a");
  const KvCacheClient n3 = bench_.Client(2, "tenant-a");
  const SequenceData data = MakeSequenceData(/*seed=*/10, /*clusters=*/3, /*layers=*/2);
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(OpenSequence(n1, "s", &opened));
  EXPECT_TRUE(opened.created());
  ASSERT_GRPC_OK(PutSequence(n1, "s", data, /*write_through=*/false));

  std::optional<server::cluster::DirectoryEntry> entry = bench_.Entry("tenant-a", "s");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->owner, "node-1");  // placed locally: node 1 is far below its watermark
  EXPECT_TRUE(entry->replicas.empty());

  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", data.blocks));
  const std::string first = Scrape(bench_.metrics_port(2));
  EXPECT_EQ(MetricValue(first, "clusterkv_cluster_remote_misses_total"), data.blocks.size());
  EXPECT_EQ(MetricValue(first, "clusterkv_cluster_remote_hits_total"), 0);
  EXPECT_GT(MetricValue(first, "clusterkv_cluster_remote_bytes_total"), 0);
  EXPECT_EQ(MetricValue(first, "clusterkv_cluster_nodes"), 3);
  // Again, in another order: served from node 3's read-only copy. (A fetch names each
  // cluster at most once; a repeat is INVALID_ARGUMENT.)
  std::vector<v1::ClusterBlock> reordered(data.blocks.rbegin(), data.blocks.rend());
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", reordered));
  const std::string second = Scrape(bench_.metrics_port(2));
  EXPECT_EQ(MetricValue(second, "clusterkv_cluster_remote_misses_total"), data.blocks.size());
  EXPECT_EQ(MetricValue(second, "clusterkv_cluster_remote_hits_total"), reordered.size());

  // Open, index and listing give the owner's answer through every node.
  for (const KvCacheClient* c : {&n2, &n3}) {
    v1::OpenSequenceRequest open;
    open.set_sequence_id("s");
    open.set_must_exist(true);
    v1::OpenSequenceResponse got;
    ASSERT_GRPC_OK(c->stub->OpenSequence(c->Context().get(), open, &got));
    EXPECT_FALSE(got.created());
    EXPECT_EQ(got.num_tokens(), data.num_tokens);
    EXPECT_EQ(got.layout().head_dim(), TestLayout().head_dim());
    v1::GetIndexRequest index;
    index.set_sequence_id("s");
    v1::GetIndexResponse got_index;
    ASSERT_GRPC_OK(c->stub->GetIndex(c->Context().get(), index, &got_index));
    ASSERT_EQ(got_index.indexes_size(), static_cast<int>(data.indexes.size()));
    for (int i = 0; i < got_index.indexes_size(); ++i) {
      EXPECT_EQ(got_index.indexes(i).SerializeAsString(), data.indexes[i].SerializeAsString());
    }
    v1::ListSequencesResponse listed;
    ASSERT_GRPC_OK(c->stub->ListSequences(c->Context().get(), v1::ListSequencesRequest(), &listed));
    ASSERT_EQ(listed.sequences_size(), 1);
    EXPECT_EQ(listed.sequences(0).sequence_id(), "s");
    EXPECT_EQ(listed.sequences(0).num_tokens(), data.num_tokens);
  }
  // A missing cluster is the owner's NOT_FOUND; a bad ref is refused before any fetch.
  FetchResult missing = Fetch(n3, "s", {Ref(0, 0, 99)});
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::NOT_FOUND)
      << missing.status.error_message();
  FetchResult bad = Fetch(n3, "s", {Ref(7, 0, 0)});
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  FetchResult none = Fetch(n3, "no-such-seq", {Ref(0, 0, 0)});
  EXPECT_EQ(none.status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClusterTest, WritesThroughAnyNodeReachTheOwner) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const KvCacheClient n1 = bench_.Client(0, "t");
  const KvCacheClient n2 = bench_.Client(1, "t");
  const KvCacheClient n3 = bench_.Client(2, "t");
  const SequenceData data = MakeSequenceData(/*seed=*/20, /*clusters=*/2, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n2, "s"));  // owned by node 2
  ASSERT_GRPC_OK(PutSequence(n3, "s", data, /*write_through=*/true));  // through node 3
  std::optional<server::cluster::DirectoryEntry> entry = bench_.Entry("t", "s");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->owner, "node-2");
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n1, "s", data.blocks));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n2, "s", data.blocks));
  EXPECT_GT(MetricValue(Scrape(bench_.metrics_port(2)), "clusterkv_cluster_forwarded_bytes_total"),
            0);

  // Append a cluster to head (0, 0) through node 1; node 3 recalls it.
  v1::AppendClustersRequest append;
  append.set_sequence_id("s");
  v1::HeadIndex* head = append.add_appended();
  head->set_layer(0);
  head->set_kv_head(0);
  for (int j = 0; j < TestLayout().head_dim(); ++j) head->add_centroids(j == 0 ? 1.0f : 0.0f);
  head->add_sizes(40);
  const v1::ClusterBlock appended = MakeBlock(Ref(0, 0, 2), 40, 777);
  *append.add_blocks() = appended;
  append.set_num_tokens(data.num_tokens + 40);
  v1::AppendClustersResponse appended_response;
  ASSERT_GRPC_OK(n1.stub->AppendClusters(n1.Context().get(), append, &appended_response));
  EXPECT_EQ(appended_response.blocks_stored(), 1);
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", {appended}));
}

TEST_F(ClusterTest, DropRemovesEveryCopyAndANewIncarnationIsNeverServedStale) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const KvCacheClient n1 = bench_.Client(0, "t");
  const KvCacheClient n2 = bench_.Client(1, "t");
  const KvCacheClient n3 = bench_.Client(2, "t");
  const SequenceData old_data = MakeSequenceData(/*seed=*/30, /*clusters=*/2, /*layers=*/1);
  ASSERT_GRPC_OK(OpenSequence(n1, "s"));
  ASSERT_GRPC_OK(PutSequence(n1, "s", old_data, false));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", old_data.blocks));  // node 3 caches it
  EXPECT_NE(Scrape(bench_.metrics_port(2)).find("tenant=\":cluster-cache\""), std::string::npos);

  v1::CloseSequenceRequest drop;
  drop.set_sequence_id("s");
  drop.set_drop(true);
  v1::CloseSequenceResponse closed;
  ASSERT_GRPC_OK(n2.stub->CloseSequence(n2.Context().get(), drop, &closed));  // through node 2
  EXPECT_FALSE(bench_.Entry("t", "s").has_value());
  for (const KvCacheClient* c : {&n1, &n2, &n3}) {
    FetchResult gone = Fetch(*c, "s", RefsOf(old_data.blocks));
    EXPECT_EQ(gone.status.error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // Node 3 held a read-only copy; the sweep of its keep-alive rounds drops it (its tenant
  // disappears from node 3's store).
  EXPECT_TRUE(PollUntil(
      [&] {
        const std::string m = Scrape(bench_.metrics_port(2));
        return !m.empty() && m.find("tenant=\":cluster-cache\"") == std::string::npos;
      },
      absl::Seconds(30)))
      << "node 3 still holds a copy of the dropped sequence";
  // The same id again, other data, owned by node 2 now: node 3 must not serve its old copy.
  const SequenceData new_data = MakeSequenceData(/*seed=*/31, /*clusters=*/2, /*layers=*/1);
  ASSERT_GRPC_OK(OpenSequence(n2, "s"));
  ASSERT_GRPC_OK(PutSequence(n2, "s", new_data, false));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", new_data.blocks));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n1, "s", new_data.blocks));
}

TEST_F(ClusterTest, ANodeAboveItsWatermarkPlacesNewSequencesOnTheLeastLoaded) {
  ClusterBenchOptions options;
  // Node 1: a 2 MiB host tier, so a couple of MiB of blocks put it above its 0.9 watermark.
  options.node_flags = {{"--host_capacity_mib=2"}};
  ASSERT_NO_FATAL_FAILURE(StartCluster(options));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const SequenceData big = MakeSequenceData(/*seed=*/40, /*clusters=*/10, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n1, "big"));
  ASSERT_GRPC_OK(PutSequence(n1, "big", big, false));
  uint64_t bytes = 0;
  for (const v1::ClusterBlock& b : big.blocks) bytes += b.data().size();
  ASSERT_GT(bytes, uint64_t{2} << 20) << "the test needs more than node 1's host tier";
  ASSERT_EQ(bench_.Entry("t", "big")->owner, "node-1");

  ASSERT_GRPC_OK(OpenSequence(n1, "next"));
  std::optional<server::cluster::DirectoryEntry> next = bench_.Entry("t", "next");
  ASSERT_TRUE(next.has_value());
  EXPECT_NE(next->owner, "node-1") << "node 1 holds " << bytes << " bytes in a 2 MiB host tier";
  // The new sequence works through node 1 all the same.
  const SequenceData small = MakeSequenceData(/*seed=*/41, /*clusters=*/1, /*layers=*/1);
  ASSERT_GRPC_OK(PutSequence(n1, "next", small, false));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n1, "next", small.blocks));
}

// Tenants with bearer tokens over TLS on every node (--auth=token): the peer token lets
// daemons act for the caller's tenant only.
TEST_F(ClusterTest, TenantBThroughNode3CannotReadTenantAsSequenceOnNode1) {
  constexpr char kTokenA[] = "token-of-tenant-a-0123456789";
  constexpr char kTokenB[] = "token-of-tenant-b-0123456789";
  ClusterBenchOptions options;
  {
    // The scratch dir of the bench is made at construction: write the tokens file there.
    std::ofstream out(bench_.files().Sub("tokens"));
    out << "tenant-a:" << server::auth::ToHex(server::auth::Sha256(kTokenA)) << "\n"
        << "tenant-b:" << server::auth::ToHex(server::auth::Sha256(kTokenB)) << "\n";
  }
  const std::vector<std::string> auth = {"--auth=token",
                                         "--tokens_file=" + bench_.files().Sub("tokens")};
  options.node_flags = {auth, auth, auth};
  ASSERT_NO_FATAL_FAILURE(StartCluster(options));
  auto connect = [&](int node, const char* token) {
    client::ConnectionOptions o;
    o.target = bench_.tcp_target(node);
    o.tenant = "ignored";
    o.bearer_token = token;
    o.tls_root_cert_file = bench_.cert();
    o.retry.max_attempts = 1;
    absl::StatusOr<std::unique_ptr<client::Connection>> c = client::Connection::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  };
  std::unique_ptr<client::Connection> a1 = connect(0, kTokenA);
  std::unique_ptr<client::Connection> a3 = connect(2, kTokenA);
  std::unique_ptr<client::Connection> b3 = connect(2, kTokenB);
  ASSERT_TRUE(a1 && a3 && b3);

  const SequenceData data = MakeSequenceData(/*seed=*/50, /*clusters=*/2, /*layers=*/1);
  v1::OpenSequenceRequest open;
  open.set_sequence_id("secret");
  *open.mutable_layout() = TestLayout();
  ASSERT_TRUE(a1->OpenSequence(open).ok());
  std::vector<v1::PutClustersRequest> messages(1);
  messages[0].set_sequence_id("secret");
  for (const v1::ClusterBlock& b : data.blocks) *messages[0].add_blocks() = b;
  ASSERT_TRUE(a1->PutClusters(messages).ok());
  ASSERT_EQ(bench_.Entry("tenant-a", "secret")->owner, "node-1");

  v1::FetchClustersRequest fetch;
  fetch.set_sequence_id("secret");
  for (const v1::ClusterBlock& b : data.blocks) *fetch.add_clusters() = b.id();
  std::vector<std::string> got;
  const absl::Status a_fetch = a3->FetchClusters(fetch, [&](const v1::ClusterBlock& b) {
    got.push_back(b.data());
    return absl::OkStatus();
  });
  ASSERT_TRUE(a_fetch.ok()) << a_fetch;
  ASSERT_EQ(got.size(), data.blocks.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(got[i] == data.blocks[i].data()) << i;

  // Tenant B, through node 3 (which even holds a copy of A's sequence now): nothing to see.
  const absl::Status b_fetch =
      b3->FetchClusters(fetch, [](const v1::ClusterBlock&) { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsNotFound(b_fetch)) << b_fetch;
  v1::OpenSequenceRequest must;
  must.set_sequence_id("secret");
  must.set_must_exist(true);
  EXPECT_TRUE(absl::IsNotFound(b3->OpenSequence(must).status()));
  absl::StatusOr<v1::ListSequencesResponse> b_list = b3->ListSequences();
  ASSERT_TRUE(b_list.ok()) << b_list.status();
  EXPECT_EQ(b_list->sequences_size(), 0);
  v1::GetIndexRequest index;
  index.set_sequence_id("secret");
  EXPECT_TRUE(absl::IsNotFound(b3->GetIndex(index).status()));
  // B may use the same id: it is B's own sequence, A's is untouched.
  ASSERT_TRUE(b3->OpenSequence(open).ok());
  EXPECT_TRUE(bench_.Entry("tenant-b", "secret").has_value());
  got.clear();
  ASSERT_TRUE(a3->FetchClusters(fetch, [&](const v1::ClusterBlock& b) {
                   got.push_back(b.data());
                   return absl::OkStatus();
                 }).ok());
  EXPECT_EQ(got.size(), data.blocks.size());

  // A client presenting the peer token's neighbour is no peer: only the exact token is.
  std::unique_ptr<client::Connection> fake = connect(2, "cluster-peer-token-0123456789abcdeX");
  ASSERT_NE(fake, nullptr);
  EXPECT_TRUE(absl::IsUnauthenticated(fake->Stats().status()));
}

#if defined(CLUSTERKV_WITH_UCX)
TEST_F(ClusterTest, UcxClientOfNode3RecallsNode1sSequenceBitExact) {
  ClusterBenchOptions options;
  options.node_flags = {{}, {}, {"--ucx=true"}};  // node 3 serves the UCX data plane
  ASSERT_NO_FATAL_FAILURE(StartCluster(options));
  using namespace ucx_test;  // NOLINT: the UCX tests' vocabulary
  ASSERT_TRUE(PutBlocks(bench_.node(0).target(), "tenant-a", "seq").ok());
  ASSERT_EQ(bench_.Entry("tenant-a", "seq")->owner, "node-1");
  absl::StatusOr<UcxClient> ucx = MakeUcxClient(bench_.node(2).target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  ASSERT_TRUE(ucx->transport->Connect().ok());
  for (int round = 0; round < 2; ++round) {  // cold (pulled from node 1), then from the copy
    std::memset(ucx->transport->region_base(), 0, ucx->transport->region_bytes());
    absl::StatusOr<std::vector<client::DirectFetchResult>> results =
        ucx->transport->FetchInto("seq", Requests(kClusters));
    ASSERT_TRUE(results.ok()) << results.status();
    for (const client::DirectFetchResult& r : *results) EXPECT_TRUE(r.status.ok()) << r.status;
    EXPECT_TRUE(CheckSlots(*ucx->transport, "tenant-a", "seq", kClusters).ok()) << round;
  }
  const std::string m = Scrape(bench_.metrics_port(2));
  EXPECT_EQ(MetricValue(m, "clusterkv_cluster_remote_misses_total"), kClusters);
  EXPECT_EQ(MetricValue(m, "clusterkv_cluster_remote_hits_total"), kClusters);
  // Node 1 serves no UCX data plane (--ucx=false): node 3 pulled over gRPC.
  EXPECT_GT(MetricValue(m, "clusterkv_cluster_remote_bytes_total"), 0);
  EXPECT_EQ(MetricValue(m, "clusterkv_cluster_remote_ucx_bytes_total"), 0);
}

TEST_F(ClusterTest, DaemonsPullEachOthersBlocksOverUcxTcpBitExact) {
  // Every node serves UCX; node 3 pulls over tcp only (loopback), node 2 over UCX's default
  // transports (shared memory on one host). Blocks larger than the pull slot (1 MiB) would go
  // over gRPC; these are all smaller, so every remote byte comes over UCX.
  using namespace ucx_test;  // NOLINT: the UCX tests' vocabulary
  ScopedEnv devices("UCX_NET_DEVICES", "lo");
  ClusterBenchOptions options;
  options.node_flags = {{"--ucx=true"},
                        {"--ucx=true"},
                        {"--ucx=true", "--cluster_peer_ucx_transports=tcp"}};
  ASSERT_NO_FATAL_FAILURE(StartCluster(options));
  for (int i = 0; i < 3; ++i) {  // every node registered its UCX worker address
    absl::StatusOr<std::optional<server::cluster::EtcdKeyValue>> record =
        bench_.etcd().Get(bench_.keys().Node(ClusterBench::NodeId(i)));
    ASSERT_TRUE(record.ok() && record->has_value()) << i;
    absl::StatusOr<server::cluster::NodeInfo> info =
        server::cluster::DecodeNodeInfo((*record)->value);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_TRUE(info->ucx);
    EXPECT_FALSE(info->ucx_address.empty()) << ClusterBench::NodeId(i);
  }
  const KvCacheClient n1 = bench_.Client(0, "tenant-a");
  const SequenceData data = MakeSequenceData(/*seed=*/31, /*clusters=*/4, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n1, "s"));
  ASSERT_GRPC_OK(PutSequence(n1, "s", data, /*write_through=*/false));
  ASSERT_EQ(bench_.Entry("tenant-a", "s")->owner, "node-1");
  for (int node : {2, 1}) {
    const KvCacheClient via = bench_.Client(node, "tenant-a");
    ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via, "s", data.blocks)) << "node " << node + 1;
    ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via, "s", data.blocks)) << "from the copy";
    const std::string m = Scrape(bench_.metrics_port(node));
    EXPECT_EQ(MetricValue(m, "clusterkv_cluster_remote_misses_total"), data.blocks.size());
    EXPECT_EQ(MetricValue(m, "clusterkv_cluster_remote_hits_total"), data.blocks.size());
    const double bytes = MetricValue(m, "clusterkv_cluster_remote_bytes_total");
    EXPECT_GT(bytes, 0);
    EXPECT_EQ(MetricValue(m, "clusterkv_cluster_remote_ucx_bytes_total"), bytes)
        << "node " << node + 1 << " pulled over gRPC";
  }
  // Tenants stay apart over UCX too: tenant B's pull of tenant A's sequence finds nothing.
  const KvCacheClient other = bench_.Client(2, "tenant-b");
  v1::FetchClustersRequest fetch;
  fetch.set_sequence_id("s");
  *fetch.add_clusters() = data.blocks[0].id();
  auto context = other.Context();
  auto reader = other.stub->FetchClusters(context.get(), fetch);
  v1::FetchClustersResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}
#endif

}  // namespace
}  // namespace clusterkv::testing
