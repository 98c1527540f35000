#include "server/cluster/directory.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace clusterkv::server::cluster {
namespace {

using nlohmann::json;

absl::StatusOr<DirectoryEntry> FromKeyValue(const EtcdKeyValue& kv) {
  ASSIGN_OR_RETURN(DirectoryEntry entry, DecodeDirectoryEntry(kv.value));
  entry.incarnation = kv.create_revision;
  entry.mod_revision = kv.mod_revision;
  return entry;
}

}  // namespace

std::vector<std::string> DirectoryEntry::Holders() const {
  std::vector<std::string> holders = {owner};
  holders.insert(holders.end(), replicas.begin(), replicas.end());
  return holders;
}

bool DirectoryEntry::Holds(absl::string_view node) const {
  return owner == node || std::find(replicas.begin(), replicas.end(), node) != replicas.end();
}

std::string EncodeDirectoryEntry(const DirectoryEntry& entry) {
  const KvLayout& l = entry.layout;
  return json{{"owner", entry.owner},
              {"replicas", entry.replicas},
              {"layout",
               {{"num_layers", l.num_layers},
                {"num_q_heads", l.num_q_heads},
                {"num_kv_heads", l.num_kv_heads},
                {"head_dim", l.head_dim},
                {"dtype", std::string(DTypeName(l.dtype))}}}}
      .dump();
}

absl::StatusOr<DirectoryEntry> DecodeDirectoryEntry(absl::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("not a directory entry: ", text.substr(0, 200)));
  };
  if (!j.is_object()) return bad();
  auto owner = j.find("owner");
  auto replicas = j.find("replicas");
  auto layout = j.find("layout");
  if (owner == j.end() || !owner->is_string() || replicas == j.end() || !replicas->is_array() ||
      layout == j.end() || !layout->is_object()) {
    return bad();
  }
  DirectoryEntry entry;
  entry.owner = owner->get<std::string>();
  RETURN_IF_ERROR(ValidateName("owner node id", entry.owner));
  for (const json& r : *replicas) {
    if (!r.is_string()) return bad();
    entry.replicas.push_back(r.get<std::string>());
    RETURN_IF_ERROR(ValidateName("replica node id", entry.replicas.back()));
  }
  const auto i32 = [&](const char* name, int32_t* out) {
    auto it = layout->find(name);
    if (it == layout->end() || !it->is_number_integer()) return false;
    const int64_t v = it->get<int64_t>();
    if (v < 0 || v > (int64_t{1} << 30)) return false;
    *out = static_cast<int32_t>(v);
    return true;
  };
  auto dtype = layout->find("dtype");
  if (!i32("num_layers", &entry.layout.num_layers) ||
      !i32("num_q_heads", &entry.layout.num_q_heads) ||
      !i32("num_kv_heads", &entry.layout.num_kv_heads) ||
      !i32("head_dim", &entry.layout.head_dim) || dtype == layout->end() ||
      !dtype->is_string()) {
    return bad();
  }
  ASSIGN_OR_RETURN(entry.layout.dtype, ParseDType(dtype->get<std::string>()));
  RETURN_IF_ERROR(entry.layout.Validate());
  return entry;
}

absl::StatusOr<std::optional<DirectoryEntry>> Directory::Lookup(const SequenceKey& key) {
  ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> kv, etcd_->Get(keys_->Sequence(key)));
  if (!kv.has_value()) return std::optional<DirectoryEntry>();
  ASSIGN_OR_RETURN(DirectoryEntry entry, FromKeyValue(*kv));
  return std::optional<DirectoryEntry>(std::move(entry));
}

