// The fixture of the Sequence tests (client_sequence_test.cc, client_sequence_selection_test.cc):
// a SequenceCore over the in-memory FakeTransport for each block dtype, random prompt K/V, and
// the reference a decode step is checked against (selection on the daemon's index, attention
// over the sinks, the selected prefix of each stored block and any window rows).
#ifndef CLUSTERKV_TESTS_UNIT_CLIENT_SEQUENCE_FIXTURE_H_
#define CLUSTERKV_TESTS_UNIT_CLIENT_SEQUENCE_FIXTURE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "client/internal/sequence_core.h"
#include "gpu/attention.h"
#include "gpu/selection.h"
#include "gtest/gtest.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"
#include "tests/unit/client_test_support.h"

namespace clusterkv::client::test_support {

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
  // Replaces seq_ with a sequence scoring clusters by `scoring` and prefills its layer 1.
  void OpenPrefilledWithScoring(CentroidScoring scoring) {
    SequenceOptions o = TestOptions();
    o.config.centroid_scoring = scoring;
    auto seq = SequenceCore::Open(&fake_, "seq-1", layout_, o);
    ASSERT_TRUE(seq.ok()) << seq.status();
    seq_ = *std::move(seq);
    ASSERT_TRUE(seq_->OffloadPrefill(1, K(), V()).ok());
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

}  // namespace clusterkv::client::test_support

#endif  // CLUSTERKV_TESTS_UNIT_CLIENT_SEQUENCE_FIXTURE_H_
