// Sequence::Prefetch over the in-memory fake transport: a speculative recall runs on the
// sequence's background thread, the layer's Attend takes it up, fetches only what its real
// queries add, and attends exactly as without the prefetch; failures and bad input.
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "client/internal/sequence_core.h"
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

class PrefetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = Random(size_t{kKvHeads} * kTokens * kDim, 1, DType::kFloat16);
    values_ = Random(keys_.size(), 2, DType::kFloat16);
    seq_ = OpenAndPrefill(&fake_, "seq-1");
    plain_ = OpenAndPrefill(&plain_fake_, "seq-1");
  }

  std::unique_ptr<SequenceCore> OpenAndPrefill(FakeTransport* fake, const char* id) {
    const KvLayout layout{kLayers, kQHeads, kKvHeads, kDim, DType::kFloat16};
    auto seq = SequenceCore::Open(fake, id, layout, TestOptions());
    EXPECT_TRUE(seq.ok()) << seq.status();
    if (!seq.ok()) return nullptr;
    const Tensor3View k(keys_.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
    const Tensor3View v(values_.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
    for (int layer = 0; layer < kLayers; ++layer) {
      EXPECT_TRUE((*seq)->OffloadPrefill(layer, k, v).ok());
    }
    return *std::move(seq);
  }

  static absl::Status Attend(SequenceCore& seq, const std::vector<float>& q,
                             std::vector<float>* out, StepStats* stats) {
    out->assign(q.size(), 0.0f);
    return seq.Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                      MatrixView(out->data(), kQHeads, kDim), stats);
  }

  // `q` nudged by a little noise: a speculation that mostly agrees with the real query.
  static std::vector<float> Nudged(const std::vector<float>& q, uint32_t seed) {
    std::vector<float> noise = Random(q.size(), seed, DType::kFloat32);
    std::vector<float> out(q);
    for (size_t i = 0; i < out.size(); ++i) out[i] += 0.2f * noise[i];
    return out;
  }

  static void ExpectSameBits(const std::vector<float>& a, const std::vector<float>& b) {
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  }

  std::vector<float> keys_, values_;
  FakeTransport fake_, plain_fake_;
  std::unique_ptr<SequenceCore> seq_;    // prefetches
  std::unique_ptr<SequenceCore> plain_;  // the same sequence, never prefetching
};

TEST_F(PrefetchTest, PrefetchOfTheRealQueryLeavesAttendNothingToFetch) {
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  ASSERT_TRUE(seq_->Prefetch(1, ConstMatrixView(q.data(), kQHeads, kDim)).ok());
  ASSERT_TRUE(seq_->WaitForPrefetch(1).ok());
  EXPECT_EQ(fake_.fetches, 1);

  std::vector<float> out, want;
  StepStats stats, plain_stats;
  ASSERT_TRUE(Attend(*seq_, q, &out, &stats).ok());
  ASSERT_TRUE(Attend(*plain_, q, &want, &plain_stats).ok());
  ExpectSameBits(out, want);
  EXPECT_EQ(fake_.fetches, 1);  // Attend fetched nothing itself
  EXPECT_EQ(stats.miss_tokens, 0);
  EXPECT_EQ(stats.hit_tokens, plain_stats.miss_tokens);
  EXPECT_EQ(stats.prefetched_tokens, plain_stats.miss_tokens);
  EXPECT_EQ(stats.prefetch_used_tokens, stats.hit_tokens);
  EXPECT_EQ(stats.prefetched_clusters, plain_stats.miss_clusters);
  // The prefetch's blocks are the step's: same bytes as the plain step fetched.
  EXPECT_EQ(stats.bytes_fetched, plain_stats.bytes_fetched);
  EXPECT_EQ(seq_->bytes_fetched(), plain_->bytes_fetched());
  EXPECT_EQ(seq_->blocks_fetched_grpc(), plain_->blocks_fetched_grpc());
  EXPECT_EQ(stats.prefetch_failures, 0);
  // The cache counts the step's lookups only: the reservation is neither a hit nor a miss.
  EXPECT_EQ(seq_->cache_stats().hit_tokens, stats.hit_tokens);
  EXPECT_EQ(seq_->cache_stats().miss_tokens, 0);
}

