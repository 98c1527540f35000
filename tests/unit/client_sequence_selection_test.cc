// Sequence over an in-memory fake transport: the selection a decode step makes and what it
// reports. PreviewSelection matches Attend's selection, key-norm scoring, promotion hints for
// the clusters ranked past the budget, adaptive budgets within their limits and the step's
// cap, each step's estimated recall, and the statistics reported to the daemon.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "client/internal/sequence_core.h"
#include "client/sequence.h"
#include "gpu/selection.h"
#include "gtest/gtest.h"
#include "proto/rpc_support.h"
#include "tests/unit/client_sequence_fixture.h"
#include "tests/unit/client_test_support.h"

namespace clusterkv::client {
namespace {

using test_support::FakeTransport;
using test_support::kDim;
using test_support::kKvHeads;
using test_support::kQHeads;
using test_support::kTokens;
using test_support::Random;
using test_support::TestOptions;
using test_support::SequenceTest;

TEST_P(SequenceTest, EachStepReportsItsEstimatedRecall) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  std::vector<float> out(kQHeads * kDim);
  StepStats dense, sparse;
  ASSERT_TRUE(seq_->Attend(0, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &dense).ok());
  EXPECT_EQ(dense.estimated_recall, 1.0);
  EXPECT_EQ(dense.estimated_recall_min, 1.0);
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &sparse).ok());
  // 24 of 96 clustered tokens plus 4 sinks attended: some mass, never all of it.
  EXPECT_GT(sparse.estimated_recall_min, 0.0);
  EXPECT_LE(sparse.estimated_recall_min, sparse.estimated_recall);
  EXPECT_LT(sparse.estimated_recall, 1.0);

  // The key statistics are stored with the index: a reopened sequence has the same ones.
  auto reopened = SequenceCore::Reopen(&fake_, "seq-1", TestOptions());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  for (int h = 0; h < kKvHeads; ++h) {
    const gpu::ClusterIndex* before = seq_->index(1, h);
    const gpu::ClusterIndex* after = (*reopened)->index(1, h);
    ASSERT_EQ(after->key_norms().size(), before->key_norms().size());
    for (size_t c = 0; c < before->key_norms().size(); ++c) {
      EXPECT_EQ(after->key_norms()[c], before->key_norms()[c]);
      EXPECT_EQ(after->key_spreads()[c], before->key_spreads()[c]);
    }
  }

  // An index stored without them (written by an older client): the estimate still answers,
  // from the fallback (unit norm, no spread).
  for (auto& [head, index] : fake_.seqs.at("seq-1").indexes) {
    index.clear_key_norms();
    index.clear_key_spreads();
  }
  reopened = SequenceCore::Reopen(&fake_, "seq-1", TestOptions());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(std::isnan((*reopened)->index(1, 0)->key_norms()[0]));
  StepStats after;
  ASSERT_TRUE((*reopened)->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                                  MatrixView(out.data(), kQHeads, kDim), &after).ok());
  EXPECT_GT(after.estimated_recall, 0.0);
  EXPECT_LT(after.estimated_recall, 1.0);

  // A budget covering every token attends every cluster: the estimate is 1.
  SequenceOptions whole = TestOptions();
  whole.config.token_budget = kTokens;
  auto all = SequenceCore::Open(&fake_, "seq-whole", layout_, whole);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE((*all)->OffloadPrefill(1, K(), V()).ok());
  StepStats every;
  ASSERT_TRUE((*all)->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                             MatrixView(out.data(), kQHeads, kDim), &every).ok());
  EXPECT_NEAR(every.estimated_recall_min, 1.0, 1e-6);
}

