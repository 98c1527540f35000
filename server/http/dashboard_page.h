// The /dashboard page: one self-contained HTML document (inline CSS, JS and canvas charts; no
// CDN, no network beyond its own origin's /metrics). It polls /metrics every second, parses the
// exposition text and plots tier occupancy (host and SSD bytes against capacity), hit rates
// (host tier, SSD tier, clients' device caches), bandwidth (bytes per second per transport) and
// RPC latency percentiles (interpolated from the histogram buckets, as PromQL's
// histogram_quantile does). The current numbers are also shown as text in elements with stable
// ids, each carrying the raw number in a data-value attribute, so tests can read them:
//   host-bytes, host-capacity, host-occupancy, ssd-bytes, ssd-capacity, host-hit-rate,
//   ssd-hit-rate, client-hit-rate, sent-grpc-bytes, sent-ucx-bytes, bw-grpc, bw-ucx,
//   latency-p50, latency-p90, latency-p99 (seconds), rpc-count, scrapes.
#ifndef CLUSTERKV_SERVER_HTTP_DASHBOARD_PAGE_H_
#define CLUSTERKV_SERVER_HTTP_DASHBOARD_PAGE_H_

#include <string_view>

namespace clusterkv::server::http {

std::string_view DashboardHtml();

}  // namespace clusterkv::server::http

#endif  // CLUSTERKV_SERVER_HTTP_DASHBOARD_PAGE_H_
