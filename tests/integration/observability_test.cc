// End-to-end observability tests against the real clusterkvd process:
//   - /metrics exports the expected series after real RPCs, /healthz and /readyz answer, and
//     the span file (--trace_file) holds spans that continue the client's W3C traceparent;
//   - /dashboard rendered by Debian's headless Chromium shows the numbers /metrics holds (and
//     a screenshot lands in the build directory), its per-sequence view too (estimated recall,
//     budget, device-cache hit rate from the sequence's gauges, the report count and the heat
//     map of its recalls from /api/sequence; screenshot <build>/dashboard_sequence.png);
//   - Debian's real Prometheus, configured from deploy/prometheus/, scrapes the daemon and
//     answers a tier-metric query through its HTTP API.
// Chromium and Prometheus tests skip when the binaries are missing (deploy/setup.sh installs
// them).
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/integration/daemon_fixture.h"

namespace clusterkv::testing {
namespace {

constexpr char kTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kClientSpanId[] = "00f067aa0ba902b7";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// One sample of the exposition text: "name{labels}" -> value.
std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double v = 0;
    const std::string value(line.substr(space + 1));
    if (value == "+Inf") {
      v = INFINITY;
    } else if (!absl::SimpleAtod(value, &v)) {
      continue;
    }
    out[std::string(line.substr(0, space))] = v;
  }
  return out;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trace_file_ = scratch_.Sub("spans.jsonl");
    DaemonProcessOptions options;
    options.flags = {"--metrics_address=127.0.0.1:0", "--trace_file=" + trace_file_,
                     "--trace_sample_ratio=0", "--ucx=false"};
    daemon_ = std::make_unique<DaemonProcess>(options);
    const absl::Status started = daemon_->Start();
    ASSERT_TRUE(started.ok()) << started << daemon_->output();
    std::smatch m;
    const std::string out = daemon_->output();
    ASSERT_TRUE(std::regex_search(out, m, std::regex("metrics on http://127\\.0\\.0\\.1:(\\d+)")))
        << out;
    port_ = std::stoi(m[1]);
  }

  void TearDown() override {
    if (daemon_ == nullptr || !daemon_->running()) return;
    absl::StatusOr<int> code = daemon_->Stop();
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << daemon_->output();
  }

  std::string Get(const std::string& path, int* status = nullptr) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(10, 0);
    auto result = client.Get(path.c_str());
    EXPECT_TRUE(result) << path;
    if (!result) return "";
    if (status != nullptr) *status = result->status;
    return result->body;
  }

  // Opens a sequence, puts `clusters` blocks per head of 2 layers, fetches all of them with a
  // sampled traceparent, and reports device-cache counts.
  void RunLoad(const std::string& tenant, const std::string& id, uint32_t seed) {
    KvCacheClient client = MakeKvCacheClient(daemon_->target(), tenant);
    ASSERT_GRPC_OK(OpenSequence(client, id));
    const SequenceData data = MakeSequenceData(seed, /*clusters=*/3, /*layers=*/2);
    ASSERT_GRPC_OK(PutSequence(client, id, data, /*write_through=*/true));
    v1::FetchClustersRequest request;
    request.set_sequence_id(id);
    for (const v1::ClusterBlock& b : data.blocks) *request.add_clusters() = b.id();
    auto context = client.Context();
    context->AddMetadata("traceparent", absl::StrCat("00-", kTraceId, "-", kClientSpanId, "-01"));
    auto reader = client.stub->FetchClusters(context.get(), request);
    v1::FetchClustersResponse message;
    while (reader->Read(&message)) fetched_bytes_ += message.ByteSizeLong();
    ASSERT_GRPC_OK(reader->Finish());
    v1::ReportClientStatsRequest report;
    report.set_device_cache_hit_tokens(300);
    report.set_device_cache_miss_tokens(100);
    // Estimated recall: 3 at <= 0.5, 5 at (0.8, 0.9], 2 at (0.99, 1]; sum 0.4*3 + 0.85*5 + 2.
    for (uint64_t n : {3, 0, 0, 0, 5, 0, 0, 2}) report.add_estimated_recall_counts(n);
    report.set_estimated_recall_sum(0.4 * 3 + 0.85 * 5 + 2);
    report.set_sequence_id(id);
    report.set_step(64);
    report.set_selected_tokens(5120);  // 10 heads of 512 tokens
    report.set_selected_heads(10);
    // In the same trace as the fetch: the estimated recall lands on a child span.
    auto report_context = client.Context();
    report_context->AddMetadata("traceparent",
                                absl::StrCat("00-", kTraceId, "-", kClientSpanId, "-01"));
    v1::ReportClientStatsResponse ignored;
    ASSERT_GRPC_OK(client.stub->ReportClientStats(report_context.get(), report, &ignored));
    v1::StatsResponse stats;
    ASSERT_GRPC_OK(client.stub->Stats(client.Context().get(), v1::StatsRequest(), &stats));
  }

  ScratchDir scratch_{"obs"};
  std::string trace_file_;
  std::unique_ptr<DaemonProcess> daemon_;
  int port_ = 0;
  uint64_t fetched_bytes_ = 0;
};

