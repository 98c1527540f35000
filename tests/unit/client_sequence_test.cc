// Sequence over an in-memory fake transport: prefill offload, the decode step (selection ->
// device cache plan -> one fetch -> sparse attention) against a reference built from the
// stored blocks, cache hits, decode-window appends, reopen/reattach and the error paths.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "client/internal/sequence_core.h"
#include "client/sequence.h"
#include "gpu/attention.h"
#include "gpu/selection.h"
#include "gtest/gtest.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"
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

class SequenceTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    layout_ = KvLayout{kLayers, kQHeads, kKvHeads, kDim, GetParam()};
    keys_ = Random(size_t{kKvHeads} * kTokens * kDim, 1, GetParam());
    values_ = Random(keys_.size(), 2, GetParam());
    auto seq = SequenceCore::Open(&fake_, "seq-1", layout_, TestOptions());
    ASSERT_TRUE(seq.ok()) << seq.status();
    seq_ = *std::move(seq);
  }
  Tensor3View K() const {
    return Tensor3View(keys_.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
  }
  Tensor3View V() const {
    return Tensor3View(values_.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
  }
  void Prefill() {
    ASSERT_TRUE(seq_->OffloadPrefill(0, K(), V()).ok());
    ASSERT_TRUE(seq_->OffloadPrefill(1, K(), V()).ok());
  }

  // Layer 1, kv head h: the clusters a selection of `budget` tokens takes on the daemon's index,
  // in score order.
  std::vector<int32_t> RankedClusters(const std::vector<float>& q, int h, int64_t budget) {
    const v1::HeadIndex& index = fake_.seqs.at("seq-1").indexes.at({1, h});
    std::vector<float> centroids(index.centroids().begin(), index.centroids().end());
    std::vector<int32_t> sizes(index.sizes().begin(), index.sizes().end());
    int64_t total = 0;
    for (int32_t n : sizes) total += n;
    std::vector<float> scores(sizes.size());
    const int group = kQHeads / kKvHeads;
    EXPECT_TRUE(gpu::ScoreCentroids(ConstMatrixView(q.data() + h * group * kDim, group, kDim),
                                    ConstMatrixView(centroids.data(), sizes.size(), kDim),
                                    1.0f / std::sqrt(float{kDim}), absl::MakeSpan(scores),
                                    gpu::ExecContext())
                    .ok());
    auto sel = gpu::SelectClusters(scores, sizes, std::min(budget, total));
    EXPECT_TRUE(sel.ok());
    return sel.ok() ? sel->clusters : std::vector<int32_t>();
  }

  // Reference for layer 1: selection on the daemon's index, attention over the sinks, the
  // selected prefix of each stored block and `extra` window rows per head.
  std::vector<float> Reference(const std::vector<float>& q,
                               const std::vector<std::vector<float>>& extra_k = {},
                               const std::vector<std::vector<float>>& extra_v = {}) {
    const FakeTransport::Seq& s = fake_.seqs.at("seq-1");
    std::vector<float> out(kQHeads * kDim);
    const int group = kQHeads / kKvHeads;
    for (int h = 0; h < kKvHeads; ++h) {
      const v1::HeadIndex& index = s.indexes.at({1, h});
      std::vector<float> centroids(index.centroids().begin(), index.centroids().end());
      std::vector<int32_t> sizes(index.sizes().begin(), index.sizes().end());
      int64_t total = 0;
      for (int32_t n : sizes) total += n;
      std::vector<float> scores(sizes.size());
      ConstMatrixView qh(q.data() + h * group * kDim, group, kDim);
      const float scale = 1.0f / std::sqrt(float{kDim});
      EXPECT_TRUE(gpu::ScoreCentroids(qh, ConstMatrixView(centroids.data(), sizes.size(), kDim),
                                      scale, absl::MakeSpan(scores), gpu::ExecContext())
                      .ok());
      auto sel = gpu::SelectClusters(scores, sizes, std::min<int64_t>(24, total));
      EXPECT_TRUE(sel.ok());
      gpu::AttentionTask task;
      task.queries = qh;
      task.scale = scale;
      task.out = MatrixView(out.data() + h * group * kDim, group, kDim);
      const float* hk = keys_.data() + static_cast<size_t>(h) * kTokens * kDim;
      const float* hv = values_.data() + static_cast<size_t>(h) * kTokens * kDim;
      task.spans.push_back({ConstMatrixView(hk, 4, kDim), ConstMatrixView(hv, 4, kDim)});
      for (size_t i = 0; i < sel->clusters.size(); ++i) {
        const v1::ClusterBlock& b = s.blocks.at({1, h, sel->clusters[i]});
        auto view = storage::ViewClusterBlock(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(b.data().data()), b.data().size()),
            b.num_tokens(), kDim, layout_.dtype);
        EXPECT_TRUE(view.ok());
        task.spans.push_back(
            {view->keys.Rows(0, sel->tokens[i]), view->values.Rows(0, sel->tokens[i])});
      }
      if (!extra_k.empty() && !extra_k[h].empty()) {
        const int64_t rows = static_cast<int64_t>(extra_k[h].size()) / kDim;
        task.spans.push_back({ConstMatrixView(extra_k[h].data(), rows, kDim),
                              ConstMatrixView(extra_v[h].data(), rows, kDim)});
      }
      EXPECT_TRUE(gpu::Attention(task, gpu::ExecContext()).ok());
    }
    return out;
  }

  void ExpectNear(const std::vector<float>& a, const std::vector<float>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 2e-4) << "at " << i;
  }

  KvLayout layout_;
  FakeTransport fake_;
  std::unique_ptr<SequenceCore> seq_;
  std::vector<float> keys_, values_;
};

