// The cluster peer token: one shared secret, read from --cluster_token_file, that
// every clusterkvd of a cluster presents to the others as `authorization: Bearer <token>`. A
// call carrying it is a peer daemon acting for the end tenant it names in `clusterkv-tenant`
// metadata: the daemon serves it from its local store only (no further routing). Presented
// tokens are compared by SHA-256 digest in constant time, as the tenants' tokens are
// (server/auth/credentials.h). The token grants every tenant: send it over TLS only.
//
// Immutable after creation; thread-safe.
#ifndef CLUSTERKV_SERVER_CLUSTER_PEER_AUTH_H_
#define CLUSTERKV_SERVER_CLUSTER_PEER_AUTH_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/credentials.h"

namespace clusterkv::server::cluster {

class PeerToken {
 public:
  // The first line of the file (surrounding whitespace ignored): at least 16 printable ASCII
  // characters without spaces. InvalidArgument for an unreadable file or a bad token.
  static absl::StatusOr<PeerToken> FromFile(const std::string& path);
  static absl::StatusOr<PeerToken> FromString(absl::string_view token);

  // What a peer call sends as `authorization` metadata.
  std::string AuthorizationValue() const { return "Bearer " + token_; }
  // The token itself (a client::Connection's bearer_token, for UCX pulls).
  const std::string& raw() const { return token_; }

  // The tenant of a call whose `authorization` metadata presents this token, or nullopt when it
  // does not (then the call is an ordinary client's). A peer call without a valid
  // `clusterkv-tenant` is INVALID_ARGUMENT.
  std::optional<absl::StatusOr<std::string>> Resolve(
      std::optional<absl::string_view> authorization,
      std::optional<absl::string_view> tenant_metadata) const;

 private:
  explicit PeerToken(std::string token);

  std::string token_;
  auth::Digest digest_;
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_PEER_AUTH_H_
