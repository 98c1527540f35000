// Sequence over an in-memory fake transport: prefill offload, the decode step (selection ->
// device cache plan -> one fetch -> sparse attention) against a reference built from the
// stored blocks, cache hits, decode-window appends, reopen/reattach and the error paths. The
// selection's own behaviour (preview, scoring, hints, adaptive budgets, recall estimates and
// the statistics reported) is in client_sequence_selection_test.cc.
#include <cmath>
#include <vector>

#include "client/internal/sequence_core.h"
#include "client/sequence.h"
#include "gpu/attention.h"
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
