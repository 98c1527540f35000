#include "server/auth/credentials.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace clusterkv::server::auth {
namespace {

// Calls `line_fn(line_number, content)` for every line that is neither blank nor a comment.
template <typename Fn>
absl::Status ForEachLine(absl::string_view text, Fn line_fn) {
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    absl::Status s = line_fn(number, absl::string_view(line.data(), line.size()));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::optional<Digest> ParseHexDigest(absl::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest digest;
  for (size_t i = 0; i < digest.size(); ++i) {
    int byte = 0;
    for (char c : hex.substr(2 * i, 2)) {
      int v;
      if (c >= '0' && c <= '9') {
        v = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v = c - 'A' + 10;
      } else {
        return std::nullopt;
      }
      byte = byte * 16 + v;
    }
    digest[i] = static_cast<uint8_t>(byte);
  }
  return digest;
}

}  // namespace

Digest Sha256(absl::string_view data) {
  Digest digest;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  return digest;
}

std::string ToHex(const Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest.size());
  for (uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

bool ConstantTimeEqual(const Digest& a, const Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::Status ValidateTenantName(absl::string_view tenant) {
  if (tenant.empty() || tenant.size() > 128) {
    return absl::InvalidArgumentError("tenant must be 1-128 bytes");
  }
  for (char c : tenant) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ':') {
      return absl::InvalidArgumentError("tenant contains ':' or a control character");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text) {
  TokenTable table;
  absl::Status parsed = ForEachLine(text, [&](int number, absl::string_view line) -> absl::Status {
    const size_t colon = line.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file line ", number, ": expected tenant:<hex sha256>"));
    }
    const absl::string_view tenant = absl::StripAsciiWhitespace(line.substr(0, colon));
    const absl::string_view hex = absl::StripAsciiWhitespace(line.substr(colon + 1));
    absl::Status name = ValidateTenantName(tenant);
    if (!name.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file line ", number, ": ", name.message()));
    }
    std::optional<Digest> digest = ParseHexDigest(hex);
    if (!digest) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokens file line ", number, ": the digest must be 64 hex digits (sha256 of the token)"));
    }
    for (const Entry& e : table.entries_) {
      if (e.digest == *digest) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokens file line ", number, ": this token digest is listed twice"));
      }
    }
    table.entries_.push_back(Entry{std::string(tenant), *digest});
    return absl::OkStatus();
  });
  if (!parsed.ok()) return parsed;
  return table;
}

std::optional<std::string> TokenTable::Lookup(absl::string_view token) const {
  const Digest presented = Sha256(token);
  const Entry* match = nullptr;
  for (const Entry& e : entries_) {  // no early exit: every entry is compared
    const bool equal = ConstantTimeEqual(presented, e.digest);
    if (equal && match == nullptr) match = &e;
  }
  if (match == nullptr) return std::nullopt;
  return match->tenant;
}

absl::StatusOr<PeerTenantMap> PeerTenantMap::Parse(absl::string_view text) {
  PeerTenantMap map;
  map.from_file_ = true;
  absl::Status parsed = ForEachLine(text, [&](int number, absl::string_view line) -> absl::Status {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer tenants file line ", number, ": expected uid:tenant"));
    }
    const absl::string_view uid_text = absl::StripAsciiWhitespace(line.substr(0, colon));
    const absl::string_view tenant = absl::StripAsciiWhitespace(line.substr(colon + 1));
    uint32_t uid = 0;
    if (uid_text.empty() || uid_text.front() == '+' || uid_text.front() == '-' ||
        !absl::SimpleAtoi(uid_text, &uid) || uid == static_cast<uint32_t>(-1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer tenants file line ", number, ": bad uid '", uid_text, "'"));
    }
    absl::Status name = ValidateTenantName(tenant);
    if (!name.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer tenants file line ", number, ": ", name.message()));
    }
    if (!map.tenants_.emplace(static_cast<uid_t>(uid), std::string(tenant)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer tenants file line ", number, ": uid ", uid, " is listed twice"));
    }
    return absl::OkStatus();
  });
  if (!parsed.ok()) return parsed;
  return map;
}

std::optional<std::string> PeerTenantMap::TenantOf(uid_t uid) const {
  if (!from_file_) return absl::StrCat("uid-", uid);
  auto it = tenants_.find(uid);
  if (it == tenants_.end()) return std::nullopt;
  return it->second;
}

}  // namespace clusterkv::server::auth
