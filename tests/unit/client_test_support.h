// The client tests' in-memory daemon (FakeTransport: stores blocks and indexes, counts calls,
// fails the next call of a kind on request) and their shared sequence options and data.
#ifndef CLUSTERKV_TESTS_UNIT_CLIENT_TEST_SUPPORT_H_
#define CLUSTERKV_TESTS_UNIT_CLIENT_TEST_SUPPORT_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "client/internal/sequence_core.h"
#include "client/transport.h"
#include "core/tensor_view.h"
#include "storage/cluster_block.h"

namespace clusterkv::client::test_support {

// Stores what a daemon would; counts calls; can fail the next call of a kind.
class FakeTransport final : public KvTransport {
 public:
  struct Seq {
    v1::KvLayout layout;
    int64_t num_tokens = 0;
    std::map<std::tuple<int, int, int>, v1::ClusterBlock> blocks;
    std::map<std::pair<int, int>, v1::HeadIndex> indexes;
  };

  absl::StatusOr<v1::OpenSequenceResponse> OpenSequence(const v1::OpenSequenceRequest& r) override {
    ++opens;
    v1::OpenSequenceResponse out;
    auto it = seqs.find(r.sequence_id());
    if (it == seqs.end()) {
      if (r.must_exist()) return absl::NotFoundError("no such sequence");
      seqs[r.sequence_id()].layout = r.layout();
      out.set_created(true);
      *out.mutable_layout() = r.layout();
      return out;
    }
    *out.mutable_layout() = it->second.layout;
    out.set_num_tokens(it->second.num_tokens);
    return out;
  }
  absl::Status CloseSequence(const v1::CloseSequenceRequest& r) override {
    if (r.drop()) seqs.erase(r.sequence_id());
    return absl::OkStatus();
  }
  absl::StatusOr<v1::GetIndexResponse> GetIndex(const v1::GetIndexRequest& r) override {
    ++get_index;
    auto it = seqs.find(r.sequence_id());
    if (it == seqs.end()) return absl::NotFoundError("no such sequence");
    v1::GetIndexResponse out;
    out.set_num_tokens(it->second.num_tokens);
    for (const auto& [head, index] : it->second.indexes) {
      const bool asked = r.layers().empty() || std::find(r.layers().begin(), r.layers().end(),
                                                         head.first) != r.layers().end();
      if (asked) *out.add_indexes() = index;
    }
    return out;
  }
  absl::StatusOr<v1::PutClustersResponse> PutClusters(
      absl::Span<const v1::PutClustersRequest> messages) override {
    ++put_streams;
    v1::PutClustersResponse out;
    for (const v1::PutClustersRequest& m : messages) {
      ++put_messages;
      Seq& s = seqs.at(m.sequence_id());
      for (const v1::ClusterBlock& b : m.blocks()) {
        s.blocks[Key(b.id())] = b;
        out.set_blocks_stored(out.blocks_stored() + 1);
      }
      for (const v1::HeadIndex& i : m.indexes()) s.indexes[{i.layer(), i.kv_head()}] = i;
      if (m.num_tokens() > 0) s.num_tokens = m.num_tokens();
    }
    return out;
  }
  absl::StatusOr<v1::AppendClustersResponse> AppendClusters(
      const v1::AppendClustersRequest& r) override {
    ++appends;
    if (!fail_append.ok()) return std::exchange(fail_append, absl::OkStatus());
    Seq& s = seqs.at(r.sequence_id());
    for (const v1::HeadIndex& a : r.appended()) {
      v1::HeadIndex& i = s.indexes[{a.layer(), a.kv_head()}];
      i.set_layer(a.layer());
      i.set_kv_head(a.kv_head());
      i.mutable_centroids()->MergeFrom(a.centroids());
      i.mutable_sizes()->MergeFrom(a.sizes());
      i.mutable_key_norms()->MergeFrom(a.key_norms());
      i.mutable_key_spreads()->MergeFrom(a.key_spreads());
    }
    for (const v1::ClusterBlock& b : r.blocks()) s.blocks[Key(b.id())] = b;
    s.num_tokens = r.num_tokens();
    return v1::AppendClustersResponse();
  }
  absl::Status ReportClientStats(const v1::ReportClientStatsRequest& r) override {
    if (!fail_report.ok()) return std::exchange(fail_report, absl::OkStatus());
    reports.push_back(r);
    return absl::OkStatus();
  }

  bool HintClusters(const v1::HintClustersRequest& r) override {
    hints.push_back(r);
    return accept_hints;
  }

  absl::Status FetchClusters(const v1::FetchClustersRequest& r,
                             const BlockCallback& on_block) override {
    ++fetches;
    if (!fail_fetch.ok()) return std::exchange(fail_fetch, absl::OkStatus());
    const Seq& s = seqs.at(r.sequence_id());
    for (int i = 0; i < r.clusters_size(); ++i) {
      if (omit_block && i == 0) continue;
      v1::ClusterBlock block = s.blocks.at(Key(r.clusters(i)));
      if (truncate_blocks) block.mutable_data()->resize(block.data().size() - 2);
      ++fetched_blocks;
      if (absl::Status st = on_block(block); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

  static std::tuple<int, int, int> Key(const v1::ClusterRef& r) {
    return {r.layer(), r.kv_head(), r.cluster()};
  }

  std::map<std::string, Seq> seqs;
  int opens = 0, get_index = 0, put_streams = 0, put_messages = 0, appends = 0, fetches = 0;
  std::vector<v1::ReportClientStatsRequest> reports;
  std::vector<v1::HintClustersRequest> hints;
  bool accept_hints = true;  // what HintClusters answers (false: dropped, as when saturated)
  absl::Status fail_report;
  int fetched_blocks = 0;
  absl::Status fail_fetch, fail_append;
  bool omit_block = false, truncate_blocks = false;
};

inline constexpr int kLayers = 2, kQHeads = 4, kKvHeads = 2, kDim = 16, kTokens = 100;

inline SequenceOptions TestOptions() {
  SequenceOptions o;
  o.config.num_sink_tokens = 4;
  o.config.dense_layers = {0};
  o.config.num_prefill_clusters = 8;
  o.config.kmeans_iterations = 4;
  o.config.recluster_interval = 16;
  o.config.clusters_per_recluster = 2;
  o.config.token_budget = 24;
  o.config.cache_residency_steps = 1;
  o.exec.threads = 1;
  o.put_message_bytes = 2048;  // several messages per prefill
  return o;
}

// fp32 values rounded through `dtype`, so the reference sees exactly what the blocks hold.
inline std::vector<float> Random(size_t n, uint32_t seed, DType dtype) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  std::vector<uint8_t> enc = EncodeAs(v, dtype);
  ConvertToFloat(enc.data(), dtype, static_cast<int64_t>(n), v.data());
  return v;
}

}  // namespace clusterkv::client::test_support

#endif  // CLUSTERKV_TESTS_UNIT_CLIENT_TEST_SUPPORT_H_