// PreviewSelection is the selection Attend makes, computed locally: the same clusters the
// daemon's index ranks first (RankedClusters), with no fetch and no cache or step change.
TEST_P(SequenceTest, PreviewSelectionIsTheSelectionAttendMakes) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 5, DType::kFloat32);
  const auto fetches = fake_.fetches;
  absl::StatusOr<std::vector<gpu::ClusterSelection>> preview =
      seq_->PreviewSelection(1, ConstMatrixView(q.data(), kQHeads, kDim));
  ASSERT_TRUE(preview.ok()) << preview.status();
  ASSERT_EQ(preview->size(), static_cast<size_t>(kKvHeads));
  for (int h = 0; h < kKvHeads; ++h) {
    EXPECT_EQ((*preview)[h].clusters, RankedClusters(q, h, 24)) << "head " << h;
    EXPECT_EQ((*preview)[h].total_tokens, 24) << "head " << h;
  }
  EXPECT_EQ(fake_.fetches, fetches);
  EXPECT_EQ(seq_->cache_stats().hit_tokens + seq_->cache_stats().miss_tokens, 0);
  EXPECT_EQ(seq_->PreviewSelection(0, ConstMatrixView(q.data(), kQHeads, kDim)).status().code(),
            absl::StatusCode::kFailedPrecondition);  // dense
  EXPECT_EQ(seq_->PreviewSelection(1, ConstMatrixView(q.data(), kQHeads - 1, kDim))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->PreviewSelection(7, ConstMatrixView(q.data(), kQHeads, kDim)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// With key-norm scoring the selection ranks the clusters by r_c * mu_c, the index's
// norm-scaled centroids, instead of the unit centroids.
TEST_P(SequenceTest, KeyNormScoringRanksByNormScaledCentroids) {
  OpenPrefilledWithScoring(CentroidScoring::kKeyNorm);
  const std::vector<float> q = Random(kQHeads * kDim, 5, DType::kFloat32);
  absl::StatusOr<std::vector<gpu::ClusterSelection>> preview =
      seq_->PreviewSelection(1, ConstMatrixView(q.data(), kQHeads, kDim));
  ASSERT_TRUE(preview.ok()) << preview.status();
  const int group = kQHeads / kKvHeads;
  bool differs = false;
  for (int h = 0; h < kKvHeads; ++h) {
    const gpu::ClusterIndex& index = *seq_->index(1, h);
    std::vector<float> scores(index.num_clusters());
    ASSERT_TRUE(gpu::ScoreCentroids(ConstMatrixView(q.data() + h * group * kDim, group, kDim),
                                    index.norm_scaled_centroids(), 1.0f / std::sqrt(float{kDim}),
                                    absl::MakeSpan(scores), gpu::ExecContext())
                    .ok());
    auto expected = gpu::SelectClusters(scores, index.sizes(), 24);
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ((*preview)[h].clusters, expected->clusters) << "head " << h;
    differs |= (*preview)[h].clusters != RankedClusters(q, h, 24);
  }
  EXPECT_TRUE(differs) << "the keys' norms should change some head's ranking";
}

// Head-norm scoring sharpens every query head's softmax by the head's mean key norm: the
// unit centroids scored at scale * mean_key_norm.
TEST_P(SequenceTest, HeadNormScoringSharpensByTheHeadsMeanKeyNorm) {
  OpenPrefilledWithScoring(CentroidScoring::kHeadNorm);
  const std::vector<float> q = Random(kQHeads * kDim, 5, DType::kFloat32);
  std::vector<std::vector<float>> scores;
  absl::StatusOr<std::vector<gpu::ClusterSelection>> preview =
      seq_->PreviewSelection(1, ConstMatrixView(q.data(), kQHeads, kDim), &scores);
  ASSERT_TRUE(preview.ok()) << preview.status();
  const int group = kQHeads / kKvHeads;
  for (int h = 0; h < kKvHeads; ++h) {
    const gpu::ClusterIndex& index = *seq_->index(1, h);
    EXPECT_NE(index.mean_key_norm(), 1.0f);
    std::vector<float> expected(index.num_clusters());
    ASSERT_TRUE(gpu::ScoreCentroids(ConstMatrixView(q.data() + h * group * kDim, group, kDim),
                                    index.centroids(),
                                    index.mean_key_norm() / std::sqrt(float{kDim}),
                                    absl::MakeSpan(expected), gpu::ExecContext())
                    .ok());
    ASSERT_EQ(scores[h].size(), expected.size());
    for (size_t c = 0; c < expected.size(); ++c) {
      EXPECT_FLOAT_EQ(scores[h][c], expected[c]) << "head " << h << " cluster " << c;
    }
    auto selected = gpu::SelectClusters(expected, index.sizes(), 24);
    ASSERT_TRUE(selected.ok());
    EXPECT_EQ((*preview)[h].clusters, selected->clusters) << "head " << h;
  }
}

TEST_P(SequenceTest, PromotionHintsNameTheClustersRankedPastTheSelection) {
  SequenceOptions o = TestOptions();
  o.config.promotion_hint_tokens = 20;
  auto opened = SequenceCore::Open(&fake_, "seq-1", layout_, o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  seq_ = *std::move(opened);
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  std::vector<float> out(q.size());
  StepStats stats;
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &stats)
                  .ok());
  ExpectNear(out, Reference(q));  // hints change nothing of the step itself
  // One hint: per head, what a budget of B + 20 tokens adds to the selection of B = 24 (none
  // of it resident: the cache holds only this step's selection).
  std::vector<std::tuple<int, int, int>> want;
  for (int h = 0; h < kKvHeads; ++h) {
    const std::vector<int32_t> selected = RankedClusters(q, h, 24);
    const std::vector<int32_t> reach = RankedClusters(q, h, 24 + 20);
    ASSERT_GT(reach.size(), selected.size()) << "head " << h;
    ASSERT_TRUE(std::equal(selected.begin(), selected.end(), reach.begin()));
    for (size_t i = selected.size(); i < reach.size(); ++i) want.emplace_back(1, h, reach[i]);
  }
  ASSERT_EQ(fake_.hints.size(), 1u);
  EXPECT_EQ(fake_.hints[0].sequence_id(), "seq-1");
  std::vector<std::tuple<int, int, int>> got;
  for (const v1::ClusterRef& ref : fake_.hints[0].clusters()) {
    got.push_back(FakeTransport::Key(ref));
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(stats.hinted_clusters, static_cast<int64_t>(want.size()));

  // The next steps rank the same clusters: hinted within the repeat window, not named again.
  for (int step = 1; step < SequenceCore::kHintRepeatSteps; ++step) {
    seq_->BeginStep();
    ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                             MatrixView(out.data(), kQHeads, kDim), &stats)
                    .ok());
    EXPECT_EQ(stats.hinted_clusters, 0) << "step " << step;
  }
  EXPECT_EQ(fake_.hints.size(), 1u);
  // Past the window they are named again; a dropped hint counts no cluster.
  fake_.accept_hints = false;
  seq_->BeginStep();
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &stats)
                  .ok());
  ASSERT_EQ(fake_.hints.size(), 2u);
  EXPECT_EQ(fake_.hints[1].clusters_size(), static_cast<int>(want.size()));
  EXPECT_EQ(stats.hinted_clusters, 0);
}

