#include "server/cluster/peer_auth.h"

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/ids.h"

namespace clusterkv::server::cluster {

PeerToken::PeerToken(std::string token) : token_(std::move(token)), digest_(auth::Sha256(token_)) {}

absl::StatusOr<PeerToken> PeerToken::FromString(absl::string_view token) {
  token = absl::StripAsciiWhitespace(token);
  if (token.size() < 16 || token.size() > 4096) {
    return absl::InvalidArgumentError("the cluster token must be 16-4096 characters");
  }
  for (char c : token) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return absl::InvalidArgumentError(
          "the cluster token must be printable ASCII without spaces");
    }
  }
  return PeerToken(std::string(token));
}

absl::StatusOr<PeerToken> PeerToken::FromFile(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the cluster token file ", path));
  }
  absl::StatusOr<PeerToken> token = FromString(line);
  if (!token.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", token.status().message()));
  }
  return token;
}

std::optional<absl::StatusOr<std::string>> PeerToken::Resolve(
    std::optional<absl::string_view> authorization,
    std::optional<absl::string_view> tenant_metadata) const {
  constexpr absl::string_view kScheme = "bearer ";
  if (!authorization || authorization->size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization->substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  const absl::string_view presented =
      absl::StripAsciiWhitespace(authorization->substr(kScheme.size()));
  if (!auth::ConstantTimeEqual(auth::Sha256(presented), digest_)) return std::nullopt;
  if (!tenant_metadata) {
    return absl::StatusOr<std::string>(
        absl::InvalidArgumentError("a peer call must name its tenant (clusterkv-tenant)"));
  }
  SequenceKey probe{std::string(*tenant_metadata), "x"};
  if (absl::Status s = probe.Validate(); !s.ok()) return absl::StatusOr<std::string>(s);
  return absl::StatusOr<std::string>(std::string(*tenant_metadata));
}

}  // namespace clusterkv::server::cluster
