// Client over an in-memory fake transport: opening sequences, and the installed Sequence
// answering exactly as the SequenceCore it forwards to.
#include <memory>
#include <vector>

#include "client/client.h"
#include "client/internal/client_internals.h"
#include "client/sequence.h"
#include "gtest/gtest.h"
#include "tests/unit/client_test_support.h"

namespace clusterkv::client {
namespace {

using test_support::FakeTransport;
using test_support::kDim;
using test_support::kKvHeads;
using test_support::kLayers;
using test_support::kQHeads;
using test_support::kTokens;
using test_support::Random;
using test_support::TestOptions;

TEST(ClientTest, OpensSequencesOverAnyTransport) {
  auto transport = std::make_unique<FakeTransport>();
  FakeTransport* fake = transport.get();
  ClientOptions options;
  options.config = TestOptions().config;
  auto client = ClientInternals::CreateWithTransport(std::move(transport), options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(ClientInternals::connection(**client), nullptr);
  auto seq = (*client)->OpenSequence("a", KvLayout{2, 4, 2, 16, DType::kFloat16});
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(fake->opens, 1);
  EXPECT_EQ((*client)->ReopenSequence("b").status().code(), absl::StatusCode::kNotFound);
  options.backend = "tpu";
  EXPECT_EQ(ClientInternals::CreateWithTransport(std::make_unique<FakeTransport>(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions net;
  net.target = "unix:/nonexistent/clusterkvd.sock";
  net.tenant = "t";
  auto connected = Client::Connect(net);
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_NE(ClientInternals::connection(**connected), nullptr);
}

// The installed Sequence is a face over a SequenceCore: the same calls on both, over two
// transports holding the same data, give bit-identical outputs and the same counters.
TEST(ClientTest, TheInstalledSequenceAnswersExactlyAsItsCore) {
  const KvLayout layout{kLayers, kQHeads, kKvHeads, kDim, DType::kFloat16};
  const std::vector<float> keys = Random(size_t{kKvHeads} * kTokens * kDim, 1, layout.dtype);
  const std::vector<float> values = Random(keys.size(), 2, layout.dtype);
  const Tensor3View k(keys.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
  const Tensor3View v(values.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});

  ClientOptions options;
  options.config = TestOptions().config;
  options.threads = 1;
  options.put_message_bytes = 64 << 10;
  auto client = ClientInternals::CreateWithTransport(std::make_unique<FakeTransport>(), options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto face = (*client)->OpenSequence("s", layout);
  ASSERT_TRUE(face.ok()) << face.status();

  FakeTransport fake;
  auto core = SequenceCore::Open(&fake, "s", layout,
                                 ClientInternals::sequence_options(**client));
  ASSERT_TRUE(core.ok()) << core.status();

  int reported = 0;
  for (int layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE((*face)->OffloadPrefill(layer, k, v, [&](int32_t, int32_t) { ++reported; }).ok());
    ASSERT_TRUE((*core)->OffloadPrefill(layer, k, v).ok());
  }
  EXPECT_EQ(reported, 1 + kKvHeads);  // the dense layer once, each clustered head once
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  const std::vector<float> row = Random(kKvHeads * kDim, 4, DType::kFloat32);
  for (int step = 0; step < 20; ++step) {
    for (int layer = 0; layer < kLayers; ++layer) {
      std::vector<float> a(kQHeads * kDim), b(kQHeads * kDim);
      StepStats sa, sb;
      ASSERT_TRUE((*face)->Attend(layer, ConstMatrixView(q.data(), kQHeads, kDim),
                                  MatrixView(a.data(), kQHeads, kDim), &sa).ok());
      ASSERT_TRUE((*core)->Attend(layer, ConstMatrixView(q.data(), kQHeads, kDim),
                                  MatrixView(b.data(), kQHeads, kDim), &sb).ok());
      ASSERT_EQ(a, b) << "step " << step << " layer " << layer;
      EXPECT_EQ(sa.attended_tokens, sb.attended_tokens);
      EXPECT_EQ(sa.estimated_recall, sb.estimated_recall);
      const ConstMatrixView r(row.data(), kKvHeads, kDim);
      ASSERT_TRUE((*face)->AppendToken(layer, r, r).ok());
      ASSERT_TRUE((*core)->AppendToken(layer, r, r).ok());
    }
  }
  EXPECT_EQ((*face)->num_tokens(), (*core)->num_tokens());
  EXPECT_EQ((*face)->step(), (*core)->step());
  EXPECT_EQ((*face)->bytes_fetched(), (*core)->bytes_fetched());
  EXPECT_EQ((*face)->bytes_offloaded(), (*core)->bytes_offloaded());
  EXPECT_EQ((*face)->blocks_fetched_grpc(), (*core)->blocks_fetched_grpc());
  EXPECT_EQ((*face)->blocks_fetched_direct(), 0);
  for (int h = 0; h < kKvHeads; ++h) {
    EXPECT_EQ((*face)->num_clusters(1, h), (*core)->index(1, h)->num_clusters());
    EXPECT_GT((*face)->num_clusters(1, h), 8);  // C0 and the appended windows' clusters
  }
  EXPECT_EQ((*face)->num_clusters(kLayers, 0), 0);
  const CacheStats cache = (*face)->cache_stats();
  const gpu::CacheStats expected = (*core)->cache_stats();
  EXPECT_EQ(cache.hit_tokens, expected.hit_tokens);
  EXPECT_EQ(cache.miss_tokens, expected.miss_tokens);
  EXPECT_EQ(cache.hit_clusters, expected.hit_clusters);
  EXPECT_EQ(cache.miss_clusters, expected.miss_clusters);
  EXPECT_EQ(cache.evictions, expected.evictions);
  EXPECT_GT(cache.hit_tokens, 0);
  EXPECT_DOUBLE_EQ((*face)->cache_hit_rate(), (*core)->cache_hit_rate());
  EXPECT_STREQ((*client)->data_plane_name(), "grpc");
  EXPECT_TRUE((*face)->Close(/*drop=*/true).ok());
}

}  // namespace
}  // namespace clusterkv::client