TEST_F(ObservabilityTest, MetricsHealthAndPropagatedTraces) {
  int status = 0;
  EXPECT_EQ(Get("/healthz", &status), "ok\n");
  EXPECT_EQ(status, 200);
  Get("/readyz", &status);
  EXPECT_EQ(status, 200);
  RunLoad("obs-tenant", "seq-1", 11);

  const std::map<std::string, double> m = ParseMetrics(Get("/metrics"));
  auto value = [&m](const std::string& series) {
    auto it = m.find(series);
    EXPECT_NE(it, m.end()) << series;
    return it == m.end() ? -1.0 : it->second;
  };
  EXPECT_EQ(value("clusterkv_rpc_requests_total{rpc=\"FetchClusters\",code=\"OK\"}"), 1);
  EXPECT_EQ(value("clusterkv_rpc_requests_total{rpc=\"PutClusters\",code=\"OK\"}"), 1);
  EXPECT_EQ(value("clusterkv_rpc_requests_total{rpc=\"OpenSequence\",code=\"OK\"}"), 1);
  EXPECT_EQ(value("clusterkv_rpc_duration_seconds_count{rpc=\"FetchClusters\"}"), 1);
  EXPECT_EQ(value("clusterkv_tier_blocks{tier=\"host\"}"), 2 * 4 * 3);
  EXPECT_GT(value("clusterkv_tier_bytes{tier=\"host\"}"), 0);
  EXPECT_EQ(value("clusterkv_tier_capacity_bytes{tier=\"host\"}"), 64 << 20);
  EXPECT_EQ(value("clusterkv_tier_hits_total{tier=\"host\"}"), 2 * 4 * 3);
  // Every fetched block's bytes went out over gRPC (message framing adds a little on top).
  const double sent = value("clusterkv_transport_sent_bytes_total{transport=\"grpc\"}");
  EXPECT_EQ(sent, value("clusterkv_transport_received_bytes_total{transport=\"grpc\"}"));
  EXPECT_GT(sent, 0.9 * static_cast<double>(fetched_bytes_));
  EXPECT_LE(sent, static_cast<double>(fetched_bytes_));
  EXPECT_EQ(value("clusterkv_fetch_block_duration_seconds_count{transport=\"grpc\"}"), 24);
  EXPECT_EQ(value("clusterkv_store_write_through_seconds_count"), 24);
  EXPECT_EQ(value("clusterkv_store_write_through_puts_total"), 24);
  EXPECT_EQ(value("clusterkv_tenant_sequences{tenant=\"obs-tenant\"}"), 1);
  EXPECT_GT(value("clusterkv_tenant_bytes{tenant=\"obs-tenant\",tier=\"host\"}"), 0);
  EXPECT_EQ(value("clusterkv_client_device_cache_hit_tokens_total{tenant=\"obs-tenant\"}"), 300);
  EXPECT_EQ(value("clusterkv_client_device_cache_hit_ratio{tenant=\"obs-tenant\"}"), 0.75);
  EXPECT_EQ(value("clusterkv_client_estimated_recall_bucket{tenant=\"obs-tenant\",le=\"0.5\"}"), 3);
  EXPECT_EQ(value("clusterkv_client_estimated_recall_bucket{tenant=\"obs-tenant\",le=\"0.8\"}"), 3);
  EXPECT_EQ(value("clusterkv_client_estimated_recall_bucket{tenant=\"obs-tenant\",le=\"0.9\"}"), 8);
  EXPECT_EQ(value("clusterkv_client_estimated_recall_bucket{tenant=\"obs-tenant\",le=\"1\"}"), 10);
  EXPECT_EQ(value("clusterkv_client_estimated_recall_count{tenant=\"obs-tenant\"}"), 10);
  EXPECT_NEAR(value("clusterkv_client_estimated_recall_sum{tenant=\"obs-tenant\"}"), 7.45, 1e-9);

  // A bad request is counted under its code.
  KvCacheClient client = MakeKvCacheClient(daemon_->target(), "obs-tenant");
  v1::GetIndexRequest missing;
  missing.set_sequence_id("no-such-sequence");
  v1::GetIndexResponse ignored;
  EXPECT_EQ(client.stub->GetIndex(client.Context().get(), missing, &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ParseMetrics(Get("/metrics"))
                ["clusterkv_rpc_requests_total{rpc=\"GetIndex\",code=\"NOT_FOUND\"}"],
            1);

  // Stopping flushes the span queue; the file then holds the traced fetch.
  absl::StatusOr<int> code = daemon_->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << daemon_->output();
  std::vector<nlohmann::json> spans;
  std::istringstream lines(ReadFile(trace_file_));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) spans.push_back(nlohmann::json::parse(line));
  }
  // Only the fetch and the report carried a sampled traceparent (ratio 0 for the rest): the
  // fetch's RPC span plus a tier lookup and a transfer per block, the report's RPC span plus the
  // client's estimated recall.
  ASSERT_EQ(spans.size(), 1u + 2 * 24 + 2) << ReadFile(trace_file_);
  std::string rpc_span_id, report_span_id;
  for (const auto& span : spans) {
    EXPECT_EQ(span.at("traceId"), kTraceId);
    EXPECT_EQ(span.at("serviceName"), "clusterkvd");
    if (span.at("name") == "clusterkv.v1.KvCache/FetchClusters") {
      EXPECT_EQ(span.at("parentSpanId"), kClientSpanId);
      EXPECT_EQ(span.at("kind"), 2);
      rpc_span_id = span.at("spanId");
    }
    if (span.at("name") == "clusterkv.v1.KvCache/ReportClientStats") {
      EXPECT_EQ(span.at("parentSpanId"), kClientSpanId);
      report_span_id = span.at("spanId");
    }
  }
  ASSERT_FALSE(rpc_span_id.empty());
  ASSERT_FALSE(report_span_id.empty());
  int lookups = 0, transfers = 0, recalls = 0;
  for (const auto& span : spans) {
    const std::string name = span.at("name");
    if (name == "clusterkv.v1.KvCache/FetchClusters" ||
        name == "clusterkv.v1.KvCache/ReportClientStats") {
      continue;
    }
    if (name == "client.estimated_recall") {
      ++recalls;
      EXPECT_EQ(span.at("parentSpanId"), report_span_id) << span.dump();
      const std::string dump = span.dump();
      EXPECT_NE(dump.find("clusterkv.estimated_recall.mean"), std::string::npos) << dump;
      EXPECT_NE(dump.find("0.745"), std::string::npos) << dump;  // 7.45 over 10 estimates
      EXPECT_NE(dump.find("clusterkv.budget.mean_tokens"), std::string::npos) << dump;
      EXPECT_NE(dump.find("512"), std::string::npos) << dump;
      continue;
    }
    EXPECT_EQ(span.at("parentSpanId"), rpc_span_id) << span.dump();
    lookups += span.at("name") == "tier.lookup";
    transfers += span.at("name") == "transfer";
  }
  EXPECT_EQ(lookups, 24);
  EXPECT_EQ(transfers, 24);
  EXPECT_EQ(recalls, 1);
}

