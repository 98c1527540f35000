#include "server/cluster/peer_data_plane.h"

#if defined(CLUSTERKV_WITH_UCX)

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/connection.h"
#include "client/ucx_transport.h"
#include "core/status_macros.h"

namespace clusterkv::server::cluster {
namespace {

// Entries per request: a region's worth of slots, bounded like a client's batch.
constexpr size_t kMaxBatch = 256;

class UcxPeerDataPlane final : public PeerDataPlane {
 public:
  explicit UcxPeerDataPlane(const PeerDataPlaneOptions& options) : options_(options) {}

  absl::StatusOr<std::vector<ClusterId>> Pull(const std::string& node, const std::string& address,
                                              const std::string& tenant,
                                              const std::string& sequence,
                                              absl::Span<const ClusterId> clusters,
                                              const BlockSink& sink) override {
    ASSIGN_OR_RETURN(Session * session, SessionFor(node, address, tenant));
    absl::MutexLock turn(&session->mu);
    if (session->transport == nullptr) {
      return absl::UnavailableError(absl::StrCat("no UCX session with node ", node));
    }
    const uint32_t slot = options_.slot_bytes;
    const size_t per_batch =
        std::max<size_t>(1, std::min(kMaxBatch, session->transport->region_bytes() / slot));
    std::vector<ClusterId> left;
    std::vector<client::DirectFetch> batch;
    for (size_t first = 0; first < clusters.size(); first += per_batch) {
      const size_t n = std::min(per_batch, clusters.size() - first);
      batch.clear();
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(client::DirectFetch{clusters[first + i], uint64_t{slot} * i, 0});
      }
      absl::StatusOr<std::vector<client::DirectFetchResult>> results =
          session->transport->FetchBlocksInto(sequence, batch, slot);
      if (!results.ok()) {
        return absl::Status(results.status().code(),
                            absl::StrCat("UCX pull from node ", node, ": ",
                                         results.status().message()));
      }
      for (size_t i = 0; i < n; ++i) {
        const client::DirectFetchResult& r = (*results)[i];
        if (!r.status.ok() || r.bytes == 0 || r.bytes > slot) {
          left.push_back(batch[i].id);
          continue;
        }
        const uint8_t* data = session->transport->region_base() + uint64_t{slot} * i;
        RETURN_IF_ERROR(sink(batch[i].id, r.num_tokens, absl::MakeConstSpan(data, r.bytes)));
      }
    }
    return left;
  }

 private:
  struct Session {
    absl::Mutex mu;  // one pull at a time: the region is reused
    std::string address;
    std::unique_ptr<client::Connection> connection ABSL_GUARDED_BY(mu);
    std::unique_ptr<client::UcxTransport> transport ABSL_GUARDED_BY(mu);
  };

  // The live session with (node, tenant), opened on first use; Unavailable while a failed
  // attempt is recent.
  absl::StatusOr<Session*> SessionFor(const std::string& node, const std::string& address,
                                      const std::string& tenant) {
    Session* session = nullptr;
    {
      absl::MutexLock lock(&mu_);
      const std::string key = absl::StrCat(node, "\n", tenant);
      if (auto failed = failed_until_.find(key);
          failed != failed_until_.end() && absl::Now() < failed->second) {
        return absl::UnavailableError(
            absl::StrCat("node ", node, " recently refused a UCX session"));
      }
      std::unique_ptr<Session>& slot = sessions_[key];
      if (slot != nullptr && slot->address != address) {
        retired_.push_back(std::move(slot));  // the node restarted elsewhere
      }
      if (slot == nullptr) {
        slot = std::make_unique<Session>();
        slot->address = address;
      }
      session = slot.get();
    }
    absl::Status opened;
    {
      absl::MutexLock turn(&session->mu);
      if (session->transport == nullptr) opened = Open(*session, tenant);
    }
    if (!opened.ok()) {
      absl::MutexLock lock(&mu_);
      failed_until_[absl::StrCat(node, "\n", tenant)] = absl::Now() + options_.retry_after;
      return absl::Status(opened.code(), absl::StrCat("UCX session with node ", node, ": ",
                                                      opened.message()));
    }
    return session;
  }

  absl::Status Open(Session& session, const std::string& tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(session.mu) {
    client::ConnectionOptions co;
    co.target = session.address;
    co.tenant = tenant;
    co.bearer_token = options_.bearer_token;
    co.tls_root_cert_file = options_.tls_root_cert_file;
    co.tls_target_name_override = options_.tls_target_name;
    co.call_timeout = options_.timeout;
    co.retry.max_attempts = 1;
    ASSIGN_OR_RETURN(std::unique_ptr<client::Connection> connection,
                     client::Connection::Create(co));
    client::UcxTransportOptions uo;
    uo.transports = options_.transports;
    uo.region_bytes = options_.region_bytes;
    uo.fetch_timeout = options_.timeout;
    uo.fetch_spin = options_.spin;
    ASSIGN_OR_RETURN(std::unique_ptr<client::UcxTransport> transport,
                     client::UcxTransport::Create(connection.get(), uo));
    RETURN_IF_ERROR(transport->Connect());
    session.connection = std::move(connection);
    session.transport = std::move(transport);
    return absl::OkStatus();
  }

  const PeerDataPlaneOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> failed_until_ ABSL_GUARDED_BY(mu_);
  // Sessions of a node's previous address: a pull may still be using one.
  std::vector<std::unique_ptr<Session>> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<PeerDataPlane>> PeerDataPlane::Create(
    const PeerDataPlaneOptions& options) {
  if (options.slot_bytes == 0 || options.region_bytes < options.slot_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the UCX pull region (", options.region_bytes,
                     " bytes) must hold at least one slot of ", options.slot_bytes, " bytes"));
  }
  return std::unique_ptr<PeerDataPlane>(new UcxPeerDataPlane(options));
}

}  // namespace clusterkv::server::cluster

#else  // !CLUSTERKV_WITH_UCX

namespace clusterkv::server::cluster {

absl::StatusOr<std::unique_ptr<PeerDataPlane>> PeerDataPlane::Create(
    const PeerDataPlaneOptions&) {
  return absl::UnimplementedError("this clusterkvd was built without UCX");
}

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_WITH_UCX
