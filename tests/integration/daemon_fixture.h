// Shared pieces of the daemon integration tests: a small fp16 layout, seeded cluster blocks
// (built with storage::EncodeClusterBlock, so they are real blocks) and their centroid indexes,
// and thin wrappers over the generated stub's streaming calls.
#ifndef CLUSTERKV_TESTS_INTEGRATION_DAEMON_FIXTURE_H_
#define CLUSTERKV_TESTS_INTEGRATION_DAEMON_FIXTURE_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "gtest/gtest.h"
#include "storage/cluster_block.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/random_data.h"

namespace clusterkv::testing {

#define ASSERT_GRPC_OK(expr)                                                          \
  do {                                                                                \
    const ::grpc::Status _s = (expr);                                                 \
    ASSERT_TRUE(_s.ok()) << "code " << _s.error_code() << ": " << _s.error_message(); \
  } while (0)

// 4 layers, 8 query heads over 4 kv heads (GQA group 2), head_dim 128, fp16.
inline v1::KvLayout TestLayout() {
  v1::KvLayout layout;
  layout.set_num_layers(4);
  layout.set_num_q_heads(8);
  layout.set_num_kv_heads(4);
  layout.set_head_dim(128);
  layout.set_dtype(v1::DTYPE_FP16);
  return layout;
}

inline v1::ClusterRef Ref(int32_t layer, int32_t head, int32_t cluster) {
  v1::ClusterRef ref;
  ref.set_layer(layer);
  ref.set_kv_head(head);
  ref.set_cluster(cluster);
  return ref;
}

// One real fp16 block of `tokens` tokens: positions then seeded gaussian keys and values.
inline v1::ClusterBlock MakeBlock(const v1::ClusterRef& ref, int32_t tokens, uint32_t seed) {
  const int32_t d = TestLayout().head_dim();
  std::vector<int32_t> positions(static_cast<size_t>(tokens));
  for (int32_t i = 0; i < tokens; ++i) positions[i] = ref.cluster() * 1000 + i * 3;
  const std::vector<float> keys = Gaussian(tokens, d, seed);
  const std::vector<float> values = Gaussian(tokens, d, seed ^ 0x5bd1e995u);
  absl::StatusOr<std::vector<uint8_t>> bytes =
      storage::EncodeClusterBlock(positions, ConstMatrixView(keys.data(), tokens, d),
                                  ConstMatrixView(values.data(), tokens, d), DType::kFloat16);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  v1::ClusterBlock block;
  *block.mutable_id() = ref;
  block.set_num_tokens(tokens);
  if (bytes.ok()) block.set_data(bytes->data(), bytes->size());
  return block;
}

// A whole sequence: `clusters` blocks per (layer, kv head) of 16..200 tokens, and per head an
// index whose sizes are the blocks' token counts and whose centroids are unit vectors (with key
// statistics on even layers).
struct SequenceData {
  std::vector<v1::ClusterBlock> blocks;
  std::vector<v1::HeadIndex> indexes;
  int64_t num_tokens = 0;
};

inline SequenceData MakeSequenceData(uint32_t seed, int32_t clusters, int32_t layers = 4) {
  const v1::KvLayout layout = TestLayout();
  const int32_t d = layout.head_dim();
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tokens(16, 200);
  SequenceData data;
  for (int32_t l = 0; l < layers; ++l) {
    for (int32_t h = 0; h < layout.num_kv_heads(); ++h) {
      v1::HeadIndex index;
      index.set_layer(l);
      index.set_kv_head(h);
      std::vector<float> centroids = Gaussian(clusters, d, rng());
      for (int32_t c = 0; c < clusters; ++c) {
        double norm = 0;
        for (int32_t j = 0; j < d; ++j) norm += centroids[c * d + j] * centroids[c * d + j];
        const float inv = static_cast<float>(1.0 / std::sqrt(norm));
        for (int32_t j = 0; j < d; ++j) index.add_centroids(centroids[c * d + j] * inv);
        const int32_t n = tokens(rng);
        index.add_sizes(n);
        if (l % 2 == 0) {  // key statistics on even layers; odd layers go without
          index.add_key_norms(1.0f + 0.5f * static_cast<float>(c));
          index.add_key_spreads(0.01f * static_cast<float>(c + 1));
        }
        data.blocks.push_back(MakeBlock(Ref(l, h, c), n, rng()));
        if (h == 0) data.num_tokens += n;
      }
      data.indexes.push_back(std::move(index));
    }
  }
  return data;
}

inline grpc::Status OpenSequence(const KvCacheClient& client, const std::string& id,
                                 v1::OpenSequenceResponse* response = nullptr,
                                 const v1::KvLayout& layout = TestLayout()) {
  v1::OpenSequenceRequest request;
  request.set_sequence_id(id);
  *request.mutable_layout() = layout;
  v1::OpenSequenceResponse ignored;
  return client.stub->OpenSequence(client.Context().get(), request,
                                   response != nullptr ? response : &ignored);
}

// Streams `messages` (each already naming the sequence) as one PutClusters call.
inline grpc::Status PutMessages(const KvCacheClient& client,
                                const std::vector<v1::PutClustersRequest>& messages,
                                v1::PutClustersResponse* response = nullptr) {
  v1::PutClustersResponse ignored;
  auto context = client.Context();
  std::unique_ptr<grpc::ClientWriter<v1::PutClustersRequest>> writer =
      client.stub->PutClusters(context.get(), response != nullptr ? response : &ignored);
  for (const v1::PutClustersRequest& m : messages) {
    if (!writer->Write(m)) break;  // the daemon ended the call; Finish says why
  }
  writer->WritesDone();
  return writer->Finish();
}

// Puts a sequence's blocks (`per_message` per stream message) and then its indexes.
inline grpc::Status PutSequence(const KvCacheClient& client, const std::string& id,
                                const SequenceData& data, bool write_through,
                                v1::PutClustersResponse* response = nullptr,
                                size_t per_message = 8) {
  std::vector<v1::PutClustersRequest> messages;
  for (size_t i = 0; i < data.blocks.size(); i += per_message) {
    v1::PutClustersRequest m;
    m.set_sequence_id(id);
    m.set_write_through(write_through);
    for (size_t j = i; j < std::min(data.blocks.size(), i + per_message); ++j) {
      *m.add_blocks() = data.blocks[j];
    }
    messages.push_back(std::move(m));
  }
  v1::PutClustersRequest last;
  last.set_sequence_id(id);
  last.set_write_through(write_through);
  last.set_num_tokens(data.num_tokens);
  for (const v1::HeadIndex& index : data.indexes) *last.add_indexes() = index;
  messages.push_back(std::move(last));
  return PutMessages(client, messages, response);
}

struct FetchResult {
  grpc::Status status;
  std::vector<v1::ClusterBlock> blocks;
  int messages = 0;
};

inline FetchResult Fetch(const KvCacheClient& client, const std::string& id,
                         const std::vector<v1::ClusterRef>& refs) {
  v1::FetchClustersRequest request;
  request.set_sequence_id(id);
  for (const v1::ClusterRef& ref : refs) *request.add_clusters() = ref;
  auto context = client.Context();
  std::unique_ptr<grpc::ClientReader<v1::FetchClustersResponse>> reader =
      client.stub->FetchClusters(context.get(), request);
  FetchResult result;
  v1::FetchClustersResponse message;
  while (reader->Read(&message)) {
    ++result.messages;
    for (v1::ClusterBlock& b : *message.mutable_blocks()) result.blocks.push_back(std::move(b));
  }
  result.status = reader->Finish();
  return result;
}

inline bool SameRef(const v1::ClusterRef& a, const v1::ClusterRef& b) {
  return a.layer() == b.layer() && a.kv_head() == b.kv_head() && a.cluster() == b.cluster();
}

// Fetches `expected` (in the given order) and checks every block bit-exact and in order.
inline void ExpectFetchMatches(const KvCacheClient& client, const std::string& id,
                               const std::vector<v1::ClusterBlock>& expected,
                               int* messages = nullptr) {
  std::vector<v1::ClusterRef> refs;
  for (const v1::ClusterBlock& b : expected) refs.push_back(b.id());
  FetchResult got = Fetch(client, id, refs);
  ASSERT_TRUE(got.status.ok()) << got.status.error_code() << ": " << got.status.error_message();
  ASSERT_EQ(got.blocks.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(SameRef(got.blocks[i].id(), expected[i].id())) << "block " << i << " out of order";
    ASSERT_EQ(got.blocks[i].num_tokens(), expected[i].num_tokens()) << "block " << i;
    ASSERT_TRUE(got.blocks[i].data() == expected[i].data()) << "block " << i << " differs";
  }
  if (messages != nullptr) *messages = got.messages;
}

// A fresh daemon per test, in its own scratch directory.
class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status started = daemon_.Start();
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override {
    if (!daemon_.running()) return;
    absl::StatusOr<int> code = daemon_.Stop();
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << daemon_.output();
  }

  KvCacheClient Client(const std::string& tenant = "default") const {
    return MakeKvCacheClient(daemon_.target(), tenant);
  }

  DaemonProcess daemon_;
};

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_INTEGRATION_DAEMON_FIXTURE_H_
