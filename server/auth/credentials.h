// Credential files of the daemon's authentication:
//   - TokenTable: bearer tokens, hashed at rest. The tokens file holds one `tenant:<hex sha256 of
//     the token>` per line ('#' starts a comment; blank lines are skipped). A presented token is
//     hashed and compared with every entry in constant time, so neither the comparison nor the
//     number of entries examined depends on where (or whether) it matches.
//   - PeerTenantMap: Unix-socket peer uid -> tenant. The file holds one `uid:tenant` per line.
//     Without a file every uid is admitted as tenant "uid-<uid>"; with one, unknown uids are
//     refused.
// Both are immutable after parsing and thread-safe to read.
//
// Example:
//   ASSIGN_OR_RETURN(TokenTable tokens, TokenTable::Parse(file_text));
//   std::optional<std::string> tenant = tokens.Lookup(presented_token);
#ifndef CLUSTERKV_SERVER_AUTH_CREDENTIALS_H_
#define CLUSTERKV_SERVER_AUTH_CREDENTIALS_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::server::auth {

using Digest = std::array<uint8_t, 32>;  // SHA-256

// SHA-256 of `data` (OpenSSL).
Digest Sha256(absl::string_view data);
// Lower-case hex of a digest (64 characters), as the tokens file writes it.
std::string ToHex(const Digest& digest);
// True when a == b; the time taken does not depend on where they differ.
bool ConstantTimeEqual(const Digest& a, const Digest& b);

// Tenant names in credential files: 1-128 bytes, no control characters, no ':' (the files'
// separator). InvalidArgument otherwise.
absl::Status ValidateTenantName(absl::string_view tenant);

class TokenTable {
 public:
  // InvalidArgument naming the first bad line (1-based): missing ':', bad tenant, a digest
  // that is not 64 hex digits, or a digest listed twice.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text);

  // The tenant of `token`, or nullopt when no entry matches. Examines every entry.
  std::optional<std::string> Lookup(absl::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string tenant;
    Digest digest;
  };
  std::vector<Entry> entries_;
};

class PeerTenantMap {
 public:
  // No file: every uid maps to "uid-<uid>".
  PeerTenantMap() = default;
  // InvalidArgument naming the first bad line: a uid that is not a decimal number below 2^32-1,
  // a bad tenant, or a uid listed twice.
  static absl::StatusOr<PeerTenantMap> Parse(absl::string_view text);

  // The tenant of `uid`, or nullopt when a file was given and does not list it.
  std::optional<std::string> TenantOf(uid_t uid) const;

 private:
  bool from_file_ = false;
  absl::flat_hash_map<uid_t, std::string> tenants_;
};

}  // namespace clusterkv::server::auth

#endif  // CLUSTERKV_SERVER_AUTH_CREDENTIALS_H_
