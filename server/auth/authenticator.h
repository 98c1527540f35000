// Authenticator: decides the tenant of each call from its credentials (DESIGN.md
// section 8, decision D13).
//
// Modes (--auth):
//   kPeerCred (default): Unix-socket connections are accepted by the daemon's own listener
//     (unix_listener.h), which reads the peer's uid (SO_PEERCRED) and maps it to a tenant
//     (PeerTenantMap) before handing the connection to gRPC; AdmitPeer() records the
//     connection's tenant under its gRPC peer string ("fd:<n>"). A call on such a connection
//     may also carry a bearer token; a valid one selects the token's tenant, a bad one is
//     refused. Calls from any other peer (TCP) need a valid bearer token.
//   kToken: every call needs `authorization: Bearer <token>` metadata naming a token of the
//     tokens file.
//   kNone: the `clusterkv-tenant` metadata names the tenant ("default" when absent). Nothing is
//     authenticated; for tests only.
// In kPeerCred and kToken the `clusterkv-tenant` metadata is ignored: the credential decides.
// Missing and wrong credentials both answer UNAUTHENTICATED with the same message, so a caller
// never learns which part failed.
//
// Thread-safe: the credential tables are immutable; the connection map has its own mutex.
#ifndef CLUSTERKV_SERVER_AUTH_AUTHENTICATOR_H_
#define CLUSTERKV_SERVER_AUTH_AUTHENTICATOR_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/credentials.h"

namespace clusterkv::server::auth {

enum class AuthMode { kPeerCred, kToken, kNone };

// "peercred", "token" or "none"; InvalidArgument otherwise.
absl::StatusOr<AuthMode> ParseAuthMode(absl::string_view text);
absl::string_view AuthModeName(AuthMode mode);

// What a call presents; the transport extracts it from the call.
struct CallCredentials {
  absl::string_view peer;                            // gRPC peer string, e.g. "fd:12", "ipv4:..."
  std::optional<absl::string_view> authorization;    // the `authorization` metadata, if any
  std::optional<absl::string_view> tenant_metadata;  // `clusterkv-tenant`, used by kNone only
};

class Authenticator {
 public:
  Authenticator(AuthMode mode, TokenTable tokens, PeerTenantMap peers);

  AuthMode mode() const { return mode_; }

  // A Unix-socket connection (fd `fd`, peer uid `uid`) arrived. Records its tenant and returns
  // true, or returns false when the uid maps to no tenant (the caller then closes it).
  bool AdmitPeer(int fd, uid_t uid);

  // The caller's tenant. UNAUTHENTICATED without valid credentials; INVALID_ARGUMENT for an
  // empty tenant metadata in kNone.
  absl::StatusOr<std::string> Resolve(const CallCredentials& call) const;

  // The gRPC peer string of a connection handed over as fd `fd`.
  static std::string FdPeer(int fd);

 private:
  // The tenant of a bearer token in `authorization`, or nullopt when it is malformed or unknown.
  std::optional<std::string> TokenTenant(absl::string_view authorization) const;

  const AuthMode mode_;
  const TokenTable tokens_;
  const PeerTenantMap peers_;
  mutable absl::Mutex mu_;
  // Peer string -> tenant of each admitted Unix-socket connection. A fd number is reused only
  // after gRPC closed the connection, which a call in flight prevents, so an entry overwritten
  // by a later connection never serves a call of the earlier one.
  absl::flat_hash_map<std::string, std::string> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server::auth

#endif  // CLUSTERKV_SERVER_AUTH_AUTHENTICATOR_H_