TEST_P(SequenceTest, NoPromotionHintsByDefault) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  std::vector<float> out(q.size());
  StepStats stats;
  for (int step = 0; step < 3; ++step) {
    seq_->BeginStep();
    ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                             MatrixView(out.data(), kQHeads, kDim), &stats)
                    .ok());
    EXPECT_EQ(stats.hinted_clusters, 0);
  }
  EXPECT_TRUE(fake_.hints.empty());
}

TEST_P(SequenceTest, AdaptiveBudgetsStayWithinTheirLimitsAndTheStepsCap) {
  // Three layers, two of them clustered, so a step's cap spans layers.
  const KvLayout layout{3, kQHeads, kKvHeads, kDim, GetParam()};
  const auto open = [&](const std::string& id, double target, int32_t min, int32_t max) {
    SequenceOptions o = TestOptions();
    o.config.recall_target = target;
    o.config.min_token_budget = min;
    o.config.max_token_budget = max;
    auto seq = SequenceCore::Open(&fake_, id, layout, o);
    EXPECT_TRUE(seq.ok()) << seq.status();
    EXPECT_TRUE((*seq)->OffloadPrefill(1, K(), V()).ok());
    EXPECT_TRUE((*seq)->OffloadPrefill(2, K(), V()).ok());
    return *std::move(seq);
  };
  std::unique_ptr<SequenceCore> adaptive = open("adaptive", 0.95, 6, 60);
  std::unique_ptr<SequenceCore> lowest = open("lowest", 1e-9, 6, 60);
  std::unique_ptr<SequenceCore> exact = open("exact", 1.0, 0, 24);  // B_max = B: the fixed mode
  std::unique_ptr<SequenceCore> fixed = open("fixed", 0.0, 0, 0);
  std::vector<float> out(kQHeads * kDim), fixed_out(kQHeads * kDim);
  for (int step = 0; step < 6; ++step) {
    int64_t step_tokens = 0;
    for (int32_t layer : {1, 2}) {
      const std::vector<float> q = Random(kQHeads * kDim, 40 + 2 * step + layer, DType::kFloat32);
      const ConstMatrixView qv(q.data(), kQHeads, kDim);
      StepStats s;
      ASSERT_TRUE(adaptive->Attend(layer, qv, MatrixView(out.data(), kQHeads, kDim), &s).ok());
      EXPECT_EQ(s.selected_heads, kKvHeads);
      EXPECT_GE(s.selected_tokens, int64_t{kKvHeads} * 6);
      EXPECT_LE(s.selected_tokens, int64_t{kKvHeads} * 60);
      step_tokens += s.selected_tokens;

      // A target every head reaches with no cluster: B_min each.
      ASSERT_TRUE(lowest->Attend(layer, qv, MatrixView(out.data(), kQHeads, kDim), &s).ok());
      EXPECT_EQ(s.selected_tokens, int64_t{kKvHeads} * 6);

      // Recall 1 within B_max = B: every head takes B, exactly as the fixed budget does.
      StepStats f;
      ASSERT_TRUE(exact->Attend(layer, qv, MatrixView(out.data(), kQHeads, kDim), &s).ok());
      ASSERT_TRUE(fixed->Attend(layer, qv, MatrixView(fixed_out.data(), kQHeads, kDim), &f).ok());
      EXPECT_EQ(s.selected_tokens, int64_t{kKvHeads} * 24);
      EXPECT_EQ(f.selected_tokens, int64_t{kKvHeads} * 24);
      EXPECT_EQ(out, fixed_out);
      EXPECT_EQ(s.estimated_recall, f.estimated_recall);
    }
    // Both layers together spend at most their cap, 2 layers x heads x B.
    EXPECT_LE(step_tokens, 2 * int64_t{kKvHeads} * 24) << "step " << step;
  }
}

