#include "server/cluster/cluster_keys.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace clusterkv::server::cluster {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

absl::Status ValidateName(absl::string_view what, absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 1-64 characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", name, "' may only hold letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string EscapeComponent(absl::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    const auto u = static_cast<unsigned char>(c);
    if (u > 0x20 && u < 0x7f && c != '%' && c != '/') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

absl::StatusOr<std::string> UnescapeComponent(absl::string_view escaped) {
  std::string out;
  out.reserve(escaped.size());
  for (size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] != '%') {
      out.push_back(escaped[i]);
      continue;
    }
    if (i + 2 >= escaped.size()) {
      return absl::InvalidArgumentError("truncated %-escape in a cluster key");
    }
    const int hi = HexValue(escaped[i + 1]);
    const int lo = HexValue(escaped[i + 2]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad %-escape in a cluster key");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

ClusterKeys::ClusterKeys(std::string cluster)
    : cluster_(std::move(cluster)), root_(absl::StrCat("/clusterkv/", cluster_, "/")) {}

std::string ClusterKeys::NodesPrefix() const { return root_ + "nodes/"; }
std::string ClusterKeys::Node(absl::string_view node_id) const {
  return absl::StrCat(NodesPrefix(), node_id);
}
std::string ClusterKeys::SequencesPrefix() const { return root_ + "seq/"; }
std::string ClusterKeys::TenantPrefix(absl::string_view tenant) const {
  return absl::StrCat(SequencesPrefix(), EscapeComponent(tenant), "/");
}
std::string ClusterKeys::Sequence(const SequenceKey& key) const {
  return absl::StrCat(TenantPrefix(key.tenant), EscapeComponent(key.sequence));
}
std::string ClusterKeys::Joined(absl::string_view node_id) const {
  return absl::StrCat(root_, "joined/", node_id);
}

absl::StatusOr<SequenceKey> ClusterKeys::ParseSequence(absl::string_view key) const {
  const std::string prefix = SequencesPrefix();
  if (!absl::StartsWith(key, prefix)) {
    return absl::InvalidArgumentError(absl::StrCat("'", key, "' is not a sequence key"));
  }
  const absl::string_view rest = key.substr(prefix.size());
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos || rest.find('/', slash + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", key, "' is not a sequence key"));
  }
  SequenceKey out;
  ASSIGN_OR_RETURN(out.tenant, UnescapeComponent(rest.substr(0, slash)));
  ASSIGN_OR_RETURN(out.sequence, UnescapeComponent(rest.substr(slash + 1)));
  RETURN_IF_ERROR(out.Validate());
  return out;
}

absl::StatusOr<std::string> ClusterKeys::ParseNode(absl::string_view key) const {
  const std::string prefix = NodesPrefix();
  if (!absl::StartsWith(key, prefix)) {
    return absl::InvalidArgumentError(absl::StrCat("'", key, "' is not a node key"));
  }
  std::string id(key.substr(prefix.size()));
  RETURN_IF_ERROR(ValidateName("node id", id));
  return id;
}

}  // namespace clusterkv::server::cluster