// PromQL's histogram_quantile over the buckets of every series of `name`, as the dashboard's JS.
double Quantile(const std::map<std::string, double>& m, const std::string& name, double q) {
  std::map<double, double> buckets;
  const std::regex le("^" + name + "_bucket\\{.*le=\"([^\"]+)\"\\}$");
  for (const auto& [series, value] : m) {
    std::smatch match;
    if (!std::regex_match(series, match, le)) continue;
    const double bound = match[1] == "+Inf" ? INFINITY : std::stod(match[1]);
    buckets[bound] += value;
  }
  if (buckets.empty() || !(buckets.rbegin()->second > 0)) return NAN;
  const double rank = q * buckets.rbegin()->second;
  double lower = 0, below = 0;
  bool first = true;
  for (const auto& [bound, count] : buckets) {
    if (count >= rank) {
      if (std::isinf(bound)) return first ? NAN : lower;
      if (count - below <= 0) return bound;
      return lower + (bound - lower) * (rank - below) / (count - below);
    }
    lower = bound;
    below = count;
    first = false;
  }
  return NAN;
}

constexpr char kChromium[] = "/usr/bin/chromium";

std::vector<std::string> ChromiumArgs(const std::string& profile) {
  return {kChromium,           "--headless",          "--no-sandbox",
          "--disable-gpu",     "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run",
          "--disable-dev-shm-usage",    "--user-data-dir=" + profile,
          "--virtual-time-budget=5000"};
}