TEST_P(SequenceTest, PrefillOffloadsClusteredLayersOnly) {
  int progress_calls = 0;
  ASSERT_TRUE(seq_->OffloadPrefill(0, K(), V()).ok());
  EXPECT_EQ(fake_.put_streams, 0);  // dense: kept locally
  ASSERT_TRUE(seq_->OffloadPrefill(1, K(), V(),
                                   [&](int32_t done, int32_t total) {
                                     EXPECT_EQ(total, kKvHeads);
                                     EXPECT_EQ(done, ++progress_calls);
                                   })
                  .ok());
  EXPECT_EQ(progress_calls, kKvHeads);
  EXPECT_EQ(fake_.put_streams, 1);
  EXPECT_GT(fake_.put_messages, 1);  // batched under the 2 KiB target
  const FakeTransport::Seq& s = fake_.seqs.at("seq-1");
  EXPECT_EQ(s.num_tokens, kTokens);
  for (int h = 0; h < kKvHeads; ++h) {
    const v1::HeadIndex& index = s.indexes.at({1, h});
    ASSERT_EQ(index.sizes_size(), 8);
    const gpu::ClusterIndex* local = seq_->index(1, h);
    ASSERT_NE(local, nullptr);
    EXPECT_EQ(local->num_clusters(), 8);
    EXPECT_EQ(local->num_tokens(), kTokens - 4);
    // Every clustered position is in exactly one block.
    std::vector<int> seen(kTokens, 0);
    for (int c = 0; c < 8; ++c) {
      if (index.sizes(c) == 0) continue;
      const v1::ClusterBlock& b = s.blocks.at({1, h, c});
      EXPECT_EQ(b.num_tokens(), index.sizes(c));
      const int32_t* pos = reinterpret_cast<const int32_t*>(b.data().data());
      for (int i = 0; i < b.num_tokens(); ++i) ++seen[pos[i]];
    }
    for (int t = 0; t < kTokens; ++t) EXPECT_EQ(seen[t], t < 4 ? 0 : 1) << t;
  }
  EXPECT_GT(seq_->bytes_offloaded(), 0);
  // A second call continues the prompt: its tokens follow the first's, clustered on their own
  // after the first's clusters.
  const int32_t clusters = seq_->index(1, 0)->num_clusters();
  ASSERT_TRUE(seq_->OffloadPrefill(1, K(), V()).ok());
  EXPECT_EQ(seq_->num_tokens(1), 2 * kTokens);
  EXPECT_EQ(seq_->index(1, 0)->num_clusters(), 2 * clusters);
  // Once the layer decodes, the prompt is over.
  const std::vector<float> row(kKvHeads * kDim, 0.5f);
  ASSERT_TRUE(seq_->AppendToken(1, ConstMatrixView(row.data(), kKvHeads, kDim),
                                ConstMatrixView(row.data(), kKvHeads, kDim))
                  .ok());
  EXPECT_EQ(seq_->OffloadPrefill(1, K(), V()).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(SequenceTest, AttendMatchesReferenceAndHitsTheCacheNextStep) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  std::vector<float> out(q.size());
  StepStats stats;
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &stats)
                  .ok());
  ExpectNear(out, Reference(q));
  EXPECT_EQ(fake_.fetches, 1);  // one fetch for every miss of the layer
  EXPECT_EQ(stats.hit_tokens, 0);
  EXPECT_GE(stats.miss_tokens, 2 * 24);
  EXPECT_EQ(stats.blocks_fetched, stats.miss_clusters);
  EXPECT_GT(stats.bytes_fetched, 0);
  EXPECT_EQ(stats.attended_tokens, kKvHeads * (4 + 24));

  // Next step, same query: every cluster is resident (R = 1), nothing is fetched.
  std::vector<float> again(q.size());
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(again.data(), kQHeads, kDim), &stats)
                  .ok());
  EXPECT_EQ(seq_->step(), 1);  // layer 1 attended twice: a new step began
  EXPECT_EQ(fake_.fetches, 1);
  EXPECT_EQ(stats.miss_tokens, 0);
  EXPECT_GT(stats.hit_tokens, 0);
  ExpectNear(again, out);
  EXPECT_NEAR(seq_->cache_hit_rate(), 0.5, 1e-9);

  // Two steps later (R = 1) the clusters have expired: a miss again.
  seq_->BeginStep();
  seq_->BeginStep();
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(again.data(), kQHeads, kDim), &stats)
                  .ok());
  EXPECT_EQ(fake_.fetches, 2);
  EXPECT_EQ(stats.hit_tokens, 0);
}

