// EtcdClient: a small typed client of etcd's v3 API through its HTTP/JSON gateway (etcd 3.4
// serves it under /v3/: kv/range, kv/put, kv/txn, kv/deleterange, lease/grant,
// lease/keepalive, lease/revoke; keys and values travel base64-encoded, int64s as strings).
// Cluster mode keeps its shared state here: membership under leases, and the
// sequence directory written with transactions.
//
// The HTTP round trip sits behind EtcdTransport so tests can wrap the real one with faults;
// MakeHttpEtcdTransport() is the production one (cpp-httplib, keep-alive connections).
//
// Errors: Unavailable when etcd cannot be reached (or answers a 5xx / gRPC UNAVAILABLE);
// NotFound for an unknown lease; InvalidArgument for a request etcd refuses; Internal for a
// response that is not the JSON etcd documents.
//
// Thread-safe: the client is stateless; the HTTP transport keeps a mutex-guarded pool of
// connections, one per concurrent caller.
//
// Example:
//   ASSIGN_OR_RETURN(auto transport, MakeHttpEtcdTransport({.endpoint = "http://127.0.0.1:2379"}));
//   EtcdClient etcd(std::move(transport));
//   ASSIGN_OR_RETURN(EtcdLease lease, etcd.LeaseGrant(absl::Seconds(2)));
//   ASSIGN_OR_RETURN(bool mine, etcd.PutIfAbsent("/x/owner", "node-1", lease.id));
#ifndef CLUSTERKV_SERVER_CLUSTER_ETCD_CLIENT_H_
#define CLUSTERKV_SERVER_CLUSTER_ETCD_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace clusterkv::server::cluster {

// One HTTP POST of a JSON body to the gateway. Returns the response body of a 2xx answer;
// otherwise the error etcd reported (see the file comment for the codes).
class EtcdTransport {
 public:
  virtual ~EtcdTransport() = default;
  // `path` is e.g. "/v3/kv/put".
  virtual absl::StatusOr<std::string> Post(absl::string_view path, absl::string_view body) = 0;
};

struct HttpEtcdOptions {
  // "http://host:port" of one etcd member (TLS to etcd is not supported yet).
  std::string endpoint;
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration request_timeout = absl::Seconds(5);
};

// InvalidArgument for an endpoint that is not http://host:port.
absl::StatusOr<std::unique_ptr<EtcdTransport>> MakeHttpEtcdTransport(const HttpEtcdOptions& options);

using EtcdLeaseId = int64_t;

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // the revision that created the key: its incarnation
  int64_t mod_revision = 0;     // the revision of its last write
  int64_t version = 0;
  EtcdLeaseId lease = 0;  // 0: none
};

struct EtcdLease {
  EtcdLeaseId id = 0;
  absl::Duration ttl;  // as granted (or, after KeepAlive, as renewed)
};

// A comparison of an etcd transaction: the key's create or mod revision equals `revision`.
// create_revision == 0 means "the key does not exist".
struct EtcdCompare {
  enum class Target { kCreateRevision, kModRevision };
  std::string key;
  Target target = Target::kCreateRevision;
  int64_t revision = 0;
};

// One operation of a transaction branch.
struct EtcdOp {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kGet;
  std::string key;
  std::string value;      // kPut
  EtcdLeaseId lease = 0;  // kPut; 0: none
};

struct EtcdTxn {
  std::vector<EtcdCompare> compares;  // all must hold (AND)
  std::vector<EtcdOp> success;
  std::vector<EtcdOp> failure;
};

struct EtcdTxnResult {
  bool succeeded = false;
  int64_t revision = 0;
  // The key-values of the kGet ops of the branch that ran, in order (absent keys: nullopt).
  std::vector<std::optional<EtcdKeyValue>> gets;
};

class EtcdClient {
 public:
  explicit EtcdClient(std::unique_ptr<EtcdTransport> transport);

  // Writes `value` under `key` (attached to `lease` unless 0); returns the new revision.
  // NotFound when the lease has expired.
  absl::StatusOr<int64_t> Put(absl::string_view key, absl::string_view value,
                              EtcdLeaseId lease = 0);
  // The key, or nullopt when absent.
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(absl::string_view key);
  // Every key starting with `prefix`, in key order (prefix must not be empty).
  absl::StatusOr<std::vector<EtcdKeyValue>> Range(absl::string_view prefix);
  // Deletes `key`; returns how many keys were deleted (0 or 1).
  absl::StatusOr<int64_t> Delete(absl::string_view key);

  absl::StatusOr<EtcdTxnResult> Txn(const EtcdTxn& txn);
  // Creates `key` only if it does not exist (compare create_revision == 0): true when this call
  // created it. The common claim of cluster mode.
  absl::StatusOr<bool> PutIfAbsent(absl::string_view key, absl::string_view value,
                                   EtcdLeaseId lease = 0);

  // InvalidArgument unless ttl is at least one second (etcd's granularity).
  absl::StatusOr<EtcdLease> LeaseGrant(absl::Duration ttl);
  // Renews the lease; returns its TTL. NotFound when it has expired (or was revoked).
  absl::StatusOr<absl::Duration> KeepAlive(EtcdLeaseId lease);
  // Revokes the lease, deleting its keys. NotFound when it has already expired.
  absl::Status Revoke(EtcdLeaseId lease);

 private:
  absl::StatusOr<std::string> Call(absl::string_view path, const std::string& body);

  std::unique_ptr<EtcdTransport> transport_;
};

// The first key after every key starting with `prefix` (etcd's range_end of a prefix scan).
std::string PrefixRangeEnd(absl::string_view prefix);

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_ETCD_CLIENT_H_