// The DOM of `url` after headless Chromium ran its scripts (profile: a scratch directory).
absl::StatusOr<std::string> RenderedDom(const std::string& url, const std::string& profile) {
  std::vector<std::string> dump = ChromiumArgs(profile);
  dump.push_back("--dump-dom");
  dump.push_back(url);
  absl::StatusOr<ProcessResult> dom = RunProcess(dump, absl::Seconds(120));
  if (!dom.ok()) return dom.status();
  if (dom->exit_status != 0) {
    return absl::InternalError(absl::StrCat("chromium exited with ", dom->exit_status, ": ",
                                            dom->output));
  }
  return dom->output;
}

// The number an element of the page carries in its data-value attribute (NaN if absent).
double ShownValue(const std::string& dom, const std::string& id) {
  std::smatch match;
  const std::regex re("id=\"" + id + "\" data-value=\"([^\"]*)\"");
  EXPECT_TRUE(std::regex_search(dom, match, re)) << id << "\n" << dom;
  return match.size() > 1 ? std::stod(match[1]) : NAN;
}

// Saves a screenshot of `url` to `png` and checks it is a PNG.
void Screenshot(const std::string& url, const std::string& profile, const std::string& size,
                const std::string& png) {
  std::filesystem::remove(png);
  std::vector<std::string> shot = ChromiumArgs(profile);
  shot.push_back("--window-size=" + size);
  shot.push_back("--screenshot=" + png);
  shot.push_back(url);
  absl::StatusOr<ProcessResult> screenshot = RunProcess(shot, absl::Seconds(120));
  ASSERT_TRUE(screenshot.ok()) << screenshot.status();
  ASSERT_EQ(screenshot->exit_status, 0) << screenshot->output;
  EXPECT_EQ(ReadFile(png).substr(1, 3), "PNG");
}

TEST_F(ObservabilityTest, DashboardRendersInHeadlessChromium) {
  if (access(kChromium, X_OK) != 0) GTEST_SKIP() << kChromium << " is missing (deploy/setup.sh)";
  RunLoad("dash-tenant", "seq-d", 21);
  const std::string url = absl::StrCat("http://127.0.0.1:", port_, "/dashboard");

  absl::StatusOr<std::string> dom = RenderedDom(url, scratch_.Sub("profile-dom"));
  ASSERT_TRUE(dom.ok()) << dom.status();
  // No RPCs run while the page renders, so its numbers must be /metrics' numbers.
  const std::map<std::string, double> m = ParseMetrics(Get("/metrics"));
  auto shown = [&dom](const std::string& id) { return ShownValue(*dom, id); };
  EXPECT_GE(shown("scrapes"), 2) << "the page polls /metrics every second";
  EXPECT_EQ(shown("host-bytes"), m.at("clusterkv_tier_bytes{tier=\"host\"}"));
  EXPECT_GT(shown("host-bytes"), 0);
  EXPECT_EQ(shown("host-capacity"), m.at("clusterkv_tier_capacity_bytes{tier=\"host\"}"));
  EXPECT_EQ(shown("ssd-bytes"), m.at("clusterkv_tier_bytes{tier=\"ssd\"}"));
  EXPECT_EQ(shown("ssd-capacity"), m.at("clusterkv_tier_capacity_bytes{tier=\"ssd\"}"));
  EXPECT_NEAR(shown("host-occupancy"),
              m.at("clusterkv_tier_bytes{tier=\"host\"}") /
                  m.at("clusterkv_tier_capacity_bytes{tier=\"host\"}"),
              1e-12);
  EXPECT_EQ(shown("host-hit-rate"), 1.0);  // every fetch hit the host tier
  EXPECT_EQ(shown("client-hit-rate"), 0.75);
  EXPECT_EQ(shown("sent-grpc-bytes"), m.at("clusterkv_transport_sent_bytes_total{transport=\"grpc\"}"));
  EXPECT_EQ(shown("sent-ucx-bytes"), 0);
  for (auto [id, q] : {std::pair<const char*, double>{"latency-p50", 0.5}, {"latency-p90", 0.9},
                       {"latency-p99", 0.99}}) {
    const double expected = Quantile(m, "clusterkv_rpc_duration_seconds", q);
    EXPECT_NEAR(shown(id), expected, 1e-9 * std::max(1.0, expected)) << id;
  }

  const std::string png = std::string(CLUSTERKV_BUILD_DIR) + "/dashboard.png";
  ASSERT_NO_FATAL_FAILURE(Screenshot(url, scratch_.Sub("profile-png"), "1280,900", png));
  ASSERT_GT(ReadFile(png).size(), 1000u) << png;
  std::cerr << "dashboard screenshot: " << png << "\n";
}