TEST_P(SequenceTest, TokenMajorPrefillViewsGiveTheSameResult) {
  Prefill();
  // The same K/V stored [tokens][kv_heads][d], as an engine's cache holds them, viewed
  // without a copy.
  std::vector<float> tk(keys_.size()), tv(values_.size());
  for (int h = 0; h < kKvHeads; ++h) {
    for (int t = 0; t < kTokens; ++t) {
      for (int d = 0; d < kDim; ++d) {
        tk[(static_cast<size_t>(t) * kKvHeads + h) * kDim + d] = keys_[(h * kTokens + t) * kDim + d];
        tv[(static_cast<size_t>(t) * kKvHeads + h) * kDim + d] =
            values_[(h * kTokens + t) * kDim + d];
      }
    }
  }
  auto view = [](const std::vector<float>& v) {
    Tensor3View t(v.data(), DType::kFloat32, {kKvHeads, kTokens, kDim});
    t.strides = {kDim, kKvHeads * kDim};
    return t;
  };
  auto other = SequenceCore::Open(&fake_, "seq-2", layout_, TestOptions());
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->OffloadPrefill(0, view(tk), view(tv)).ok());
  ASSERT_TRUE((*other)->OffloadPrefill(1, view(tk), view(tv)).ok());
  const std::vector<float> q = Random(kQHeads * kDim, 3, DType::kFloat32);
  std::vector<float> want(q.size()), got(q.size());
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(want.data(), kQHeads, kDim))
                  .ok());
  ASSERT_TRUE((*other)->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                               MatrixView(got.data(), kQHeads, kDim))
                  .ok());
  EXPECT_EQ(got, want);
  // Rows that overlap are refused.
  Tensor3View overlapping = view(tk);
  overlapping.strides = {kDim, kDim};
  auto third = SequenceCore::Open(&fake_, "seq-3", layout_, TestOptions());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ((*third)->OffloadPrefill(1, overlapping, overlapping).code(),
            absl::StatusCode::kInvalidArgument);
}

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
  SequenceOptions o = TestOptions();
  o.config.centroid_scoring = CentroidScoring::kKeyNorm;
  auto opened = SequenceCore::Open(&fake_, "seq-1", layout_, o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE((*opened)->OffloadPrefill(1, K(), V()).ok());
  const std::vector<float> q = Random(kQHeads * kDim, 5, DType::kFloat32);
  absl::StatusOr<std::vector<gpu::ClusterSelection>> preview =
      (*opened)->PreviewSelection(1, ConstMatrixView(q.data(), kQHeads, kDim));
  ASSERT_TRUE(preview.ok()) << preview.status();
  const int group = kQHeads / kKvHeads;
  bool differs = false;
  for (int h = 0; h < kKvHeads; ++h) {
    const gpu::ClusterIndex& index = *(*opened)->index(1, h);
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

TEST_P(SequenceTest, DenseLayerIsFullAttention) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 4, DType::kFloat32);
  std::vector<float> out(q.size()), ref(q.size());
  ASSERT_TRUE(seq_->Attend(0, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim))
                  .ok());
  for (int h = 0; h < kKvHeads; ++h) {
    gpu::AttentionTask task;
    task.queries = ConstMatrixView(q.data() + h * 2 * kDim, 2, kDim);
    task.scale = 1.0f / std::sqrt(float{kDim});
    task.out = MatrixView(ref.data() + h * 2 * kDim, 2, kDim);
    task.spans.push_back({K().Slice(h), V().Slice(h)});
    ASSERT_TRUE(gpu::Attention(task, gpu::ExecContext()).ok());
  }
  ExpectNear(out, ref);
  EXPECT_EQ(fake_.fetches, 0);
}

