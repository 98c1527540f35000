// Sequence::AttendBatch over the in-memory fake transport (no data plane: each sequence's
// misses go over FetchClusters): every item gets exactly what Attend gives the same sequence,
// a failing item does not fail the others, and bad batches are refused before anything runs.
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "client/internal/sequence_core.h"
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

constexpr int kBatch = 3;

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int b = 0; b < kBatch; ++b) {
      keys_.push_back(Random(size_t{kKvHeads} * kTokens * kDim, 10 + b, DType::kFloat16));
      values_.push_back(Random(keys_.back().size(), 20 + b, DType::kFloat16));
      batched_.push_back(OpenAndPrefill(&fake_, b));
      single_.push_back(OpenAndPrefill(&single_fake_, b));
    }
  }

  std::unique_ptr<SequenceCore> OpenAndPrefill(FakeTransport* fake, int b) {
    const KvLayout layout{kLayers, kQHeads, kKvHeads, kDim, DType::kFloat16};
    auto seq = SequenceCore::Open(fake, "seq-" + std::to_string(b), layout, TestOptions());
    EXPECT_TRUE(seq.ok()) << seq.status();
    if (!seq.ok()) return nullptr;
    const Tensor3View k(keys_[b].data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
    const Tensor3View v(values_[b].data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
    for (int layer = 0; layer < kLayers; ++layer) {
      EXPECT_TRUE((*seq)->OffloadPrefill(layer, k, v).ok());
    }
    return *std::move(seq);
  }

  std::vector<SequenceCore*> Cores() const {
    std::vector<SequenceCore*> cores;
    for (const auto& seq : batched_) cores.push_back(seq.get());
    return cores;
  }

  std::vector<std::vector<float>> keys_, values_;
  FakeTransport fake_, single_fake_;
  std::vector<std::unique_ptr<SequenceCore>> batched_, single_;
};

TEST_F(BatchTest, EveryItemGetsWhatAttendGivesItsSequence) {
  for (int step = 0; step < 3; ++step) {
    for (int layer = 0; layer < kLayers; ++layer) {  // layer 0 is dense, layer 1 clustered
      std::vector<std::vector<float>> q(kBatch), out(kBatch), want(kBatch);
      std::vector<StepStats> stats(kBatch), want_stats(kBatch);
      std::vector<BatchAttendItem> items(kBatch);
      for (int b = 0; b < kBatch; ++b) {
        q[b] = Random(kQHeads * kDim, 100 * step + 10 * layer + b, DType::kFloat32);
        out[b].assign(q[b].size(), 0.0f);
        want[b].assign(q[b].size(), 0.0f);
        items[b] = BatchAttendItem{nullptr, ConstMatrixView(q[b].data(), kQHeads, kDim),
                                   MatrixView(out[b].data(), kQHeads, kDim), &stats[b],
                                   absl::OkStatus()};
      }
      ASSERT_TRUE(SequenceCore::AttendBatch(layer, Cores(), absl::MakeSpan(items)).ok());
      for (int b = 0; b < kBatch; ++b) {
        ASSERT_TRUE(items[b].status.ok()) << items[b].status;
        ASSERT_TRUE(single_[b]
                        ->Attend(layer, ConstMatrixView(q[b].data(), kQHeads, kDim),
                                 MatrixView(want[b].data(), kQHeads, kDim), &want_stats[b])
                        .ok());
        EXPECT_EQ(0, std::memcmp(out[b].data(), want[b].data(), out[b].size() * sizeof(float)))
            << "step " << step << " layer " << layer << " sequence " << b;
        EXPECT_EQ(stats[b].hit_tokens, want_stats[b].hit_tokens);
        EXPECT_EQ(stats[b].miss_tokens, want_stats[b].miss_tokens);
        EXPECT_EQ(stats[b].bytes_fetched, want_stats[b].bytes_fetched);
        EXPECT_EQ(stats[b].attended_tokens, want_stats[b].attended_tokens);
        EXPECT_EQ(batched_[b]->step(), single_[b]->step());
      }
    }
  }
  EXPECT_EQ(fake_.fetches, single_fake_.fetches);  // no data plane: one fetch per sequence
  EXPECT_GT(fake_.fetches, 0);
}

TEST_F(BatchTest, AFailingItemDoesNotFailTheOthers) {
  std::vector<float> q = Random(kQHeads * kDim, 7, DType::kFloat32);
  std::vector<float> bad(kQHeads * kDim, 0.0f);
  bad[3] = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> out(kBatch, std::vector<float>(q.size()));
  std::vector<BatchAttendItem> items(kBatch);
  for (int b = 0; b < kBatch; ++b) {
    items[b] = BatchAttendItem{nullptr, ConstMatrixView((b == 1 ? bad : q).data(), kQHeads, kDim),
                               MatrixView(out[b].data(), kQHeads, kDim), nullptr,
                               absl::OkStatus()};
  }
  EXPECT_EQ(SequenceCore::AttendBatch(1, Cores(), absl::MakeSpan(items)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(items[0].status.ok()) << items[0].status;
  EXPECT_EQ(items[1].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(items[2].status.ok()) << items[2].status;

  // A daemon failure on one sequence's fetch fails that item only, and empties its cache.
  for (int b = 0; b < kBatch; ++b) items[b].queries = ConstMatrixView(q.data(), kQHeads, kDim);
  // All resident now.
  ASSERT_TRUE(SequenceCore::AttendBatch(1, Cores(), absl::MakeSpan(items)).ok());
  batched_[0]->BeginStep();
  batched_[0]->BeginStep();  // its clusters expire (R = 1): the only sequence that fetches
  fake_.fail_fetch = absl::UnavailableError("gone");
  EXPECT_EQ(SequenceCore::AttendBatch(1, Cores(), absl::MakeSpan(items)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(items[0].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(items[2].status.ok()) << items[2].status;
}

TEST_F(BatchTest, NullOrRepeatedSequencesAreRefusedBeforeAnythingRuns) {
  std::vector<float> q = Random(kQHeads * kDim, 8, DType::kFloat32);
  std::vector<float> out(q.size());
  const ConstMatrixView qv(q.data(), kQHeads, kDim);
  const MatrixView ov(out.data(), kQHeads, kDim);
  std::vector<BatchAttendItem> two = {{nullptr, qv, ov, nullptr, absl::OkStatus()},
                                      {nullptr, qv, ov, nullptr, absl::OkStatus()}};
  std::vector<SequenceCore*> twice = {batched_[0].get(), batched_[0].get()};
  EXPECT_EQ(SequenceCore::AttendBatch(1, twice, absl::MakeSpan(two)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<SequenceCore*> null_core = {nullptr};
  EXPECT_EQ(SequenceCore::AttendBatch(1, null_core, absl::MakeSpan(two).subspan(0, 1)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<SequenceCore*> one = {batched_[0].get()};
  EXPECT_EQ(SequenceCore::AttendBatch(1, one, absl::MakeSpan(two)).code(),
            absl::StatusCode::kInvalidArgument);  // one sequence for two items
  EXPECT_EQ(fake_.fetches, 0);
  EXPECT_EQ(batched_[0]->step(), 0);
  std::vector<BatchAttendItem> empty;
  EXPECT_TRUE(SequenceCore::AttendBatch(1, {}, absl::MakeSpan(empty)).ok());
}

}  // namespace
}  // namespace clusterkv::client