TEST_F(PrefetchTest, AttendFetchesOnlyWhatTheRealQueryAddsToTheSpeculation) {
  const std::vector<float> q = Random(kQHeads * kDim, 4, DType::kFloat32);
  const std::vector<float> guess = Nudged(q, 40);
  ASSERT_TRUE(seq_->Prefetch(1, ConstMatrixView(guess.data(), kQHeads, kDim)).ok());

  std::vector<float> out, want;
  StepStats stats, plain_stats;
  ASSERT_TRUE(Attend(*seq_, q, &out, &stats).ok());  // takes the prefetch up by itself
  ASSERT_TRUE(Attend(*plain_, q, &want, &plain_stats).ok());
  ExpectSameBits(out, want);
  // Every selected token came either from the speculation or from Attend's own fetch.
  EXPECT_EQ(stats.hit_tokens + stats.miss_tokens, plain_stats.miss_tokens);
  EXPECT_EQ(stats.prefetch_used_tokens, stats.hit_tokens);
  EXPECT_GT(stats.prefetch_used_tokens, 0);
  EXPECT_LE(stats.prefetch_used_tokens, stats.prefetched_tokens);
  EXPECT_LT(stats.miss_tokens, plain_stats.miss_tokens);

  // Later steps go on exactly as without speculation.
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> next = Random(kQHeads * kDim, 50 + step, DType::kFloat32);
    ASSERT_TRUE(seq_->Prefetch(1, ConstMatrixView(Nudged(next, 60 + step).data(), kQHeads,
                                                  kDim))
                    .ok());
    ASSERT_TRUE(Attend(*seq_, next, &out, &stats).ok());
    ASSERT_TRUE(Attend(*plain_, next, &want, &plain_stats).ok());
    ExpectSameBits(out, want);
    EXPECT_EQ(seq_->step(), plain_->step());
  }
}

TEST_F(PrefetchTest, FailedPrefetchIsCountedAndAttendFetchesEverything) {
  const std::vector<float> q = Random(kQHeads * kDim, 5, DType::kFloat32);
  fake_.fail_fetch = absl::UnavailableError("daemon restarting");
  ASSERT_TRUE(seq_->Prefetch(1, ConstMatrixView(q.data(), kQHeads, kDim)).ok());
  EXPECT_EQ(seq_->WaitForPrefetch(1).code(), absl::StatusCode::kUnavailable);

  std::vector<float> out, want;
  StepStats stats, plain_stats;
  ASSERT_TRUE(Attend(*seq_, q, &out, &stats).ok());
  ASSERT_TRUE(Attend(*plain_, q, &want, &plain_stats).ok());
  ExpectSameBits(out, want);
  EXPECT_EQ(stats.prefetch_failures, 1);
  EXPECT_EQ(stats.hit_tokens, 0);  // the reserved slots were not trusted
  EXPECT_EQ(stats.miss_tokens, plain_stats.miss_tokens);
  EXPECT_EQ(stats.prefetched_tokens, 0);
}

TEST_F(PrefetchTest, PrefetchOfTheNextStepBeforeItBegins) {
  const std::vector<float> q = Random(kQHeads * kDim, 6, DType::kFloat32);
  std::vector<float> out, want;
  StepStats stats, plain_stats;
  ASSERT_TRUE(Attend(*seq_, q, &out, &stats).ok());
  ASSERT_TRUE(Attend(*plain_, q, &want, &plain_stats).ok());
  // Layer 1 was attended in this step: a prefetch now is for the next step's Attend.
  const std::vector<float> next = Random(kQHeads * kDim, 7, DType::kFloat32);
  ASSERT_TRUE(seq_->Prefetch(1, ConstMatrixView(next.data(), kQHeads, kDim)).ok());
  ASSERT_TRUE(Attend(*seq_, next, &out, &stats).ok());
  ASSERT_TRUE(Attend(*plain_, next, &want, &plain_stats).ok());
  ExpectSameBits(out, want);
  EXPECT_EQ(seq_->step(), 1);
  EXPECT_EQ(stats.miss_tokens, 0);
  EXPECT_EQ(stats.hit_tokens, plain_stats.hit_tokens + plain_stats.miss_tokens);
}

TEST_F(PrefetchTest, DenseLayersNeedNoPrefetchAndBadInputIsInvalidArgument) {
  const std::vector<float> q = Random(kQHeads * kDim, 8, DType::kFloat32);
  EXPECT_TRUE(seq_->Prefetch(0, ConstMatrixView(q.data(), kQHeads, kDim)).ok());  // dense
  EXPECT_TRUE(seq_->WaitForPrefetch(0).ok());
  EXPECT_EQ(fake_.fetches, 0);
  EXPECT_EQ(seq_->Prefetch(kLayers, ConstMatrixView(q.data(), kQHeads, kDim)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->Prefetch(1, ConstMatrixView(q.data(), kQHeads - 1, kDim)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> nan = q;
  nan[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(seq_->Prefetch(1, ConstMatrixView(nan.data(), kQHeads, kDim)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->WaitForPrefetch(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_.fetches, 0);
}

TEST_F(PrefetchTest, CloseTakesUpAPrefetchInFlight) {
  const std::vector<float> q = Random(kQHeads * kDim, 9, DType::kFloat32);
  ASSERT_TRUE(seq_->Prefetch(1, ConstMatrixView(q.data(), kQHeads, kDim)).ok());
  ASSERT_TRUE(seq_->Close(/*drop=*/false).ok());
  EXPECT_EQ(fake_.fetches, 1);
  EXPECT_GT(seq_->bytes_fetched(), 0);  // counted, though no step used it
}

}  // namespace
}  // namespace clusterkv::client