TEST_P(SequenceTest, DecodeWindowIsAttendedThenAppended) {
  Prefill();
  std::vector<std::vector<float>> wk(kKvHeads), wv(kKvHeads);
  for (int t = 0; t < 19; ++t) {  // one full window of 16, then 3 in the new window
    std::vector<float> k = Random(kKvHeads * kDim, 100 + t, GetParam());
    std::vector<float> v = Random(kKvHeads * kDim, 200 + t, GetParam());
    ASSERT_TRUE(seq_->AppendToken(1, ConstMatrixView(k.data(), kKvHeads, kDim),
                                  ConstMatrixView(v.data(), kKvHeads, kDim))
                    .ok());
    if (t >= 16) {
      for (int h = 0; h < kKvHeads; ++h) {
        wk[h].insert(wk[h].end(), k.begin() + h * kDim, k.begin() + (h + 1) * kDim);
        wv[h].insert(wv[h].end(), v.begin() + h * kDim, v.begin() + (h + 1) * kDim);
      }
    }
  }
  EXPECT_EQ(fake_.appends, 1);
  EXPECT_EQ(seq_->num_tokens(1), kTokens + 19);
  const FakeTransport::Seq& s = fake_.seqs.at("seq-1");
  EXPECT_EQ(s.num_tokens, kTokens + 16);
  for (int h = 0; h < kKvHeads; ++h) {
    EXPECT_EQ(seq_->index(1, h)->num_clusters(), 10);  // C0 + C+
    EXPECT_EQ(seq_->index(1, h)->num_tokens(), kTokens - 4 + 16);
    EXPECT_EQ(s.indexes.at({1, h}).sizes_size(), 10);
    for (int c : {8, 9}) {
      auto it = s.blocks.find({1, h, c});
      if (it == s.blocks.end()) continue;  // an empty decode cluster has no block
      const int32_t* pos = reinterpret_cast<const int32_t*>(it->second.data().data());
      for (int i = 0; i < it->second.num_tokens(); ++i) {
        EXPECT_GE(pos[i], kTokens);
        EXPECT_LT(pos[i], kTokens + 16);
      }
    }
  }
  const std::vector<float> q = Random(kQHeads * kDim, 5, DType::kFloat32);
  std::vector<float> out(q.size());
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim))
                  .ok());
  ExpectNear(out, Reference(q, wk, wv));
}