// Two real sequences through the real daemon: blocks put, some fetched several times (the
// heat map), and per-sequence client reports (as libclusterkv sends every 64 steps). The
// per-sequence view must show what /metrics and /api/sequence hold, and a closed sequence must
// leave both.
TEST_F(ObservabilityTest, DashboardShowsThePerSequenceView) {
  const std::string tenant = "seq-tenant";
  KvCacheClient client = MakeKvCacheClient(daemon_->target(), tenant);
  const SequenceData data = MakeSequenceData(/*seed=*/31, /*clusters=*/4, /*layers=*/2);
  for (const std::string id : {"seq-a", "seq-b"}) {
    ASSERT_GRPC_OK(OpenSequence(client, id));
    ASSERT_GRPC_OK(PutSequence(client, id, data, /*write_through=*/false));
  }
  // seq-a: block i of the first 12 is fetched in 1 + i % 3 of 3 fetch requests.
  uint64_t recalls = 0;
  std::set<std::string> recalled;
  for (int round = 0; round < 3; ++round) {
    v1::FetchClustersRequest request;
    request.set_sequence_id("seq-a");
    for (size_t i = 0; i < 12; ++i) {
      if (static_cast<int>(i % 3) < round) continue;
      const v1::ClusterRef& ref = data.blocks[i].id();
      *request.add_clusters() = ref;
      recalled.insert(absl::StrCat(ref.layer(), ".", ref.kv_head(), ".", ref.cluster()));
      ++recalls;
    }
    auto context = client.Context();  // outlives the stream
    auto reader = client.stub->FetchClusters(context.get(), request);
    v1::FetchClustersResponse message;
    while (reader->Read(&message)) {
    }
    ASSERT_GRPC_OK(reader->Finish());
  }
  // Reports: seq-a at steps 64, 128, 192 (the last: recall 0.9, budget 96 tokens/head, hit
  // ratio 0.8); seq-b once; one for a sequence that is not open (its tenant counters count,
  // no history is kept).
  auto report = [&](const std::string& id, int64_t step, uint64_t hits, uint64_t misses,
                    uint64_t estimates_at_09, uint64_t heads, uint64_t tokens) {
    v1::ReportClientStatsRequest r;
    r.set_sequence_id(id);
    r.set_step(step);
    r.set_device_cache_hit_tokens(hits);
    r.set_device_cache_miss_tokens(misses);
    for (int b = 0; b < 8; ++b) r.add_estimated_recall_counts(b == 4 ? estimates_at_09 : 0);
    r.set_estimated_recall_sum(0.9 * static_cast<double>(estimates_at_09));
    r.set_selected_heads(heads);
    r.set_selected_tokens(tokens);
    v1::ReportClientStatsResponse ignored;
    return client.stub->ReportClientStats(client.Context().get(), r, &ignored);
  };
  ASSERT_GRPC_OK(report("seq-a", 64, 100, 300, 10, 64, 64 * 80));
  ASSERT_GRPC_OK(report("seq-a", 128, 200, 200, 10, 64, 64 * 90));
  ASSERT_GRPC_OK(report("seq-a", 192, 400, 100, 10, 64, 64 * 96));
  ASSERT_GRPC_OK(report("seq-b", 64, 50, 50, 4, 32, 32 * 40));
  ASSERT_GRPC_OK(report("not-open", 64, 1, 1, 1, 1, 1));

  const nlohmann::json list = nlohmann::json::parse(Get("/api/sequences"));
  ASSERT_EQ(list.at("sequences").size(), 2u) << list.dump();
  int status = 0;
  const nlohmann::json a =
      nlohmann::json::parse(Get("/api/sequence?tenant=seq-tenant&sequence=seq-a", &status));
  ASSERT_EQ(status, 200);
  ASSERT_EQ(a.at("points").size(), 3u);
  EXPECT_EQ(a.at("points")[2].at("step"), 192);
  EXPECT_DOUBLE_EQ(a.at("points")[2].at("budget_tokens").get<double>(), 96.0);
  EXPECT_DOUBLE_EQ(a.at("points")[2].at("hit_ratio").get<double>(), 0.8);
  const nlohmann::json& heat = a.at("heatmap");
  ASSERT_TRUE(heat.is_object()) << a.dump();
  EXPECT_EQ(heat.at("fetches"), 3);
  std::set<std::string> rows;
  uint64_t cells = 0;
  for (const auto& row : heat.at("rows")) rows.insert(row.get<std::string>());
  for (const auto& row : heat.at("counts")) {
    for (const auto& n : row) cells += n.get<uint64_t>();
  }
  EXPECT_EQ(rows, recalled);
  EXPECT_EQ(cells, recalls);
  EXPECT_EQ(heat.at("counts")[0][0], 3);  // the most recalled row first: fetched every time
  Get("/api/sequence?tenant=seq-tenant&sequence=not-open", &status);
  EXPECT_EQ(status, 404);

  if (access(kChromium, X_OK) != 0) GTEST_SKIP() << kChromium << " is missing (deploy/setup.sh)";
  const std::string url = absl::StrCat("http://127.0.0.1:", port_,
                                       "/dashboard?tenant=seq-tenant&sequence=seq-a");
  absl::StatusOr<std::string> dom = RenderedDom(url, scratch_.Sub("profile-seq-dom"));
  ASSERT_TRUE(dom.ok()) << dom.status();
  const std::map<std::string, double> m = ParseMetrics(Get("/metrics"));
  auto shown = [&dom](const std::string& id) { return ShownValue(*dom, id); };
  const std::string labels = "{tenant=\"seq-tenant\",sequence=\"seq-a\"}";
  EXPECT_EQ(shown("seq-count"), 2);
  EXPECT_NEAR(shown("seq-recall"), m.at("clusterkv_sequence_estimated_recall" + labels), 1e-12);
  EXPECT_NEAR(shown("seq-recall"), 0.9, 1e-12);
  EXPECT_EQ(shown("seq-budget"), m.at("clusterkv_sequence_budget_tokens" + labels));
  EXPECT_EQ(shown("seq-budget"), 96);
  EXPECT_NEAR(shown("seq-hit-rate"), m.at("clusterkv_sequence_device_cache_hit_ratio" + labels),
              1e-12);
  EXPECT_EQ(shown("seq-steps"), m.at("clusterkv_sequence_steps" + labels));
  EXPECT_EQ(shown("seq-points"), 3);
  EXPECT_EQ(shown("seq-heat-rows"), static_cast<double>(recalled.size()));
  EXPECT_EQ(shown("seq-heat-total"), static_cast<double>(recalls));
  EXPECT_EQ(shown("seq-heat-max"), 3);

  const std::string png = std::string(CLUSTERKV_BUILD_DIR) + "/dashboard_sequence.png";
  ASSERT_NO_FATAL_FAILURE(Screenshot(url, scratch_.Sub("profile-seq-png"), "1280,1500", png));
  std::cerr << "per-sequence dashboard screenshot: " << png << "\n";

  // Closing seq-a takes it off /metrics and /api.
  v1::CloseSequenceRequest close;
  close.set_sequence_id("seq-a");
  v1::CloseSequenceResponse closed;
  ASSERT_GRPC_OK(client.stub->CloseSequence(client.Context().get(), close, &closed));
  Get("/api/sequence?tenant=seq-tenant&sequence=seq-a", &status);
  EXPECT_EQ(status, 404);
  const std::map<std::string, double> after = ParseMetrics(Get("/metrics"));
  EXPECT_EQ(after.count("clusterkv_sequence_steps" + labels), 0u);
  EXPECT_EQ(after.count("clusterkv_sequence_steps{tenant=\"seq-tenant\",sequence=\"seq-b\"}"), 1u);
}

