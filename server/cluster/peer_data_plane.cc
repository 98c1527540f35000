#include "server/cluster/peer_data_plane.h"

#if defined(CLUSTERKV_WITH_UCX)

#include <algorithm>
#include <memory>
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
    ASSIGN_OR_RETURN(std::shared_ptr<Session> session, SessionFor(node, address, tenant));
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

  size_t num_sessions() const override {
    absl::MutexLock lock(&mu_);
    return sessions_.size();
  }

 private:
  struct Session {
    absl::Mutex mu;  // one pull at a time: the region is reused
    std::string address;
    std::unique_ptr<client::Connection> connection ABSL_GUARDED_BY(mu);
    std::unique_ptr<client::UcxTransport> transport ABSL_GUARDED_BY(mu);
  };
  struct Slot {
    std::shared_ptr<Session> session;  // a pull in progress holds another reference
    uint64_t last_used = 0;
  };

  // The time of the injected clock (the system's when none is set).
  absl::Time Now() const {
    return options_.clock != nullptr ? options_.clock->Now() : SystemClock().Now();
  }

  // The live session with (node, tenant), opened on first use; Unavailable while a failed
  // attempt is recent.
  absl::StatusOr<std::shared_ptr<Session>> SessionFor(const std::string& node,
                                                      const std::string& address,
                                                      const std::string& tenant) {
    const std::string key = absl::StrCat(node, "\n", tenant);
    std::shared_ptr<Session> session;
    {
      absl::MutexLock lock(&mu_);
      if (auto failed = failed_until_.find(key);
          failed != failed_until_.end() && Now() < failed->second) {
        return absl::UnavailableError(
            absl::StrCat("node ", node, " recently refused a UCX session"));
      }
      Slot& slot = sessions_[key];
      if (slot.session == nullptr || slot.session->address != address) {
        // New, or the node restarted elsewhere (a pull still using the old one keeps it).
        slot.session = std::make_shared<Session>();
        slot.session->address = address;
      }
      slot.last_used = ++tick_;
      session = slot.session;
      EvictBeyondLimit();
    }
    absl::Status opened;
    {
      absl::MutexLock turn(&session->mu);
      if (session->transport == nullptr) opened = Open(*session, tenant);
    }
    if (!opened.ok()) {
      absl::MutexLock lock(&mu_);
      failed_until_[key] = Now() + options_.retry_after;
      if (auto it = sessions_.find(key); it != sessions_.end() && it->second.session == session) {
        sessions_.erase(it);
      }
      return absl::Status(opened.code(), absl::StrCat("UCX session with node ", node, ": ",
                                                      opened.message()));
    }
    return session;
  }

  // Drops the least recently used sessions while more than max_sessions are open. A dropped
  // session closes when the last pull holding it returns.
  void EvictBeyondLimit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (sessions_.size() > std::max<size_t>(1, options_.max_sessions)) {
      auto oldest = sessions_.begin();
      for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
        if (it->second.last_used < oldest->second.last_used) oldest = it;
      }
      sessions_.erase(oldest);
    }
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
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Slot> sessions_ ABSL_GUARDED_BY(mu_);  // key: node \n tenant
  absl::flat_hash_map<std::string, absl::Time> failed_until_ ABSL_GUARDED_BY(mu_);
  uint64_t tick_ ABSL_GUARDED_BY(mu_) = 0;
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