TEST_P(SequenceTest, FailedAppendStaysPendingAndIsRetried) {
  Prefill();
  fake_.fail_append = absl::UnavailableError("daemon restarting");
  absl::Status last;
  for (int t = 0; t < 16; ++t) {
    std::vector<float> k = Random(kKvHeads * kDim, 300 + t, GetParam());
    last = seq_->AppendToken(1, ConstMatrixView(k.data(), kKvHeads, kDim),
                             ConstMatrixView(k.data(), kKvHeads, kDim));
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(seq_->has_pending_offload(1));
  EXPECT_EQ(seq_->num_tokens(1), kTokens + 16);
  EXPECT_EQ(seq_->index(1, 0)->num_clusters(), 8);
  // Attend still covers the pending window from local memory.
  const std::vector<float> q = Random(kQHeads * kDim, 6, DType::kFloat32);
  std::vector<float> out(q.size());
  StepStats stats;
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &stats)
                  .ok());
  EXPECT_EQ(stats.attended_tokens, kKvHeads * (4 + 24 + 16));
  ASSERT_TRUE(seq_->Flush(1).ok());
  EXPECT_FALSE(seq_->has_pending_offload(1));
  EXPECT_EQ(seq_->index(1, 0)->num_clusters(), 10);
  EXPECT_EQ(fake_.appends, 2);
}

TEST_P(SequenceTest, ReopenRestoresTheIndexAndReattachChecksIt) {
  Prefill();
  auto reopened = SequenceCore::Reopen(&fake_, "seq-1", TestOptions());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->layout(), layout_);
  EXPECT_EQ((*reopened)->num_tokens(), kTokens);
  for (int h = 0; h < kKvHeads; ++h) {
    EXPECT_EQ((*reopened)->index(1, h)->sizes(), seq_->index(1, h)->sizes());
  }
  // The clustered layer decodes from the restored index (no sinks in a new process).
  const std::vector<float> q = Random(kQHeads * kDim, 7, DType::kFloat32);
  std::vector<float> out(q.size());
  EXPECT_TRUE((*reopened)
                  ->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim))
                  .ok());
  // The dense layer's K/V were never on the daemon.
  EXPECT_EQ((*reopened)
                ->Attend(0, ConstMatrixView(q.data(), kQHeads, kDim),
                         MatrixView(out.data(), kQHeads, kDim))
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SequenceCore::Reopen(&fake_, "nope", TestOptions()).status().code(),
            absl::StatusCode::kNotFound);

  EXPECT_TRUE(seq_->Reattach().ok());
  fake_.seqs.at("seq-1").indexes.at({1, 1}).mutable_sizes()->RemoveLast();
  fake_.seqs.at("seq-1").indexes.at({1, 1}).mutable_centroids()->Truncate(7 * kDim);
  EXPECT_EQ(seq_->Reattach().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(seq_->index(1, 1)->num_clusters(), 7);  // the daemon's index is adopted
  fake_.seqs.clear();
  EXPECT_EQ(seq_->Reattach().code(), absl::StatusCode::kNotFound);
}