// A child process killed (SIGTERM, then reaped) on destruction, and with its parent.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv, const std::string& log) {
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      FILE* out = freopen(log.c_str(), "w", stdout);
      (void)out;
      dup2(fileno(stdout), fileno(stderr));
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  bool running() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

constexpr char kPrometheus[] = "/usr/bin/prometheus";

TEST_F(ObservabilityTest, RealPrometheusScrapesTheDaemon) {
  if (access(kPrometheus, X_OK) != 0) {
    GTEST_SKIP() << kPrometheus << " is missing (deploy/setup.sh)";
  }
  // The config is deploy/'s, with only the target and the intervals changed.
  const std::string deploy = std::string(CLUSTERKV_SOURCE_DIR) + "/deploy/prometheus/";
  std::string config = ReadFile(deploy + "prometheus.yml");
  ASSERT_NE(config.find("127.0.0.1:9464"), std::string::npos);
  config = std::regex_replace(config, std::regex("127\\.0\\.0\\.1:9464"),
                              absl::StrCat("127.0.0.1:", port_));
  config = std::regex_replace(config, std::regex("(scrape|evaluation)_interval: 15s"),
                              "$1_interval: 1s");
  const std::string dir = scratch_.Sub("prometheus");
  std::filesystem::create_directories(dir + "/data");
  std::ofstream(dir + "/prometheus.yml") << config;
  std::filesystem::copy_file(deploy + "alerts.yml", dir + "/alerts.yml");
  const int web_port = FreeLoopbackPort();
  ASSERT_GT(web_port, 0);
  Child prometheus({kPrometheus, "--config.file=" + dir + "/prometheus.yml",
                    "--storage.tsdb.path=" + dir + "/data",
                    absl::StrCat("--web.listen-address=127.0.0.1:", web_port),
                    "--log.level=warn"},
                   dir + "/prometheus.log");

  RunLoad("prom-tenant", "seq-p", 31);
  httplib::Client api("127.0.0.1", web_port);
  api.set_connection_timeout(1, 0);
  api.set_read_timeout(5, 0);
  // Polling an external server's API until a deadline is the synchronisation here: Prometheus
  // offers no notification of its first scrape (it needs a few seconds after start).
  const absl::Time deadline = absl::Now() + absl::Seconds(45);
  nlohmann::json result;
  while (absl::Now() < deadline) {
    ASSERT_TRUE(prometheus.running()) << ReadFile(dir + "/prometheus.log");
    auto r = api.Get("/api/v1/query?query=clusterkv_tier_bytes%7Btier%3D%22host%22%7D");
    if (r && r->status == 200) {
      const nlohmann::json body = nlohmann::json::parse(r->body);
      if (!body.at("data").at("result").empty()) {
        result = body.at("data").at("result").at(0);
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_FALSE(result.is_null()) << "no sample within 45 s\n" << ReadFile(dir + "/prometheus.log");
  EXPECT_EQ(result.at("metric").at("job"), "clusterkvd");
  EXPECT_EQ(result.at("metric").at("tier"), "host");
  EXPECT_GT(std::stod(result.at("value").at(1).get<std::string>()), 0);

  // The scrape is healthy and the alert rules from deploy/ were loaded (and thus valid).
  auto up = api.Get("/api/v1/query?query=up%7Bjob%3D%22clusterkvd%22%7D");
  ASSERT_TRUE(up && up->status == 200);
  EXPECT_EQ(nlohmann::json::parse(up->body).at("data").at("result").at(0).at("value").at(1), "1");
  auto rules = api.Get("/api/v1/rules");
  ASSERT_TRUE(rules && rules->status == 200);
  const nlohmann::json groups = nlohmann::json::parse(rules->body).at("data").at("groups");
  ASSERT_EQ(groups.size(), 1u) << rules->body;
  EXPECT_EQ(groups.at(0).at("name"), "clusterkvd");
  EXPECT_GE(groups.at(0).at("rules").size(), 4u);
}

}  // namespace
}  // namespace clusterkv::testing
