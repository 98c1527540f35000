// ucx_fetch_storm TARGET TENANT SEQUENCE CLUSTERS: recalls clusters [0, CLUSTERS) of layer 0,
// head 0 over the UCX data plane in a loop until killed. Prints "ready" once the first recall
// succeeded. The fault test runs it as a child process and kills it with SIGKILL mid-storm.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/connection.h"
#include "client/ucx_transport.h"
#include "storage/cluster_block.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s TARGET TENANT SEQUENCE CLUSTERS\n", argv[0]);
    return 2;
  }
  using namespace clusterkv;  // NOLINT: a test helper's main
  client::ConnectionOptions conn;
  conn.target = argv[1];
  conn.tenant = argv[2];
  const std::string sequence = argv[3];
  const int clusters = std::atoi(argv[4]);
  auto connection = client::Connection::Create(conn);
  if (!connection.ok()) return 1;
  client::UcxTransportOptions options;
  options.region_bytes = size_t{8} << 20;
  auto transport = client::UcxTransport::Create(connection->get(), options);
  if (!transport.ok()) {
    std::fprintf(stderr, "%s\n", transport.status().ToString().c_str());
    return 1;
  }
  const size_t payload = storage::ClusterBlockBytes(64, 128, DType::kFloat16) - 64 * 4;
  std::vector<client::DirectFetch> requests;
  for (int i = 0; i < clusters; ++i) {
    requests.push_back(client::DirectFetch{ClusterId{HeadId{0, 0}, i}, i * payload, 64});
  }
  bool ready = false;
  for (;;) {
    auto results = (*transport)->FetchInto(sequence, requests);
    if (!results.ok()) {
      std::fprintf(stderr, "%s\n", results.status().ToString().c_str());
      return 1;
    }
    if (!ready) {
      std::printf("ready\n");
      std::fflush(stdout);
      ready = true;
    }
  }
}
