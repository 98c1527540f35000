// The real daemon under requests that try to amplify their work or their answer, and under
// appends that race or are retried:
//   - one request per RPC whose repeated, counted or sized fields would multiply the work or
//     the response (a layer named a million times, a cluster fetched twice, more heads than
//     the layout has, ten million query floats, megabyte ids and addresses, an index larger
//     than the response limit) is refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, and the
//     daemon keeps serving every tenant (Stats has no field to amplify);
//   - ListSequences answers in bounded pages;
//   - an append names its first cluster id per head: its retry answers OK without applying it
//     twice, a conflicting one FAILED_PRECONDITION; several threads appending to one sequence
//     leave an index whose every cluster has exactly the block that was appended with it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_fixture.h"

namespace clusterkv::testing {
namespace {

constexpr char kSeq[] = "limits";

struct AmplifyCase {
  std::string name;
  grpc::StatusCode expected;
  std::function<grpc::Status()> call;
};

grpc::Status GetIndex(const KvCacheClient& client, const v1::GetIndexRequest& request,
                      v1::GetIndexResponse* response) {
  return client.stub->GetIndex(client.Context().get(), request, response);
}

grpc::Status ListPage(const KvCacheClient& client, const v1::ListSequencesRequest& request,
                      v1::ListSequencesResponse* response) {
  return client.stub->ListSequences(client.Context().get(), request, response);
}

// An index of `clusters` unit-vector centroids (one-hot) for head (layer, kv_head).
v1::HeadIndex OneHotIndex(int32_t layer, int32_t kv_head, int32_t clusters) {
  v1::HeadIndex index;
  index.set_layer(layer);
  index.set_kv_head(kv_head);
  const int32_t d = TestLayout().head_dim();
  for (int32_t c = 0; c < clusters; ++c) {
    for (int32_t j = 0; j < d; ++j) index.add_centroids(j == c % d ? 1.0f : 0.0f);
    index.add_sizes(1);
  }
  return index;
}

TEST_F(DaemonTest, AmplifyingRequestsAreRefusedBeforeAnyWorkAndTheDaemonKeepsServing) {
  KvCacheClient client = Client();
  KvCacheClient other = Client("bystander");
  const SequenceData data = MakeSequenceData(/*seed=*/5, /*clusters=*/2, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(client, kSeq));
  ASSERT_GRPC_OK(PutSequence(client, kSeq, data, /*write_through=*/false));
  ASSERT_GRPC_OK(OpenSequence(other, "theirs"));

  const std::vector<AmplifyCase> cases = {
      {"GetIndex naming layer 0 a million times (a 4 MB request, a 2 GB answer)",
       grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::GetIndexRequest r;
         r.set_sequence_id(kSeq);
         for (int i = 0; i < 1000000; ++i) r.add_layers(0);
         v1::GetIndexResponse response;
         return GetIndex(client, r, &response);
       }},
      {"GetIndex naming a layer twice", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::GetIndexRequest r;
         r.set_sequence_id(kSeq);
         r.add_layers(1);
         r.add_layers(1);
         v1::GetIndexResponse response;
         return GetIndex(client, r, &response);
       }},
      {"FetchClusters naming one cluster 65,536 times", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return Fetch(client, kSeq, std::vector<v1::ClusterRef>(65536, Ref(0, 0, 0))).status; }},
      {"FetchClusters naming 65,537 clusters", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         std::vector<v1::ClusterRef> refs;
         for (int i = 0; i < 65537; ++i) refs.push_back(Ref(0, 0, i));
         return Fetch(client, kSeq, refs).status;
       }},
      {"AppendClusters extending more heads than the layout has",
       grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::AppendClustersRequest r;
         r.set_sequence_id(kSeq);
         for (int i = 0; i < 17; ++i) *r.add_appended() = OneHotIndex(0, 0, 1);
         v1::AppendClustersResponse response;
         return client.stub->AppendClusters(client.Context().get(), r, &response);
       }},
      {"PutClusters carrying more indexes than the layout has heads",
       grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::PutClustersRequest m;
         m.set_sequence_id(kSeq);
         for (int i = 0; i < 1000; ++i) *m.add_indexes() = OneHotIndex(0, 0, 1);
         return PutMessages(client, {m});
       }},
      {"Select with 10 million query floats", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::SelectRequest r;
         r.set_sequence_id(kSeq);
         r.set_layer(0);
         r.set_budget(1024);
         r.mutable_queries()->Resize(10000000, 0.5f);
         v1::SelectResponse response;
         return client.stub->Select(client.Context().get(), r, &response);
       }},
      {"OpenSequence with a 1 MiB sequence id", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return OpenSequence(client, std::string(1 << 20, 's')); }},
      {"CloseSequence with a 1 MiB sequence id", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::CloseSequenceRequest r;
         r.set_sequence_id(std::string(1 << 20, 's'));
         r.set_drop(true);
         v1::CloseSequenceResponse response;
         return client.stub->CloseSequence(client.Context().get(), r, &response);
       }},
      {"ReportClientStats counting 2^60 tokens", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_device_cache_hit_tokens(uint64_t{1} << 60);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with 2^20 estimated-recall buckets", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         for (int i = 0; i < (1 << 20); ++i) r.add_estimated_recall_counts(1);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats whose recall sum exceeds its count", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         for (int i = 0; i < 8; ++i) r.add_estimated_recall_counts(i == 7 ? 1 : 0);
         r.set_estimated_recall_sum(2.0);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with a negative step", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_sequence_id("seq-report");
         r.set_step(-1);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with a step past 2^40", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_sequence_id("seq-report");
         r.set_step((int64_t{1} << 40) + 1);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with 2^41 selected heads", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_sequence_id("seq-report");
         r.set_selected_heads(uint64_t{1} << 41);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with more than 2^31 tokens per selected head",
       grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_sequence_id("seq-report");
         r.set_selected_heads(2);
         r.set_selected_tokens((uint64_t{1} << 32) + 1);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with selected tokens but no heads", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_sequence_id("seq-report");
         r.set_selected_tokens(5);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with a step but no sequence", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_step(64);
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ReportClientStats with a 1 MiB sequence id", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ReportClientStatsRequest r;
         r.set_sequence_id(std::string(1 << 20, 's'));
         v1::ReportClientStatsResponse response;
         return client.stub->ReportClientStats(client.Context().get(), r, &response);
       }},
      {"ConnectDataPlane with a 1 MiB worker address", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ConnectDataPlaneRequest r;
         r.set_worker_address(std::string(1 << 20, 'a'));
         r.set_rkey(std::string(64, 'k'));
         r.set_region_base(4096);
         r.set_region_bytes(4096);
         v1::ConnectDataPlaneResponse response;
         return client.stub->ConnectDataPlane(client.Context().get(), r, &response);
       }},
      {"ListSequences with a negative page size", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         v1::ListSequencesRequest r;
         r.set_max_sequences(-1);
         v1::ListSequencesResponse response;
         return ListPage(client, r, &response);
       }},
  };
  for (const AmplifyCase& c : cases) {
    SCOPED_TRACE(c.name);
    const auto start = std::chrono::steady_clock::now();
    const grpc::Status s = c.call();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::cout << "  refused in " << ms << " ms: " << c.name << " (" << s.error_message() << ")\n";
    EXPECT_EQ(s.error_code(), c.expected) << s.error_code() << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty());
    // Every tenant is still served.
    v1::StatsResponse stats;
    ASSERT_GRPC_OK(other.stub->Stats(other.Context().get(), v1::StatsRequest(), &stats));
    ASSERT_GRPC_OK(OpenSequence(other, "theirs"));
  }
  ExpectFetchMatches(client, kSeq, data.blocks);
}