TEST_P(SequenceTest, StepStatisticsReachTheDaemonEverySixtyFourStepsAndAtClose) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  std::vector<float> out(kQHeads * kDim);
  uint64_t hits = 0, misses = 0, selected_tokens = 0, selected_heads = 0;
  double recall_sum = 0;
  fake_.fail_report = absl::UnavailableError("metrics down");  // the first report is lost...
  const int steps = 2 * SequenceCore::kReportEverySteps + 5;
  for (int step = 0; step < steps; ++step) {
    StepStats s;
    ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                             MatrixView(out.data(), kQHeads, kDim), &s).ok());
    hits += s.hit_tokens;
    misses += s.miss_tokens;
    recall_sum += s.estimated_recall * kKvHeads;
    selected_tokens += static_cast<uint64_t>(s.selected_tokens);
    selected_heads += static_cast<uint64_t>(s.selected_heads);
  }
  // ...and its deltas travel with the second, at step 128.
  ASSERT_EQ(fake_.reports.size(), 1u);
  ASSERT_TRUE(seq_->Close(/*drop=*/false).ok());
  ASSERT_EQ(fake_.reports.size(), 2u);
  uint64_t reported_hits = 0, reported_misses = 0, estimates = 0;
  uint64_t reported_tokens = 0, reported_heads = 0;
  double reported_sum = 0;
  // Each report names the sequence and its step: 128 for the second periodic one (the first
  // was lost), then the step at close.
  EXPECT_EQ(fake_.reports[0].step(), 2 * SequenceCore::kReportEverySteps);
  EXPECT_EQ(fake_.reports[1].step(), steps - 1);  // steps are numbered from 0
  for (const v1::ReportClientStatsRequest& r : fake_.reports) {
    EXPECT_EQ(r.sequence_id(), seq_->id());
    reported_tokens += r.selected_tokens();
    reported_heads += r.selected_heads();
    reported_hits += r.device_cache_hit_tokens();
    reported_misses += r.device_cache_miss_tokens();
    ASSERT_EQ(r.estimated_recall_counts_size(), 8);
    for (uint64_t n : r.estimated_recall_counts()) estimates += n;
    reported_sum += r.estimated_recall_sum();
  }
  EXPECT_EQ(reported_hits, hits);
  EXPECT_EQ(reported_misses, misses);
  EXPECT_EQ(estimates, static_cast<uint64_t>(steps * kKvHeads));  // one per kv head and step
  EXPECT_NEAR(reported_sum, recall_sum, 1e-3);
  EXPECT_EQ(reported_tokens, selected_tokens);
  EXPECT_EQ(reported_heads, selected_heads);
  EXPECT_EQ(selected_heads, static_cast<uint64_t>(steps * kKvHeads));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SequenceTest,
                         ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace clusterkv::client
