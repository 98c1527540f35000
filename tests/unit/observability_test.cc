// Unit tests of the observability pieces: the Prometheus registry and its text
// exposition (golden strings), DaemonMetrics' definitions, W3C traceparent parsing and
// formatting, the Tracer (sampling, parenting, bounded queue), the OTLP/HTTP JSON exporter
// against a local receiver, the HTTP endpoint, and the consistency of deploy/ (every metric the
// Grafana dashboard and the alert rules use is one the daemon exports).
#include <httplib.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/http/http_endpoint.h"
#include "server/metrics/daemon_metrics.h"
#include "server/metrics/registry.h"
#include "server/tracing/exporters.h"
#include "server/tracing/trace_context.h"
#include "server/tracing/tracer.h"

namespace clusterkv::server {
namespace {

using metrics::Registry;

// ---- registry and exposition ------------------------------------------------------------------

TEST(RegistryTest, RendersCountersGaugesAndHistogramsInTextFormat004) {
  Registry registry;
  auto* requests = registry.AddCounter("clusterkv_test_requests_total", "Requests served.",
                                       {"rpc", "code"});
  auto* bytes = registry.AddGauge("clusterkv_test_bytes", "Bytes held.", {"tier"});
  auto* latency = registry.AddHistogram("clusterkv_test_seconds", "Latency.", {"rpc"},
                                        {0.001, 0.01, 0.1});
  requests->WithLabels({"Stats", "OK"})->Increment(3);
  requests->WithLabels({"Fetch", "NOT_FOUND"})->Increment();
  bytes->WithLabels({"host"})->Set(1048576);
  bytes->WithLabels({"ssd"})->Set(0.5);
  auto* h = latency->WithLabels({"Stats"});
  h->Observe(0.0005);
  h->Observe(0.001);  // on a bound: counted in that bucket (le is inclusive)
  h->Observe(0.05);
  h->Observe(7);
  EXPECT_EQ(registry.Render(),
            "# HELP clusterkv_test_requests_total Requests served.\n"
            "# TYPE clusterkv_test_requests_total counter\n"
            "clusterkv_test_requests_total{rpc=\"Fetch\",code=\"NOT_FOUND\"} 1\n"
            "clusterkv_test_requests_total{rpc=\"Stats\",code=\"OK\"} 3\n"
            "# HELP clusterkv_test_bytes Bytes held.\n"
            "# TYPE clusterkv_test_bytes gauge\n"
            "clusterkv_test_bytes{tier=\"host\"} 1048576\n"
            "clusterkv_test_bytes{tier=\"ssd\"} 0.5\n"
            "# HELP clusterkv_test_seconds Latency.\n"
            "# TYPE clusterkv_test_seconds histogram\n"
            "clusterkv_test_seconds_bucket{rpc=\"Stats\",le=\"0.001\"} 2\n"
            "clusterkv_test_seconds_bucket{rpc=\"Stats\",le=\"0.01\"} 2\n"
            "clusterkv_test_seconds_bucket{rpc=\"Stats\",le=\"0.1\"} 3\n"
            "clusterkv_test_seconds_bucket{rpc=\"Stats\",le=\"+Inf\"} 4\n"
            "clusterkv_test_seconds_sum{rpc=\"Stats\"} 7.0515\n"
            "clusterkv_test_seconds_count{rpc=\"Stats\"} 4\n");
}

TEST(RegistryTest, UnlabelledMetricsAndEscaping) {
  Registry registry;
  registry.AddCounter("c_total", "Help with \\ and\nnewline.")->WithLabels({})->Increment(2);
  registry.AddGauge("g", "G.", {"tenant"})->WithLabels({"a\"b\\c\nd"})->Set(-3);
  registry.AddHistogram("h_seconds", "H.", {}, {1})->WithLabels({});
  EXPECT_EQ(registry.Render(),
            "# HELP c_total Help with \\\\ and\\nnewline.\n"
            "# TYPE c_total counter\n"
            "c_total 2\n"
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{tenant=\"a\\\"b\\\\c\\nd\"} -3\n"
            "# HELP h_seconds H.\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"1\"} 0\n"
            "h_seconds_bucket{le=\"+Inf\"} 0\n"
            "h_seconds_sum 0\n"
            "h_seconds_count 0\n");
}

TEST(RegistryTest, CollectorsRunAtScrapeAndClearRebuildsAFamily) {
  Registry registry;
  auto* tenants = registry.AddGauge("t", "T.", {"tenant"});
  int scrapes = 0;
  registry.AddCollector([&] {
    ++scrapes;
    tenants->Clear();
    tenants->WithLabels({scrapes == 1 ? "a" : "b"})->Set(scrapes);
  });
  EXPECT_NE(registry.Render().find("t{tenant=\"a\"} 1\n"), std::string::npos);
  const std::string second = registry.Render();
  EXPECT_EQ(second.find("tenant=\"a\""), std::string::npos);
  EXPECT_NE(second.find("t{tenant=\"b\"} 2\n"), std::string::npos);
}

TEST(RegistryTest, FormatsValuesAndValidatesNames) {
  EXPECT_EQ(metrics::FormatValue(0), "0");
  EXPECT_EQ(metrics::FormatValue(42), "42");
  EXPECT_EQ(metrics::FormatValue(0.0001), "0.0001");
  EXPECT_EQ(metrics::FormatValue(0.1), "0.1");
  EXPECT_EQ(metrics::FormatValue(1e-9), "1e-09");
  EXPECT_EQ(metrics::FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(metrics::FormatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(metrics::FormatValue(std::nan("")), "NaN");
  EXPECT_TRUE(metrics::IsValidMetricName("clusterkv_tier_bytes"));
  EXPECT_TRUE(metrics::IsValidMetricName("a:b_c"));
  EXPECT_FALSE(metrics::IsValidMetricName("1abc"));
  EXPECT_FALSE(metrics::IsValidMetricName("a-b"));
  EXPECT_TRUE(metrics::IsValidLabelName("tier"));
  EXPECT_FALSE(metrics::IsValidLabelName("__name"));
  EXPECT_FALSE(metrics::IsValidLabelName("a:b"));
}

TEST(DaemonMetricsTest, NamesFollowTheHouseStyleAndAreRegisteredOnce) {
  metrics::DaemonMetrics m;
  const std::vector<std::string> names = metrics::DaemonMetrics::FamilyNames();
  EXPECT_EQ(m.registry().FamilyNames(), names);
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  const std::string text = m.Render();
  for (const std::string& name : names) {
    EXPECT_EQ(name.rfind("clusterkv_", 0), 0u) << name;
    EXPECT_NE(text.find("# TYPE " + name + " "), std::string::npos) << name;
    const bool counter = text.find("# TYPE " + name + " counter") != std::string::npos;
    EXPECT_EQ(counter, name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
  }
}

metrics::SequenceReport Point(int64_t step, uint64_t hits, uint64_t misses, uint64_t heads,
                              uint64_t tokens) {
  metrics::SequenceReport p;
  p.step = step;
  p.hit_tokens = hits;
  p.miss_tokens = misses;
  p.recall_estimates = 4;
  p.recall_sum = 3.0;
  p.selected_heads = heads;
  p.selected_tokens = tokens;
  return p;
}

TEST(SequenceStatsBookTest, KeepsTheLatestPointsOfTheMostRecentlyReportedSequences) {
  metrics::SequenceStatsBook book({.max_sequences = 2, .max_points = 3});
  for (int i = 0; i < 5; ++i) book.Add("t", "a", Point(64 * i, 1, 1, 1, 1));
  book.Add("t", "b", Point(64, 1, 1, 1, 1));
  metrics::SequenceHistory a;
  ASSERT_TRUE(book.Get("t", "a", &a));
  EXPECT_EQ(a.reports, 5u);
  ASSERT_EQ(a.points.size(), 3u);  // the last three
  EXPECT_EQ(a.points.front().step, 128);
  book.Add("t", "a", Point(320, 1, 1, 1, 1));
  book.Add("u", "c", Point(64, 1, 1, 1, 1));  // past 2 sequences: b (reported least recently) goes
  EXPECT_FALSE(book.Get("t", "b", &a));
  EXPECT_TRUE(book.Get("t", "a", &a));
  EXPECT_EQ(book.Snapshot().size(), 2u);
  book.Drop("t", "a");
  EXPECT_FALSE(book.Get("t", "a", &a));
  EXPECT_EQ(book.Snapshot().size(), 1u);
}

TEST(DaemonMetricsTest, PerSequenceGaugesFollowTheLatestReportAndLeaveAtClose) {
  metrics::DaemonMetrics m;
  m.ReportSequence("t", "s", Point(64, 1, 3, 10, 500));
  m.ReportSequence("t", "s", Point(128, 3, 1, 10, 800));
  std::string text = m.Render();
  const std::string labels = "{tenant=\"t\",sequence=\"s\"}";
  EXPECT_NE(text.find("clusterkv_sequence_estimated_recall" + labels + " 0.75\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("clusterkv_sequence_budget_tokens" + labels + " 80\n"), std::string::npos);
  EXPECT_NE(text.find("clusterkv_sequence_device_cache_hit_ratio" + labels + " 0.75\n"),
            std::string::npos);
  EXPECT_NE(text.find("clusterkv_sequence_steps" + labels + " 128\n"), std::string::npos);
  EXPECT_FALSE(m.SequenceHeatMap("t", "s", 8).has_value());  // no store attached
  m.DropSequence("t", "s");
  text = m.Render();
  EXPECT_EQ(text.find("clusterkv_sequence_steps{"), std::string::npos) << text;
}

TEST(DaemonMetricsTest, PushMetricsLandInTheirSeries) {
  absl::Time now = absl::UnixEpoch();
  metrics::DaemonMetricsOptions options;
  options.clock = [&now] { return now; };
  metrics::DaemonMetrics m(options);
  m.ObserveRpc(metrics::Rpc::kFetchClusters, absl::StatusCode::kNotFound, absl::Milliseconds(2));
  m.ObserveFetchBlock(metrics::Transport::kUcx, 65536, absl::Microseconds(30));
  m.AddReceivedBytes(metrics::Transport::kGrpc, 100);
  m.ReportClientStats("tenant-a", 75, 25);
  const std::string text = m.Render();
  for (const char* line : {
           "clusterkv_rpc_requests_total{rpc=\"FetchClusters\",code=\"NOT_FOUND\"} 1\n",
           "clusterkv_rpc_duration_seconds_bucket{rpc=\"FetchClusters\",le=\"0.0025\"} 1\n",
           "clusterkv_rpc_duration_seconds_bucket{rpc=\"FetchClusters\",le=\"0.001\"} 0\n",
           "clusterkv_transport_sent_bytes_total{transport=\"ucx\"} 65536\n",
           "clusterkv_transport_sent_bytes_total{transport=\"grpc\"} 0\n",
           "clusterkv_transport_received_bytes_total{transport=\"grpc\"} 100\n",
           "clusterkv_fetch_block_duration_seconds_count{transport=\"ucx\"} 1\n",
           "clusterkv_client_device_cache_hit_tokens_total{tenant=\"tenant-a\"} 75\n",
           "clusterkv_client_device_cache_hit_ratio{tenant=\"tenant-a\"} 0.75\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
}

// ---- traceparent --------------------------------------------------------------------------------

TEST(TraceparentTest, ParsesAndFormatsTheSpecExample) {
  const std::string header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::optional<tracing::SpanContext> c = tracing::ParseTraceparent(header);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(tracing::ToHex(c->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(tracing::ToHex(c->span_id), "00f067aa0ba902b7");
  EXPECT_TRUE(c->sampled());
  EXPECT_EQ(tracing::FormatTraceparent(*c), header);
  c = tracing::ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->sampled());
}

TEST(TraceparentTest, RejectsWhatTheSpecSaysToIgnore) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",        // short
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",    // v00 + trailing
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     // zero span id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // version ff
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // separator
           "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // not hex
           "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.xyz", // future, no '-'
       }) {
    EXPECT_FALSE(tracing::ParseTraceparent(bad).has_value()) << bad;
  }
  // A future version is read by its known fields.
  EXPECT_TRUE(tracing::ParseTraceparent(
                  "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds")
                  .has_value());
}

TEST(TraceparentTest, IdGeneratorIsSeededAndNeverZero) {
  tracing::IdGenerator a(7), b(7), c(8);
  const tracing::TraceId ta = a.NewTraceId();
  EXPECT_EQ(ta, b.NewTraceId());
  EXPECT_NE(ta, c.NewTraceId());
  EXPECT_NE(a.NewSpanId(), tracing::SpanId{});
}

// ---- tracer ---------------------------------------------------------------------------------

class CollectingExporter final : public tracing::SpanExporter {
 public:
  absl::Status Export(const std::vector<tracing::SpanData>& batch) override {
    if (gate != nullptr) gate->WaitForNotification();
    absl::MutexLock lock(&mu);
    spans.insert(spans.end(), batch.begin(), batch.end());
    return absl::OkStatus();
  }
  absl::Notification* gate = nullptr;
  absl::Mutex mu;
  std::vector<tracing::SpanData> spans;
};

TEST(TracerTest, ContinuesTheRemoteTraceAndParentsChildren) {
  auto exporter = std::make_unique<CollectingExporter>();
  CollectingExporter* sink = exporter.get();
  std::vector<std::unique_ptr<tracing::SpanExporter>> exporters;
  exporters.push_back(std::move(exporter));
  tracing::TracerOptions options;
  options.sample_ratio = 0;  // only propagated, sampled traces
  options.seed = 1;
  tracing::Tracer tracer(options, std::move(exporters));
  const auto remote =
      *tracing::ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  {
    tracing::Span rpc = tracer.StartSpan("rpc", remote, tracing::SpanKind::kServer);
    ASSERT_TRUE(rpc.recording());
    tracing::Span child = tracer.StartSpan("child", rpc.context());
    child.SetAttribute("bytes", int64_t{42});
    rpc.SetStatus(absl::NotFoundError("gone"));
  }
  tracing::Span unsampled = tracer.StartSpan("root");  // ratio 0: not recorded
  EXPECT_FALSE(unsampled.recording());
  EXPECT_TRUE(unsampled.context().valid());
  unsampled.End();
  tracer.Flush();
  absl::MutexLock lock(&sink->mu);
  ASSERT_EQ(sink->spans.size(), 2u);
  const tracing::SpanData& child = sink->spans[0];
  const tracing::SpanData& rpc = sink->spans[1];
  EXPECT_EQ(child.name, "child");
  EXPECT_EQ(rpc.context.trace_id, remote.trace_id);
  EXPECT_EQ(rpc.parent_span_id, remote.span_id);
  EXPECT_EQ(child.context.trace_id, remote.trace_id);
  EXPECT_EQ(child.parent_span_id, rpc.context.span_id);
  EXPECT_EQ(rpc.status_code, absl::StatusCode::kNotFound);
  const std::string json = tracing::SpanToOtlpJson(rpc);
  EXPECT_NE(json.find("\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\""), std::string::npos);
  EXPECT_NE(json.find("\"parentSpanId\":\"00f067aa0ba902b7\""), std::string::npos);
  EXPECT_NE(json.find("\"kind\":2"), std::string::npos);
}

TEST(TracerTest, FullQueueDropsAndCounts) {
  absl::Notification gate;
  auto exporter = std::make_unique<CollectingExporter>();
  exporter->gate = &gate;
  CollectingExporter* sink = exporter.get();
  std::vector<std::unique_ptr<tracing::SpanExporter>> exporters;
  exporters.push_back(std::move(exporter));
  tracing::TracerOptions options;
  options.sample_ratio = 1;
  options.max_queue = 4;
  options.max_batch = 1;
  tracing::Tracer tracer(options, std::move(exporters));
  // The export thread takes at most one span (max_batch 1) and then blocks on the gate, so the
  // queue fills up and further spans are dropped and counted.
  tracer.StartSpan("first").End();
  int started = 0;
  while (tracer.dropped() == 0) {
    tracer.StartSpan("s").End();
    ++started;
    ASSERT_LT(started, 100);
  }
  const uint64_t dropped_before = tracer.dropped();
  for (int i = 0; i < 5; ++i) tracer.StartSpan("more").End();
  // At most one slot can free up meanwhile (the thread taking its one span).
  EXPECT_GE(tracer.dropped(), dropped_before + 4);
  gate.Notify();
  tracer.Flush();
  absl::MutexLock lock(&sink->mu);
  EXPECT_EQ(sink->spans.size() + tracer.dropped(), static_cast<size_t>(1 + started + 5));
  EXPECT_LE(sink->spans.size(), 1u + 4u + 1u);
}

TEST(TracerTest, SamplingRatioIsDecidedByTheTraceId) {
  tracing::TraceId low{}, high{};
  low[15] = 1;
  for (int i = 8; i < 16; ++i) high[i] = 0xff;
  EXPECT_TRUE(tracing::Tracer::SampleTraceId(low, 0.5));
  EXPECT_FALSE(tracing::Tracer::SampleTraceId(high, 0.5));
  EXPECT_TRUE(tracing::Tracer::SampleTraceId(high, 1.0));
  EXPECT_FALSE(tracing::Tracer::SampleTraceId(low, 0.0));
}

// ---- OTLP/HTTP exporter, against a local receiver -------------------------------------------

TEST(OtlpExporterTest, PostsExportTraceServiceRequestJson) {
  httplib::Server receiver;
  absl::Mutex mu;
  std::vector<std::string> bodies;
  receiver.Post("/v1/traces", [&](const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu);
    bodies.push_back(req.body);
    res.set_content("{}", "application/json");
  });
  const int port = receiver.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serve([&] { receiver.listen_after_bind(); });
  while (!receiver.is_running()) std::this_thread::yield();

  auto exporter = tracing::OtlpHttpExporter::Create(
      "http://127.0.0.1:" + std::to_string(port) + "/v1/traces", "clusterkvd");
  ASSERT_TRUE(exporter.ok()) << exporter.status();
  std::vector<std::unique_ptr<tracing::SpanExporter>> exporters;
  exporters.push_back(*std::move(exporter));
  tracing::TracerOptions options;
  options.sample_ratio = 1;
  options.seed = 3;
  tracing::Tracer tracer(options, std::move(exporters));
  std::string trace_id;
  {
    tracing::Span span = tracer.StartSpan("clusterkv.v1.KvCache/Stats", {},
                                          tracing::SpanKind::kServer);
    span.SetAttribute("rpc.method", std::string("Stats"));
    trace_id = tracing::ToHex(span.context().trace_id);
  }
  tracer.Flush();
  EXPECT_EQ(tracer.export_failures(), 0u);
  receiver.stop();
  serve.join();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(bodies.size(), 1u);
  const nlohmann::json body = nlohmann::json::parse(bodies[0]);
  const auto& rs = body.at("resourceSpans").at(0);
  EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("value").at("stringValue"), "clusterkvd");
  const auto& span = rs.at("scopeSpans").at(0).at("spans").at(0);
  EXPECT_EQ(span.at("traceId"), trace_id);
  EXPECT_EQ(span.at("name"), "clusterkv.v1.KvCache/Stats");
  EXPECT_EQ(span.at("kind"), 2);
  EXPECT_TRUE(span.at("startTimeUnixNano").is_string());
}

TEST(OtlpExporterTest, RejectsNonHttpEndpointsAndCountsUnreachableCollectors) {
  EXPECT_FALSE(tracing::OtlpHttpExporter::Create("127.0.0.1:4318", "x").ok());
  EXPECT_FALSE(tracing::OtlpHttpExporter::Create("http://", "x").ok());
  // Port 1 on loopback refuses at once.
  auto exporter = tracing::OtlpHttpExporter::Create("http://127.0.0.1:1/v1/traces", "x",
                                                    absl::Seconds(2));
  ASSERT_TRUE(exporter.ok());
  EXPECT_TRUE(absl::IsUnavailable((*exporter)->Export({tracing::SpanData()})));
}

// ---- HTTP endpoint ----------------------------------------------------------------------------

TEST(HttpEndpointTest, ServesMetricsHealthReadinessAndDashboard) {
  std::atomic<bool> ready{false};
  http::HttpEndpointOptions options;
  options.address = "127.0.0.1:0";
  options.metrics = [] { return std::string("m 1\n"); };
  options.ready = [&ready] { return ready.load(); };
  auto endpoint = http::HttpEndpoint::Start(options);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  httplib::Client client("127.0.0.1", (*endpoint)->port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "m 1\n");
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  EXPECT_EQ(client.Get("/readyz")->status, 503);
  ready = true;
  EXPECT_EQ(client.Get("/readyz")->status, 200);
  auto page = client.Get("/dashboard");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("id=\"host-bytes\""), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos);  // nothing from the network
  EXPECT_EQ(page->body.find("https://"), std::string::npos);
  EXPECT_EQ(client.Get("/nope")->status, 404);
  (*endpoint)->Stop();
  EXPECT_FALSE(client.Get("/healthz"));
}

TEST(HttpEndpointTest, RejectsBadAddressesAndReportsATakenPort) {
  EXPECT_TRUE(absl::IsInvalidArgument(http::SplitHostPort("9464").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(http::SplitHostPort("h:99999").status()));
  EXPECT_EQ(http::SplitHostPort("[::1]:9464")->first, "::1");
  http::HttpEndpointOptions options;
  options.address = "127.0.0.1:0";
  auto first = http::HttpEndpoint::Start(options);
  ASSERT_TRUE(first.ok());
  options.address = "127.0.0.1:" + std::to_string((*first)->port());
  EXPECT_TRUE(absl::IsUnavailable(http::HttpEndpoint::Start(options).status()));
}

// ---- deploy/ consistency ----------------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Every clusterkv_* metric a deploy file references (histogram series map to their family).
std::set<std::string> ReferencedMetrics(const std::string& text) {
  std::set<std::string> names;
  static const std::regex kName("clusterkv_[a-z0-9_]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kName);
       it != std::sregex_iterator(); ++it) {
    std::string name = it->str();
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
        const std::string family = name.substr(0, name.size() - s.size());
        const auto all = metrics::DaemonMetrics::FamilyNames();
        if (std::find(all.begin(), all.end(), family) != all.end()) name = family;
      }
    }
    names.insert(name);
  }
  return names;
}

TEST(DeployConsistencyTest, GrafanaAndAlertsUseOnlyExportedMetrics) {
  const auto exported = metrics::DaemonMetrics::FamilyNames();
  const std::set<std::string> known(exported.begin(), exported.end());
  for (const char* file : {"deploy/grafana/clusterkv-dashboard.json",
                           "deploy/prometheus/alerts.yml"}) {
    const std::string text = ReadFile(std::string(CLUSTERKV_SOURCE_DIR) + "/" + file);
    ASSERT_FALSE(text.empty()) << file;
    const std::set<std::string> used = ReferencedMetrics(text);
    EXPECT_GE(used.size(), 3u) << file;
    for (const std::string& name : used) {
      // Recording-rule style names are not allowed either: every name must be exported.
      EXPECT_TRUE(known.count(name)) << file << " uses " << name << ", which clusterkvd does not export";
    }
  }
  // The dashboard must be valid JSON and show the tiers.
  const nlohmann::json dashboard = nlohmann::json::parse(
      ReadFile(std::string(CLUSTERKV_SOURCE_DIR) + "/deploy/grafana/clusterkv-dashboard.json"));
  EXPECT_FALSE(dashboard.at("panels").empty());
  EXPECT_NE(dashboard.dump().find("clusterkv_tier_bytes"), std::string::npos);
}

}  // namespace
}  // namespace clusterkv::server