absl::StatusOr<Directory::ClaimResult> Directory::Claim(const SequenceKey& key,
                                                        const DirectoryEntry& entry) {
  const std::string k = keys_->Sequence(key);
  EtcdTxn txn;
  txn.compares.push_back({k, EtcdCompare::Target::kCreateRevision, 0});
  txn.success.push_back({EtcdOp::Kind::kPut, k, EncodeDirectoryEntry(entry), 0});
  txn.success.push_back({EtcdOp::Kind::kGet, k, "", 0});
  txn.failure.push_back({EtcdOp::Kind::kGet, k, "", 0});
  ASSIGN_OR_RETURN(EtcdTxnResult result, etcd_->Txn(txn));
  if (result.gets.size() != 1 || !result.gets[0].has_value()) {
    // Claimed and deleted (or deleted and not claimed) between the txn's ops cannot happen
    // inside one txn; an answer without the entry is etcd misbehaving.
    return absl::InternalError("etcd: the claimed directory entry is missing");
  }
  ClaimResult out;
  out.claimed = result.succeeded;
  ASSIGN_OR_RETURN(out.entry, FromKeyValue(*result.gets[0]));
  return out;
}

absl::StatusOr<bool> Directory::TakeOver(const SequenceKey& key, const DirectoryEntry& seen,
                                         const std::string& new_owner) {
  if (!seen.Holds(new_owner) || seen.owner == new_owner) {
    return absl::InvalidArgumentError(
        absl::StrCat(new_owner, " is not a replica of this sequence"));
  }
  DirectoryEntry next = seen;
  next.owner = new_owner;
  next.replicas.erase(std::remove(next.replicas.begin(), next.replicas.end(), new_owner),
                      next.replicas.end());
  const std::string k = keys_->Sequence(key);
  EtcdTxn txn;
  txn.compares.push_back({k, EtcdCompare::Target::kModRevision, seen.mod_revision});
  txn.compares.push_back({keys_->Node(seen.owner), EtcdCompare::Target::kCreateRevision, 0});
  txn.success.push_back({EtcdOp::Kind::kPut, k, EncodeDirectoryEntry(next), 0});
  ASSIGN_OR_RETURN(EtcdTxnResult result, etcd_->Txn(txn));
  return result.succeeded;
}

absl::StatusOr<bool> Directory::AddReplica(const SequenceKey& key, const DirectoryEntry& seen,
                                           const std::string& replica) {
  if (seen.Holds(replica)) {
    return absl::InvalidArgumentError(absl::StrCat(replica, " already holds this sequence"));
  }
  DirectoryEntry next = seen;
  next.replicas.push_back(replica);
  const std::string k = keys_->Sequence(key);
  EtcdTxn txn;
  txn.compares.push_back({k, EtcdCompare::Target::kModRevision, seen.mod_revision});
  txn.success.push_back({EtcdOp::Kind::kPut, k, EncodeDirectoryEntry(next), 0});
  ASSIGN_OR_RETURN(EtcdTxnResult result, etcd_->Txn(txn));
  return result.succeeded;
}

absl::StatusOr<bool> Directory::Remove(const SequenceKey& key, const DirectoryEntry& seen) {
  const std::string k = keys_->Sequence(key);
  EtcdTxn txn;
  txn.compares.push_back({k, EtcdCompare::Target::kModRevision, seen.mod_revision});
  txn.success.push_back({EtcdOp::Kind::kDelete, k, "", 0});
  ASSIGN_OR_RETURN(EtcdTxnResult result, etcd_->Txn(txn));
  return result.succeeded;
}

absl::StatusOr<std::vector<std::pair<SequenceKey, DirectoryEntry>>> Directory::List(
    absl::string_view tenant) {
  const std::string prefix =
      tenant.empty() ? keys_->SequencesPrefix() : keys_->TenantPrefix(tenant);
  ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> kvs, etcd_->Range(prefix));
  std::vector<std::pair<SequenceKey, DirectoryEntry>> out;
  for (const EtcdKeyValue& kv : kvs) {
    absl::StatusOr<SequenceKey> key = keys_->ParseSequence(kv.key);
    absl::StatusOr<DirectoryEntry> entry = FromKeyValue(kv);
    if (!key.ok() || !entry.ok()) continue;
    out.emplace_back(*std::move(key), *std::move(entry));
  }
  return out;
}

absl::StatusOr<bool> Directory::MarkJoined(absl::string_view node) {
  return etcd_->PutIfAbsent(keys_->Joined(node), "1");
}

}  // namespace clusterkv::server::cluster