TEST(DaemonLimitsTest, AnIndexLargerThanTheResponseLimitIsRefusedAndServedLayerByLayer) {
  DaemonProcessOptions options;
  options.flags = {"--max_response_mib=1"};
  DaemonProcess daemon(options);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  KvCacheClient client = MakeKvCacheClient(daemon.target(), "big");
  ASSERT_GRPC_OK(OpenSequence(client, kSeq));
  // 300 clusters of 128 floats per head: ~150 KiB per head, ~0.6 MiB per layer of 4 heads,
  // ~2.4 MiB for the 4 layers.
  v1::PutClustersRequest m;
  m.set_sequence_id(kSeq);
  for (int32_t l = 0; l < 4; ++l) {
    for (int32_t h = 0; h < 4; ++h) *m.add_indexes() = OneHotIndex(l, h, 300);
  }
  ASSERT_GRPC_OK(PutMessages(client, {m}));
  v1::GetIndexRequest all;
  all.set_sequence_id(kSeq);
  v1::GetIndexResponse response;
  const grpc::Status whole = GetIndex(client, all, &response);
  EXPECT_EQ(whole.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << whole.error_message();
  EXPECT_NE(whole.error_message().find("fewer layers"), std::string::npos)
      << whole.error_message();
  for (int32_t l = 0; l < 4; ++l) {
    v1::GetIndexRequest one;
    one.set_sequence_id(kSeq);
    one.add_layers(l);
    v1::GetIndexResponse layer;
    ASSERT_GRPC_OK(GetIndex(client, one, &layer));
    ASSERT_EQ(layer.indexes_size(), 4);
    for (int32_t h = 0; h < 4; ++h) {
      EXPECT_EQ(layer.indexes(h).SerializeAsString(),
                m.indexes(l * 4 + h).SerializeAsString());
    }
  }
}

TEST_F(DaemonTest, ListSequencesAnswersInBoundedPages) {
  KvCacheClient client = Client();
  std::set<std::string> opened;
  for (int i = 0; i < 25; ++i) {
    const std::string id = absl::StrCat("seq-", i);
    ASSERT_GRPC_OK(OpenSequence(client, id));
    opened.insert(id);
  }
  v1::ListSequencesRequest request;
  request.set_max_sequences(7);
  std::vector<std::string> listed;
  std::vector<int> pages;
  while (true) {
    v1::ListSequencesResponse page;
    ASSERT_GRPC_OK(ListPage(client, request, &page));
    ASSERT_LE(page.sequences_size(), 7);
    pages.push_back(page.sequences_size());
    for (const v1::SequenceInfo& info : page.sequences()) listed.push_back(info.sequence_id());
    if (page.next_start_after().empty()) break;
    EXPECT_EQ(page.next_start_after(), listed.back());
    request.set_start_after(page.next_start_after());
    ASSERT_LT(pages.size(), 10u);
  }
  EXPECT_EQ(pages, (std::vector<int>{7, 7, 7, 4}));
  EXPECT_EQ(std::vector<std::string>(opened.begin(), opened.end()), listed);  // id order, once
}

// An append of one cluster to head (0, 0) at `first`, with a block whose bytes and token count
// derive from `seed`.
v1::AppendClustersRequest OneClusterAppend(int32_t first, uint32_t seed, int32_t tokens) {
  v1::AppendClustersRequest r;
  r.set_sequence_id(kSeq);
  v1::HeadIndex* appended = r.add_appended();
  *appended = OneHotIndex(0, 0, 1);
  appended->set_centroids(0, 0.0f);
  appended->set_centroids(static_cast<int>(seed % 128), 1.0f);
  appended->set_sizes(0, tokens);
  appended->set_first_cluster(first);
  *r.add_blocks() = MakeBlock(Ref(0, 0, first), tokens, seed);
  return r;
}

grpc::Status Append(const KvCacheClient& client, const v1::AppendClustersRequest& r) {
  v1::AppendClustersResponse response;
  return client.stub->AppendClusters(client.Context().get(), r, &response);
}

// The head (0, 0) index of the sequence.
v1::HeadIndex HeadZero(const KvCacheClient& client) {
  v1::GetIndexRequest r;
  r.set_sequence_id(kSeq);
  r.add_layers(0);
  v1::GetIndexResponse response;
  EXPECT_TRUE(GetIndex(client, r, &response).ok());
  for (const v1::HeadIndex& index : response.indexes()) {
    if (index.kv_head() == 0) return index;
  }
  return v1::HeadIndex();
}

TEST_F(DaemonTest, ARetriedAppendIsAppliedOnceAndAConflictingOneIsRefused) {
  KvCacheClient client = Client();
  ASSERT_GRPC_OK(OpenSequence(client, kSeq));
  const v1::AppendClustersRequest first = OneClusterAppend(0, 11, 20);
  ASSERT_GRPC_OK(Append(client, first));
  // The reply was lost; the client sends the same request again: OK, nothing applied twice.
  ASSERT_GRPC_OK(Append(client, first));
  EXPECT_EQ(HeadZero(client).sizes_size(), 1);
  // Another append claiming the same id with other clusters: refused, index unchanged.
  const grpc::Status conflict = Append(client, OneClusterAppend(0, 12, 20));
  EXPECT_EQ(conflict.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << conflict.error_message();
  // A gap in the numbering: refused.
  const grpc::Status gap = Append(client, OneClusterAppend(5, 13, 20));
  EXPECT_EQ(gap.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << gap.error_message();
  // The next id: applied.
  ASSERT_GRPC_OK(Append(client, OneClusterAppend(1, 14, 30)));
  const v1::HeadIndex index = HeadZero(client);
  ASSERT_EQ(index.sizes_size(), 2);
  EXPECT_EQ(index.sizes(0), 20);
  EXPECT_EQ(index.sizes(1), 30);
  ExpectFetchMatches(client, kSeq,
                     {MakeBlock(Ref(0, 0, 0), 20, 11), MakeBlock(Ref(0, 0, 1), 30, 14)});
}

TEST_F(DaemonTest, ConcurrentAppendersLeaveAnIndexThatMatchesTheStoredBlocks) {
  constexpr int kThreads = 4;
  constexpr int kAppendsEach = 8;
  KvCacheClient setup = Client();
  ASSERT_GRPC_OK(OpenSequence(setup, kSeq));
  // Each thread appends kAppendsEach clusters at whatever id is next, retrying at the new end
  // when another thread got there first.
  std::vector<std::thread> threads;
  std::vector<int> conflicts(kThreads, 0);
  std::vector<std::string> errors(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      KvCacheClient client = Client();
      for (int i = 0; i < kAppendsEach; ++i) {
        const uint32_t seed = static_cast<uint32_t>(1000 + t * 100 + i);
        const int32_t tokens = 16 + t * kAppendsEach + i;  // unique per (thread, append)
        while (true) {
          const int32_t next = HeadZero(client).sizes_size();
          const grpc::Status s = Append(client, OneClusterAppend(next, seed, tokens));
          if (s.ok()) break;
          if (s.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
            errors[t] = s.error_message();
            return;
          }
          ++conflicts[t];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) ASSERT_TRUE(errors[t].empty()) << errors[t];
  int total_conflicts = 0;
  for (int c : conflicts) total_conflicts += c;
  std::cout << "  " << total_conflicts << " appends raced and were retried at the new end\n";

  // Every append landed exactly once, and cluster i's block is the one appended with the
  // centroid and size at position i of the index.
  const v1::HeadIndex index = HeadZero(setup);
  ASSERT_EQ(index.sizes_size(), kThreads * kAppendsEach);
  std::set<int32_t> sizes(index.sizes().begin(), index.sizes().end());
  EXPECT_EQ(sizes.size(), static_cast<size_t>(kThreads * kAppendsEach));
  std::vector<v1::ClusterBlock> expected;
  for (int32_t c = 0; c < index.sizes_size(); ++c) {
    const int32_t tokens = index.sizes(c);
    const int t = (tokens - 16) / kAppendsEach;
    const int i = (tokens - 16) % kAppendsEach;
    const uint32_t seed = static_cast<uint32_t>(1000 + t * 100 + i);
    EXPECT_EQ(index.centroids(c * 128 + static_cast<int>(seed % 128)), 1.0f) << "cluster " << c;
    expected.push_back(MakeBlock(Ref(0, 0, c), tokens, seed));
  }
  ExpectFetchMatches(setup, kSeq, expected);
}

}  // namespace
}  // namespace clusterkv::testing