TEST_P(SequenceTest, FetchFailuresEmptyTheCache) {
  Prefill();
  const std::vector<float> q = Random(kQHeads * kDim, 8, DType::kFloat32);
  std::vector<float> out(q.size());
  auto attend = [&](StepStats* stats) {
    return seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                        MatrixView(out.data(), kQHeads, kDim), stats);
  };
  fake_.fail_fetch = absl::UnavailableError("gone");
  EXPECT_EQ(attend(nullptr).code(), absl::StatusCode::kUnavailable);
  StepStats stats;
  ASSERT_TRUE(attend(&stats).ok());
  EXPECT_EQ(stats.hit_tokens, 0);  // the failed step's slots were not trusted
  ExpectNear(out, Reference(q));

  seq_->BeginStep();
  seq_->BeginStep();
  fake_.omit_block = true;
  EXPECT_EQ(attend(nullptr).code(), absl::StatusCode::kDataLoss);
  fake_.omit_block = false;
  fake_.truncate_blocks = true;
  EXPECT_EQ(attend(nullptr).code(), absl::StatusCode::kDataLoss);
  fake_.truncate_blocks = false;
  ASSERT_TRUE(attend(&stats).ok());
  EXPECT_EQ(stats.hit_tokens, 0);
}

TEST_P(SequenceTest, BadInputIsInvalidArgument) {
  std::vector<float> q(kQHeads * kDim, 0.1f), out(q.size());
  const ConstMatrixView qv(q.data(), kQHeads, kDim);
  const MatrixView ov(out.data(), kQHeads, kDim);
  EXPECT_EQ(seq_->Attend(1, qv, ov).code(), absl::StatusCode::kFailedPrecondition);  // no tokens
  Prefill();
  EXPECT_EQ(seq_->Attend(2, qv, ov).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->Attend(-1, qv, ov).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads - 1, kDim), ov).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->Attend(1, qv, MatrixView(out.data(), kQHeads, kDim - 1)).code(),
            absl::StatusCode::kInvalidArgument);
  q[5] = std::nanf("");
  EXPECT_EQ(seq_->Attend(1, qv, ov).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->AppendToken(1, ConstMatrixView(q.data(), kKvHeads, kDim),
                              ConstMatrixView(q.data() + 32, kKvHeads, kDim))
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq_->AppendToken(1, ConstMatrixView(q.data() + 32, kKvHeads + 1, kDim),
                              ConstMatrixView(q.data() + 32, kKvHeads + 1, kDim))
                .code(),
            absl::StatusCode::kInvalidArgument);
  const Tensor3View wrong(keys_.data(), DType::kFloat32, {kKvHeads + 1, 10, kDim});
  EXPECT_EQ(seq_->OffloadPrefill(1, wrong, wrong).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SequenceCore::Open(&fake_, "", layout_, TestOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  KvLayout other = layout_;
  other.head_dim = 32;
  EXPECT_EQ(SequenceCore::Open(&fake_, "seq-1", other, TestOptions()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(seq_->Close(/*drop=*/true).ok());
  EXPECT_EQ(seq_->Attend(1, qv, ov).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fake_.seqs.count("seq-1"), 0u);
}

TEST_P(SequenceTest, ShortPromptIsAllSinksThenWindow) {
  const Tensor3View k(keys_.data(), DType::kFloat32, {kKvHeads, 3, kDim});
  ASSERT_TRUE(seq_->OffloadPrefill(1, k, k).ok());
  EXPECT_EQ(fake_.put_streams, 0);
  std::vector<float> t = Random(kKvHeads * kDim, 9, GetParam());
  for (int i = 0; i < 3; ++i) {  // one more sink, then two window tokens
    ASSERT_TRUE(seq_->AppendToken(1, ConstMatrixView(t.data(), kKvHeads, kDim),
                                  ConstMatrixView(t.data(), kKvHeads, kDim))
                    .ok());
  }
  std::vector<float> q(kQHeads * kDim, 0.2f), out(q.size());
  StepStats stats;
  ASSERT_TRUE(seq_->Attend(1, ConstMatrixView(q.data(), kQHeads, kDim),
                           MatrixView(out.data(), kQHeads, kDim), &stats)
                  .ok());
  EXPECT_EQ(stats.attended_tokens, kKvHeads * 6);
  EXPECT_EQ(fake_.fetches, 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SequenceTest,
                         ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace clusterkv::client
