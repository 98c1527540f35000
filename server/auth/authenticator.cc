#include "server/auth/authenticator.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace clusterkv::server::auth {
namespace {

absl::Status Unauthenticated() {
  return absl::UnauthenticatedError("the call carries no valid credentials for this daemon");
}

}  // namespace

absl::StatusOr<AuthMode> ParseAuthMode(absl::string_view text) {
  if (text == "peercred") return AuthMode::kPeerCred;
  if (text == "token") return AuthMode::kToken;
  if (text == "none") return AuthMode::kNone;
  return absl::InvalidArgumentError("--auth must be peercred, token or none");
}

absl::string_view AuthModeName(AuthMode mode) {
  switch (mode) {
    case AuthMode::kPeerCred:
      return "peercred";
    case AuthMode::kToken:
      return "token";
    case AuthMode::kNone:
      return "none";
  }
  return "?";
}

Authenticator::Authenticator(AuthMode mode, TokenTable tokens, PeerTenantMap peers)
    : mode_(mode), tokens_(std::move(tokens)), peers_(std::move(peers)) {}

std::string Authenticator::FdPeer(int fd) { return absl::StrCat("fd:", fd); }

bool Authenticator::AdmitPeer(int fd, uid_t uid) {
  std::optional<std::string> tenant = peers_.TenantOf(uid);
  absl::MutexLock lock(&mu_);
  if (!tenant) {
    connections_.erase(FdPeer(fd));
    return false;
  }
  connections_[FdPeer(fd)] = *std::move(tenant);
  return true;
}

std::optional<std::string> Authenticator::TokenTenant(absl::string_view authorization) const {
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  const absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  if (token.empty()) return std::nullopt;
  return tokens_.Lookup(token);
}

absl::StatusOr<std::string> Authenticator::Resolve(const CallCredentials& call) const {
  switch (mode_) {
    case AuthMode::kNone: {
      if (!call.tenant_metadata) return std::string("default");
      if (call.tenant_metadata->empty()) {
        return absl::InvalidArgumentError("the clusterkv-tenant metadata is empty");
      }
      return std::string(*call.tenant_metadata);
    }
    case AuthMode::kToken: {
      if (!call.authorization) return Unauthenticated();
      std::optional<std::string> tenant = TokenTenant(*call.authorization);
      if (!tenant) return Unauthenticated();
      return *std::move(tenant);
    }
    case AuthMode::kPeerCred: {
      if (call.authorization) {  // a token, if presented, must be valid, and then decides
        std::optional<std::string> tenant = TokenTenant(*call.authorization);
        if (!tenant) return Unauthenticated();
        return *std::move(tenant);
      }
      if (!absl::StartsWith(call.peer, "fd:")) return Unauthenticated();
      absl::MutexLock lock(&mu_);
      auto it = connections_.find(call.peer);
      if (it == connections_.end()) return Unauthenticated();
      return it->second;
    }
  }
  return Unauthenticated();
}

}  // namespace clusterkv::server::auth
