// The end-to-end demo (README's first command): an inference-worker simulation against a real
// clusterkvd. It starts the daemon on a Unix socket with embedded defaults, opens a sequence
// with the Llama-3-8B layout, offloads a 32k-token prefill driven by real text (every layer:
// K-means clustering, blocks streamed to the daemon), then runs decode steps through
// libclusterkv (selection, device-cache lookup, fetch of the missing clusters, sparse attention,
// decode-token appends) and compares every step with full attention over all tokens. It prints
// progress, attention-output error, device-cache hit rate, bytes moved, the per-step latency
// breakdown and the daemon's tier statistics, and fails (non-OK) if anything fails.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_DEMO_DEMO_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_DEMO_DEMO_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "core/config.h"
#include "core/kv_layout.h"

namespace clusterkv::demo {

struct DemoOptions {
  std::string daemon_binary;    // clusterkvd to start
  std::string target;           // use this running daemon instead of starting one
  std::string work_dir;         // socket and data dir of the started daemon ("" = temp dir)
  bool keep_work_dir = false;
  int64_t host_capacity_mib = 2048;
  KvLayout layout = KvLayout::Llama3_8B();
  int64_t context = 32768;
  int32_t steps = 16;
  ClusterKvConfig config;
  std::string text_file;        // plain text; "" = Jane Austen's novels (r-cran-janeaustenr)
  uint64_t seed = 1;
  int threads = 0;
  std::string backend = "auto";
  std::string json_path;        // write the summary as JSON here ("" = no file)
  std::string tenant = "demo";
};

// Runs the demo, printing to `out` (progress and tables). OK only if every step succeeded and
// the daemon shut down cleanly.
absl::Status RunDemo(const DemoOptions& options, std::ostream& out);

}  // namespace clusterkv::demo

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_DEMO_DEMO_H_
