// Client options for integration tests: a small, fast ClusterKV configuration (4 sinks, layer
// 0 dense, 4 K-means iterations, 2 clusters per re-clustering, one compute thread) that each
// test then adjusts to the shape it exercises.
#ifndef CLUSTERKV_TESTS_INTEGRATION_SMALL_CLIENT_OPTIONS_H_
#define CLUSTERKV_TESTS_INTEGRATION_SMALL_CLIENT_OPTIONS_H_

#include <string>

#include "client/client.h"

namespace clusterkv::testing {

inline client::ClientOptions SmallClientOptions(const std::string& target,
                                                const std::string& tenant,
                                                const std::string& data_plane) {
  client::ClientOptions o;
  o.target = target;
  o.tenant = tenant;
  o.data_plane = data_plane;
  o.threads = 1;
  o.config.num_sink_tokens = 4;
  o.config.dense_layers = {0};
  o.config.kmeans_iterations = 4;
  o.config.clusters_per_recluster = 2;
  return o;
}

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_INTEGRATION_SMALL_CLIENT_OPTIONS_H_
