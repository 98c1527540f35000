// UCX's own ucx_perftest as a peer measurement for the fetch benchmark: a server and a client
// process on loopback running ucp_put_bw, every child bounded in time and killed past it.
// The figure is UCX's put bandwidth between two processes of this machine, one message buffer
// reused (cache-hot), without any request protocol: the ceiling our UCX path will be compared
// to. Thread-compatible.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_UCX_PERFTEST_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_UCX_PERFTEST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace clusterkv::bench {

struct UcxPerftestOptions {
  std::string binary = "/usr/bin/ucx_perftest";
  // UCX_TLS of both processes (shared memory by default); UCX_NET_DEVICES is always lo.
  std::string transports = "posix,sysv,self";
  // Limit of each run (server and client together).
  double timeout_s = 30;
};

struct UcxPerftestResult {
  double bandwidth_gbps = 0;  // overall bandwidth, 1e9 bytes per second
  double overhead_p50_us = 0;  // median time per message
  int64_t iterations = 0;
};

// Runs `ucx_perftest -p PORT` and `ucx_perftest 127.0.0.1 -p PORT -t ucp_put_bw -s BYTES
// -n ITERS -f` and parses the client's final line. NotFound when the binary is missing;
// DeadlineExceeded past the timeout (both children killed); Internal when a child fails or
// its output does not parse (the output is in the message).
absl::StatusOr<UcxPerftestResult> RunUcxPutBandwidth(const UcxPerftestOptions& options,
                                                     int64_t message_bytes, int64_t iterations);

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_UCX_PERFTEST_H_
