// The real clusterkvd on a real Unix socket, driven by the generated gRPC stub: sequence
// lifecycle, bulk put and fetch (bit-exact, in order, across several response messages; each
// response message exactly protobuf's bytes, and read bit-exact by client::Connection too),
// the index, server-side Select against the local selection code, stats, tenants, concurrent
// clients and the grpc.health.v1 check.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/connection.h"
#include "gpu/backend.h"
#include "gpu/selection.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/support/sync_stream.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_fixture.h"
#include "tools/clusterkv/health_check.h"

namespace clusterkv::testing {
namespace {

std::vector<std::string> ListIds(const KvCacheClient& client) {
  v1::ListSequencesResponse response;
  const grpc::Status s =
      client.stub->ListSequences(client.Context().get(), v1::ListSequencesRequest(), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::vector<std::string> ids;
  for (const v1::SequenceInfo& info : response.sequences()) ids.push_back(info.sequence_id());
  std::sort(ids.begin(), ids.end());
  return ids;
}

v1::StatsResponse GetStats(const KvCacheClient& client) {
  v1::StatsResponse response;
  const grpc::Status s = client.stub->Stats(client.Context().get(), v1::StatsRequest(), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response;
}

TEST_F(DaemonTest, OpenReopenMismatchMustExistListAndDrop) {
  KvCacheClient client = Client();
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(OpenSequence(client, "seq-a", &opened));
  EXPECT_TRUE(opened.created());
  EXPECT_EQ(opened.layout().SerializeAsString(), TestLayout().SerializeAsString());

  // Reopen with the same layout, and without one.
  ASSERT_GRPC_OK(OpenSequence(client, "seq-a", &opened));
  EXPECT_FALSE(opened.created());
  v1::OpenSequenceRequest bare;
  bare.set_sequence_id("seq-a");
  bare.set_must_exist(true);
  ASSERT_GRPC_OK(client.stub->OpenSequence(client.Context().get(), bare, &opened));
  EXPECT_FALSE(opened.created());
  EXPECT_EQ(opened.layout().head_dim(), 128);

  v1::KvLayout other = TestLayout();
  other.set_head_dim(64);
  EXPECT_EQ(OpenSequence(client, "seq-a", nullptr, other).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  v1::OpenSequenceRequest missing;
  missing.set_sequence_id("seq-missing");
  *missing.mutable_layout() = TestLayout();
  missing.set_must_exist(true);
  EXPECT_EQ(client.stub->OpenSequence(client.Context().get(), missing, &opened).error_code(),
            grpc::StatusCode::NOT_FOUND);

  ASSERT_GRPC_OK(OpenSequence(client, "seq-b"));
  EXPECT_EQ(ListIds(client), (std::vector<std::string>{"seq-a", "seq-b"}));

  v1::CloseSequenceRequest close;
  close.set_sequence_id("seq-a");
  close.set_drop(true);
  v1::CloseSequenceResponse closed;
  ASSERT_GRPC_OK(client.stub->CloseSequence(client.Context().get(), close, &closed));
  EXPECT_EQ(ListIds(client), (std::vector<std::string>{"seq-b"}));
  bare.set_sequence_id("seq-a");
  EXPECT_EQ(client.stub->OpenSequence(client.Context().get(), bare, &opened).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Closing without drop keeps the sequence.
  close.set_sequence_id("seq-b");
  close.set_drop(false);
  ASSERT_GRPC_OK(client.stub->CloseSequence(client.Context().get(), close, &closed));
  EXPECT_EQ(ListIds(client), (std::vector<std::string>{"seq-b"}));
}

TEST_F(DaemonTest, PutThenFetchIsBitExactInRequestOrderAcrossMessages) {
  KvCacheClient client = Client();
  const SequenceData data = MakeSequenceData(/*seed=*/11, /*clusters=*/8);
  ASSERT_GRPC_OK(OpenSequence(client, "big"));
  v1::PutClustersResponse put;
  ASSERT_GRPC_OK(PutSequence(client, "big", data, /*write_through=*/false, &put));
  uint64_t total = 0;
  for (const v1::ClusterBlock& b : data.blocks) total += b.data().size();
  EXPECT_EQ(put.blocks_stored(), static_cast<int64_t>(data.blocks.size()));
  EXPECT_EQ(put.bytes_stored(), static_cast<int64_t>(total));
  ASSERT_GT(total, uint64_t{4} << 20) << "the fetch must span several response messages";

  // Request order is a seeded shuffle, not the order of the puts.
  std::vector<v1::ClusterBlock> order = data.blocks;
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  int messages = 0;
  ExpectFetchMatches(client, "big", order, &messages);
  EXPECT_GE(messages, 2);

  // The same cluster twice in one request is refused (a fetch could otherwise stream one
  // block 65,536 times); named once each, they are served.
  FetchResult repeated = Fetch(client, "big", {Ref(0, 0, 5), Ref(0, 0, 5), Ref(0, 0, 0)});
  EXPECT_EQ(repeated.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectFetchMatches(client, "big", {data.blocks[5], data.blocks[0]});

  // A missing cluster is NOT_FOUND.
  FetchResult missing = Fetch(client, "big", {Ref(0, 0, 0), Ref(0, 0, 999)});
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(OpenSequence(client, "big", &opened));
  EXPECT_EQ(opened.num_tokens(), data.num_tokens);
}

TEST_F(DaemonTest, FetchMessagesAreProtobufBytesAndConnectionReadsThemBitExact) {
  KvCacheClient client = Client();
  ASSERT_GRPC_OK(OpenSequence(client, "wire"));
  // Blocks of one token to 1 MiB (2032 tokens): the answer spans several messages.
  SequenceData data;
  const int32_t tokens[] = {1, 2032, 127, 2032, 508, 2032, 31, 2032, 1};
  for (int32_t i = 0; i < static_cast<int32_t>(std::size(tokens)); ++i) {
    data.blocks.push_back(MakeBlock(Ref(1, 2, i), tokens[i], 500 + static_cast<uint32_t>(i)));
  }
  ASSERT_GRPC_OK(PutSequence(client, "wire", data, /*write_through=*/false, nullptr,
                             /*per_message=*/2));
  std::vector<v1::ClusterBlock> order(data.blocks.rbegin(), data.blocks.rend());
  v1::FetchClustersRequest request;
  request.set_sequence_id("wire");
  for (const v1::ClusterBlock& b : order) *request.add_clusters() = b.id();
  auto expect_same = [&](const std::vector<v1::ClusterBlock>& got, const char* via) {
    ASSERT_EQ(got.size(), order.size()) << via;
    for (size_t i = 0; i < order.size(); ++i) {
      EXPECT_EQ(got[i].SerializeAsString(), order[i].SerializeAsString())
          << via << ": block " << i << " differs";
    }
  };

  // Raw: every message the daemon sends is byte for byte what protobuf serializes for it.
  const grpc::internal::RpcMethod method("/clusterkv.v1.KvCache/FetchClusters",
                                         grpc::internal::RpcMethod::SERVER_STREAMING,
                                         client.channel);
  auto context = client.Context();
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(client.channel.get(), method,
                                                                    context.get(), request));
  grpc::ByteBuffer raw;
  int messages = 0;
  std::vector<v1::ClusterBlock> got;
  while (reader->Read(&raw)) {
    ++messages;
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(raw.Dump(&slices).ok());
    std::string bytes;
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    v1::FetchClustersResponse parsed;
    ASSERT_TRUE(parsed.ParseFromString(bytes)) << "message " << messages;
    EXPECT_EQ(parsed.SerializeAsString(), bytes) << "message " << messages;
    for (v1::ClusterBlock& b : *parsed.mutable_blocks()) got.push_back(std::move(b));
  }
  ASSERT_GRPC_OK(reader->Finish());
  EXPECT_GE(messages, 2);
  expect_same(got, "raw");

  // client::Connection reads the same stream raw, block by block.
  client::ConnectionOptions options;
  options.target = daemon_.target();
  options.tenant = "default";
  absl::StatusOr<std::unique_ptr<client::Connection>> conn = client::Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::vector<v1::ClusterBlock> delivered;
  const absl::Status fetched = (*conn)->FetchClusters(request, [&](const v1::ClusterBlock& b) {
    delivered.push_back(b);
    return absl::OkStatus();
  });
  ASSERT_TRUE(fetched.ok()) << fetched;
  expect_same(delivered, "Connection");
}

TEST_F(DaemonTest, GetIndexReturnsTheStoredIndexes) {
  KvCacheClient client = Client();
  const SequenceData data = MakeSequenceData(/*seed=*/12, /*clusters=*/5);
  ASSERT_GRPC_OK(OpenSequence(client, "idx"));
  ASSERT_GRPC_OK(PutSequence(client, "idx", data, /*write_through=*/false));

  v1::GetIndexRequest request;
  request.set_sequence_id("idx");
  v1::GetIndexResponse all;
  ASSERT_GRPC_OK(client.stub->GetIndex(client.Context().get(), request, &all));
  EXPECT_EQ(all.num_tokens(), data.num_tokens);
  EXPECT_EQ(all.layout().SerializeAsString(), TestLayout().SerializeAsString());
  ASSERT_EQ(all.indexes_size(), static_cast<int>(data.indexes.size()));
  for (int i = 0; i < all.indexes_size(); ++i) {
    EXPECT_EQ(all.indexes(i).SerializeAsString(), data.indexes[i].SerializeAsString())
        << "head index " << i;
  }

  request.add_layers(2);
  v1::GetIndexResponse one;
  ASSERT_GRPC_OK(client.stub->GetIndex(client.Context().get(), request, &one));
  ASSERT_EQ(one.indexes_size(), 4);
  for (const v1::HeadIndex& index : one.indexes()) EXPECT_EQ(index.layer(), 2);
}

TEST_F(DaemonTest, SelectMatchesLocalScoringAndSelection) {
  KvCacheClient client = Client();
  const SequenceData data = MakeSequenceData(/*seed=*/13, /*clusters=*/12);
  ASSERT_GRPC_OK(OpenSequence(client, "sel"));
  ASSERT_GRPC_OK(PutSequence(client, "sel", data, /*write_through=*/false));
  const v1::KvLayout layout = TestLayout();
  const int32_t d = layout.head_dim();
  const int32_t group = layout.num_q_heads() / layout.num_kv_heads();
  const gpu::ExecContext exec{gpu::Backend::kCpu, /*threads=*/1};

  for (int32_t layer : {0, 3}) {
    for (int32_t budget : {1, 150, 700, 1 << 20}) {
      const std::vector<float> queries = Gaussian(layout.num_q_heads(), d, 100 + layer + budget);
      v1::SelectRequest request;
      request.set_sequence_id("sel");
      request.set_layer(layer);
      request.set_budget(budget);
      request.mutable_queries()->Add(queries.begin(), queries.end());
      v1::SelectResponse response;
      ASSERT_GRPC_OK(client.stub->Select(client.Context().get(), request, &response));
      ASSERT_EQ(response.heads_size(), layout.num_kv_heads());
      for (const v1::HeadSelection& head : response.heads()) {
        const v1::HeadIndex& index = data.indexes[layer * layout.num_kv_heads() + head.kv_head()];
        std::vector<float> scores(index.sizes_size());
        ASSERT_TRUE(gpu::ScoreCentroids(
                        ConstMatrixView(queries.data() + head.kv_head() * group * d, group, d),
                        ConstMatrixView(index.centroids().data(), index.sizes_size(), d),
                        1.0f / std::sqrt(static_cast<float>(d)), absl::MakeSpan(scores), exec)
                        .ok());
        int64_t total = 0;
        for (int32_t s : index.sizes()) total += s;
        const std::vector<int32_t> sizes(index.sizes().begin(), index.sizes().end());
        absl::StatusOr<gpu::ClusterSelection> local =
            gpu::SelectClusters(scores, sizes, std::min<int64_t>(budget, total));
        ASSERT_TRUE(local.ok()) << local.status();
        EXPECT_EQ(std::vector<int32_t>(head.clusters().begin(), head.clusters().end()),
                  local->clusters)
            << "layer " << layer << " head " << head.kv_head() << " budget " << budget;
        EXPECT_EQ(std::vector<int32_t>(head.tokens().begin(), head.tokens().end()), local->tokens);
      }
    }
  }
}

TEST_F(DaemonTest, StatsCountersMove) {
  KvCacheClient client = Client("stats-tenant");
  const v1::StatsResponse before = GetStats(client);
  EXPECT_EQ(before.sequences(), 0u);
  EXPECT_EQ(before.host_capacity_bytes(), uint64_t{64} << 20);

  const SequenceData data = MakeSequenceData(/*seed=*/14, /*clusters=*/3, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(client, "s"));
  ASSERT_GRPC_OK(PutSequence(client, "s", data, /*write_through=*/true));
  uint64_t total = 0;
  for (const v1::ClusterBlock& b : data.blocks) total += b.data().size();
  const v1::StatsResponse put = GetStats(client);
  EXPECT_EQ(put.sequences(), 1u);
  EXPECT_EQ(put.host().blocks(), before.host().blocks() + data.blocks.size());
  EXPECT_GE(put.host().bytes(), before.host().bytes() + total);
  EXPECT_GE(put.tenant_host_bytes(), total);
  EXPECT_EQ(put.write_through_puts(), before.write_through_puts() + data.blocks.size());

  ExpectFetchMatches(client, "s", data.blocks);
  const v1::StatsResponse fetched = GetStats(client);
  EXPECT_GE(fetched.host().hits(), put.host().hits() + data.blocks.size());
  EXPECT_GE(fetched.slab_fragmentation(), 0.0);
  EXPECT_LE(fetched.slab_fragmentation(), 1.0);
}

v1::HintClustersRequest Hint(const std::string& id, const std::vector<v1::ClusterBlock>& blocks) {
  v1::HintClustersRequest request;
  request.set_sequence_id(id);
  for (const v1::ClusterBlock& b : blocks) *request.add_clusters() = b.id();
  return request;
}

grpc::Status SendHint(const KvCacheClient& client, const v1::HintClustersRequest& request) {
  v1::HintClustersResponse response;
  return client.stub->HintClusters(client.Context().get(), request, &response);
}

// Promotion hints on a host tier (8 MiB) smaller than the sequence (~28 MiB): the daemon answers
// at once and promotes the hinted SSD-only blocks on its hint thread, in order; the fetch that
// follows is served from the host tier and counts them as recalled in time. Another tenant's
// hint for the same sequence id promotes nothing; an oversized hint is refused.
TEST(DaemonHintTest, HintedSsdBlocksArePromotedAndThenFetchedFromTheHostTier) {
  DaemonProcessOptions options;
  options.flags = {"--host_capacity_mib=8"};
  DaemonProcess daemon(options);
  const absl::Status started = daemon.Start();
  ASSERT_TRUE(started.ok()) << started;
  const KvCacheClient client = MakeKvCacheClient(daemon.target(), "hints");
  const KvCacheClient other = MakeKvCacheClient(daemon.target(), "someone-else");
  const SequenceData data = MakeSequenceData(/*seed=*/21, /*clusters=*/32, /*layers=*/4);
  ASSERT_GRPC_OK(OpenSequence(client, "s"));
  ASSERT_GRPC_OK(PutSequence(client, "s", data, /*write_through=*/false));
  const v1::StatsResponse put = GetStats(client);
  ASSERT_GT(put.ssd().blocks(), 0u);

  // The first blocks put (the least recent, so on the SSD), under 1 MiB in all; then the next
  // ones for the other tenant.
  std::vector<v1::ClusterBlock> mine, theirs;
  uint64_t bytes = 0;
  size_t i = 0;
  for (; i < data.blocks.size() && bytes + data.blocks[i].data().size() < (1u << 20); ++i) {
    bytes += data.blocks[i].data().size();
    mine.push_back(data.blocks[i]);
  }
  for (size_t j = i; j < i + 4; ++j) theirs.push_back(data.blocks[j]);
  ASSERT_GE(mine.size(), 4u);

  // The other tenant's hint is answered like any hint (no existence leak) and queued first:
  // once ours is done, so is theirs.
  ASSERT_GRPC_OK(SendHint(other, Hint("s", theirs)));
  ASSERT_GRPC_OK(SendHint(client, Hint("s", mine)));
  v1::StatsResponse hinted;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  // The answer came before the promotions: wait for them (each Stats call is a round trip).
  for (;;) {
    hinted = GetStats(client);
    if (hinted.hint_promotions() + hinted.hint_already_resident() >= mine.size()) break;
    if (std::chrono::steady_clock::now() > deadline) break;
  }
  ASSERT_EQ(hinted.hint_promotions() + hinted.hint_already_resident(), mine.size());
  EXPECT_GT(hinted.hint_promotions(), 0u);
  EXPECT_EQ(hinted.hint_promotions_recalled(), 0u);

  ExpectFetchMatches(client, "s", mine);
  const v1::StatsResponse fetched = GetStats(client);
  EXPECT_EQ(fetched.ssd().hits(), hinted.ssd().hits());  // every one from the host tier
  EXPECT_EQ(fetched.hint_promotions_recalled(), hinted.hint_promotions());
  EXPECT_EQ(fetched.hint_promotions_wasted(), 0u);  // room enough: none evicted unread

  // Bounded: one cluster more than --max_hint_clusters (4096) is refused before any work.
  v1::HintClustersRequest huge;
  huge.set_sequence_id("s");
  for (int c = 0; c <= 4096; ++c) *huge.add_clusters() = Ref(0, 0, c);
  EXPECT_EQ(SendHint(client, huge).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Not a valid sequence id: refused at once too.
  EXPECT_EQ(SendHint(client, Hint("", mine)).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  absl::StatusOr<int> code = daemon.Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << daemon.output();
}

TEST_F(DaemonTest, TenantsAreIndependent) {
  KvCacheClient a = Client("tenant-a");
  KvCacheClient b = Client("tenant-b");
  const SequenceData data_a = MakeSequenceData(/*seed=*/21, /*clusters=*/2, /*layers=*/1);
  const SequenceData data_b = MakeSequenceData(/*seed=*/22, /*clusters=*/2, /*layers=*/1);
  ASSERT_GRPC_OK(OpenSequence(a, "shared"));
  ASSERT_GRPC_OK(OpenSequence(b, "shared"));
  ASSERT_GRPC_OK(PutSequence(a, "shared", data_a, /*write_through=*/false));
  ASSERT_GRPC_OK(PutSequence(b, "shared", data_b, /*write_through=*/false));
  ExpectFetchMatches(a, "shared", data_a.blocks);
  ExpectFetchMatches(b, "shared", data_b.blocks);

  ASSERT_GRPC_OK(OpenSequence(a, "only-a"));
  ASSERT_GRPC_OK(PutSequence(a, "only-a", data_a, /*write_through=*/false));
  EXPECT_EQ(Fetch(b, "only-a", {Ref(0, 0, 0)}).status.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GetIndexRequest index;
  index.set_sequence_id("only-a");
  v1::GetIndexResponse index_response;
  EXPECT_EQ(b.stub->GetIndex(b.Context().get(), index, &index_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::CloseSequenceRequest drop;
  drop.set_sequence_id("only-a");
  drop.set_drop(true);
  v1::CloseSequenceResponse dropped;
  EXPECT_EQ(b.stub->CloseSequence(b.Context().get(), drop, &dropped).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ListIds(a), (std::vector<std::string>{"only-a", "shared"}));
  EXPECT_EQ(ListIds(b), (std::vector<std::string>{"shared"}));
  EXPECT_EQ(GetStats(b).sequences(), 1u);
  EXPECT_EQ(GetStats(a).sequences(), 2u);

  // Dropping B's "shared" leaves A's intact.
  drop.set_sequence_id("shared");
  ASSERT_GRPC_OK(b.stub->CloseSequence(b.Context().get(), drop, &dropped));
  ExpectFetchMatches(a, "shared", data_a.blocks);
  EXPECT_EQ(Fetch(b, "shared", {Ref(0, 0, 0)}).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DaemonTest, ConcurrentClientsRoundTripBitExact) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      KvCacheClient client = Client();  // its own channel
      const std::string id = absl::StrCat("concurrent-", t);
      ASSERT_GRPC_OK(OpenSequence(client, id));
      std::vector<v1::ClusterBlock> stored;
      for (int round = 0; round < kRounds; ++round) {
        std::vector<v1::PutClustersRequest> messages(1);
        messages[0].set_sequence_id(id);
        for (int h = 0; h < 4; ++h) {
          const v1::ClusterBlock block = MakeBlock(
              Ref(t % 4, h, round), 16 + 37 * ((t + h + round) % 5), 1000 * t + 10 * round + h);
          *messages[0].add_blocks() = block;
          stored.push_back(block);
        }
        ASSERT_GRPC_OK(PutMessages(client, messages));
        ExpectFetchMatches(client, id, stored);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
}

TEST_F(DaemonTest, HealthCheckReportsServing) {
  KvCacheClient client = Client();
  absl::StatusOr<admin::HealthStatus> health =
      admin::CheckHealth(client.channel, "", absl::Seconds(30));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, admin::HealthStatus::kServing);
  absl::StatusOr<admin::HealthStatus> unknown =
      admin::CheckHealth(client.channel, "no.such.Service", absl::Seconds(30));
  EXPECT_TRUE(absl::IsNotFound(unknown.status())) << unknown.status();
}

}  // namespace
}  // namespace clusterkv::testing
