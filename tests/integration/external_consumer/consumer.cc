// External consumer of the installed C++ API: connects to a clusterkvd, offloads a prefill,
// runs one clustered decode step at a budget covering every token and compares the output with
// full attention computed here. Prints "consumer_cpp: ok" on success.
//
//   consumer_cpp                 objects only (no daemon): layout, config, a lazy client
//   consumer_cpp unix:/path.sock the round trip against that daemon (--auth=none)
#include <unistd.h>

#include <clusterkv/client/client.h>
#include <clusterkv/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace ckv = clusterkv;

namespace {

constexpr int kTokens = 300;

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "consumer_cpp: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("consumer_cpp: headers %s, library %s\n", CLUSTERKV_VERSION_STRING, ckv_version());
  if (std::string(CLUSTERKV_VERSION_STRING) != ckv_version()) {
    std::fprintf(stderr, "consumer_cpp: header and library versions differ\n");
    return 1;
  }
  ckv::KvLayout layout;
  layout.num_layers = 1;
  layout.num_q_heads = 4;
  layout.num_kv_heads = 2;
  layout.head_dim = 32;
  layout.dtype = ckv::DType::kFloat32;
  if (absl::Status s = layout.Validate(); !s.ok()) return Fail("layout", s);

  ckv::client::ClientOptions options;
  options.target = argc > 1 ? argv[1] : "unix:/tmp/clusterkv-consumer-absent.sock";
  options.tenant = "external-consumer";
  options.config.dense_layers = {};
  options.config.num_sink_tokens = 4;
  options.config.num_prefill_clusters = 8;
  options.config.token_budget = kTokens;
  options.threads = 1;
  absl::StatusOr<std::unique_ptr<ckv::client::Client>> client =
      ckv::client::Client::Connect(options);
  if (!client.ok()) return Fail("connect", client.status());
  std::printf("consumer_cpp: layout %s, config %s\n", layout.DebugString().c_str(),
              options.config.DebugString().c_str());
  if (argc < 2) {
    std::printf("consumer_cpp: ok (objects only)\n");
    return 0;
  }

  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  std::vector<float> keys(2 * kTokens * 32), values(keys.size()), queries(4 * 32), out(4 * 32);
  for (float& x : keys) x = normal(rng);
  for (float& x : values) x = normal(rng);
  for (float& x : queries) x = normal(rng);

  const std::string id = "consumer-" + std::to_string(::getpid());
  absl::StatusOr<std::unique_ptr<ckv::client::Sequence>> seq = (*client)->OpenSequence(id, layout);
  if (!seq.ok()) return Fail("open", seq.status());
  const ckv::Tensor3View k(keys.data(), ckv::DType::kFloat32, {2, kTokens, 32});
  const ckv::Tensor3View v(values.data(), ckv::DType::kFloat32, {2, kTokens, 32});
  if (absl::Status s = (*seq)->OffloadPrefill(0, k, v); !s.ok()) return Fail("prefill", s);
  ckv::client::StepStats stats;
  if (absl::Status s = (*seq)->Attend(0, ckv::ConstMatrixView(queries.data(), 4, 32),
                                      ckv::MatrixView(out.data(), 4, 32), &stats);
      !s.ok()) {
    return Fail("attend", s);
  }

  // Full attention over every token (GQA: query heads 2h, 2h+1 share kv head h).
  double max_err = 0;
  for (int qh = 0; qh < 4; ++qh) {
    const int h = qh / 2;
    std::vector<double> p(kTokens);
    double top = -1e300, sum = 0;
    for (int t = 0; t < kTokens; ++t) {
      double dot = 0;
      for (int d = 0; d < 32; ++d) dot += queries[qh * 32 + d] * keys[(h * kTokens + t) * 32 + d];
      p[t] = dot / std::sqrt(32.0);
      top = std::max(top, p[t]);
    }
    for (double& x : p) sum += (x = std::exp(x - top));
    for (int d = 0; d < 32; ++d) {
      double o = 0;
      for (int t = 0; t < kTokens; ++t) o += p[t] / sum * values[(h * kTokens + t) * 32 + d];
      max_err = std::max(max_err, std::fabs(o - out[qh * 32 + d]));
    }
  }
  std::printf("consumer_cpp: attended %lld tokens, fetched %lld blocks (%lld bytes), "
              "max |error| vs full attention %.2e\n",
              static_cast<long long>(stats.attended_tokens),
              static_cast<long long>(stats.blocks_fetched),
              static_cast<long long>(stats.bytes_fetched), max_err);
  if (absl::Status s = (*seq)->Close(/*drop=*/true); !s.ok()) return Fail("close", s);
  if (stats.blocks_fetched == 0 || stats.attended_tokens != 2 * kTokens || !(max_err < 1e-4)) {
    std::fprintf(stderr, "consumer_cpp: unexpected result\n");
    return 1;
  }
  std::printf("consumer_cpp: ok\n");
  return 0;
}
