#include "server/cluster/etcd_client.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace clusterkv::server::cluster {
namespace {

using nlohmann::json;

std::string B64(absl::string_view bytes) { return absl::Base64Escape(bytes); }

absl::StatusOr<std::string> FromB64(const json& value, absl::string_view what) {
  if (value.is_null()) return std::string();
  if (!value.is_string()) return absl::InternalError(absl::StrCat("etcd: ", what, " is not a string"));
  std::string out;
  if (!absl::Base64Unescape(value.get_ref<const std::string&>(), &out)) {
    return absl::InternalError(absl::StrCat("etcd: ", what, " is not base64"));
  }
  return out;
}

// proto3 JSON: an int64 is a string, may be a number, and is omitted when zero.
absl::StatusOr<int64_t> Int64Field(const json& object, const char* name) {
  if (object.is_null()) return 0;
  if (!object.is_object()) return absl::InternalError("etcd: expected a JSON object");
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  int64_t v = 0;
  if (it->is_string() && absl::SimpleAtoi(it->get_ref<const std::string&>(), &v)) return v;
  return absl::InternalError(absl::StrCat("etcd: field '", name, "' is not an int64"));
}

// The member `name` of `object`, or null when `object` is no object or lacks it (never throws).
const json& Member(const json& object, const char* name) {
  static const json* const kNull = new json();
  if (!object.is_object()) return *kNull;
  auto it = object.find(name);
  return it == object.end() ? *kNull : *it;
}

std::string StringField(const json& object, const char* name) {
  const json& v = Member(object, name);
  return v.is_string() ? v.get<std::string>() : std::string();
}

bool BoolField(const json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

absl::StatusOr<json> Parse(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InternalError(absl::StrCat("etcd answered with something that is not a JSON "
                                            "object: ", body.substr(0, 200)));
  }
  return parsed;
}

absl::StatusOr<EtcdKeyValue> KeyValueFromJson(const json& kv) {
  if (!kv.is_object()) return absl::InternalError("etcd: a key-value is not an object");
  EtcdKeyValue out;
  ASSIGN_OR_RETURN(out.key, FromB64(Member(kv, "key"), "key"));
  ASSIGN_OR_RETURN(out.value, FromB64(Member(kv, "value"), "value"));
  ASSIGN_OR_RETURN(out.create_revision, Int64Field(kv, "create_revision"));
  ASSIGN_OR_RETURN(out.mod_revision, Int64Field(kv, "mod_revision"));
  ASSIGN_OR_RETURN(out.version, Int64Field(kv, "version"));
  ASSIGN_OR_RETURN(out.lease, Int64Field(kv, "lease"));
  return out;
}

absl::StatusOr<std::vector<EtcdKeyValue>> KeyValuesOf(const json& range_response) {
  std::vector<EtcdKeyValue> out;
  const json& kvs = Member(range_response, "kvs");
  if (kvs.is_null()) return out;
  if (!kvs.is_array()) return absl::InternalError("etcd: kvs is not an array");
  for (const json& kv : kvs) {
    ASSIGN_OR_RETURN(EtcdKeyValue v, KeyValueFromJson(kv));
    out.push_back(std::move(v));
  }
  return out;
}

json OpJson(const EtcdOp& op) {
  switch (op.kind) {
    case EtcdOp::Kind::kPut: {
      json put = {{"key", B64(op.key)}, {"value", B64(op.value)}};
      if (op.lease != 0) put["lease"] = absl::StrCat(op.lease);
      return json{{"request_put", std::move(put)}};
    }
    case EtcdOp::Kind::kDelete:
      return json{{"request_delete_range", {{"key", B64(op.key)}}}};
    case EtcdOp::Kind::kGet:
      return json{{"request_range", {{"key", B64(op.key)}}}};
  }
  return json::object();
}

}  // namespace

std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key: etcd's "range to the end"
}

EtcdClient::EtcdClient(std::unique_ptr<EtcdTransport> transport)
    : transport_(std::move(transport)) {}

absl::StatusOr<std::string> EtcdClient::Call(absl::string_view path, const std::string& body) {
  return transport_->Post(path, body);
}

absl::StatusOr<int64_t> EtcdClient::Put(absl::string_view key, absl::string_view value,
                                        EtcdLeaseId lease) {
  json request = {{"key", B64(key)}, {"value", B64(value)}};
  if (lease != 0) request["lease"] = absl::StrCat(lease);
  ASSIGN_OR_RETURN(std::string body, Call("/v3/kv/put", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  return Int64Field(Member(response, "header"), "revision");
}

absl::StatusOr<std::optional<EtcdKeyValue>> EtcdClient::Get(absl::string_view key) {
  json request = {{"key", B64(key)}};
  ASSIGN_OR_RETURN(std::string body, Call("/v3/kv/range", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> kvs, KeyValuesOf(response));
  if (kvs.empty()) return std::optional<EtcdKeyValue>();
  return std::optional<EtcdKeyValue>(std::move(kvs.front()));
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdClient::Range(absl::string_view prefix) {
  if (prefix.empty()) return absl::InvalidArgumentError("etcd range: empty prefix");
  json request = {{"key", B64(prefix)}, {"range_end", B64(PrefixRangeEnd(prefix))}};
  ASSIGN_OR_RETURN(std::string body, Call("/v3/kv/range", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  return KeyValuesOf(response);
}

absl::StatusOr<int64_t> EtcdClient::Delete(absl::string_view key) {
  json request = {{"key", B64(key)}};
  ASSIGN_OR_RETURN(std::string body, Call("/v3/kv/deleterange", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  return Int64Field(response, "deleted");
}

absl::StatusOr<EtcdTxnResult> EtcdClient::Txn(const EtcdTxn& txn) {
  json compares = json::array();
  for (const EtcdCompare& c : txn.compares) {
    const bool create = c.target == EtcdCompare::Target::kCreateRevision;
    compares.push_back({{"key", B64(c.key)},
                        {"target", create ? "CREATE" : "MOD"},
                        {"result", "EQUAL"},
                        {create ? "create_revision" : "mod_revision", absl::StrCat(c.revision)}});
  }
  json success = json::array();
  for (const EtcdOp& op : txn.success) success.push_back(OpJson(op));
  json failure = json::array();
  for (const EtcdOp& op : txn.failure) failure.push_back(OpJson(op));
  json request = {{"compare", std::move(compares)},
                  {"success", std::move(success)},
                  {"failure", std::move(failure)}};
  ASSIGN_OR_RETURN(std::string body, Call("/v3/kv/txn", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  EtcdTxnResult result;
  result.succeeded = BoolField(response, "succeeded");
  ASSIGN_OR_RETURN(result.revision, Int64Field(Member(response, "header"), "revision"));
  const std::vector<EtcdOp>& ran = result.succeeded ? txn.success : txn.failure;
  const json& responses = Member(response, "responses");
  const size_t count = responses.is_array() ? responses.size() : 0;
  if (count != ran.size()) {
    return absl::InternalError(
        absl::StrCat("etcd txn: ", ran.size(), " ops but ", count, " responses"));
  }
  for (size_t i = 0; i < ran.size(); ++i) {
    if (ran[i].kind != EtcdOp::Kind::kGet) continue;
    ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> kvs,
                     KeyValuesOf(Member(responses[i], "response_range")));
    result.gets.push_back(kvs.empty() ? std::nullopt
                                      : std::optional<EtcdKeyValue>(std::move(kvs.front())));
  }
  return result;
}

absl::StatusOr<bool> EtcdClient::PutIfAbsent(absl::string_view key, absl::string_view value,
                                             EtcdLeaseId lease) {
  EtcdTxn txn;
  txn.compares.push_back({std::string(key), EtcdCompare::Target::kCreateRevision, 0});
  txn.success.push_back({EtcdOp::Kind::kPut, std::string(key), std::string(value), lease});
  ASSIGN_OR_RETURN(EtcdTxnResult result, Txn(txn));
  return result.succeeded;
}

absl::StatusOr<EtcdLease> EtcdClient::LeaseGrant(absl::Duration ttl) {
  const int64_t seconds = absl::ToInt64Seconds(ttl);
  if (seconds < 1) return absl::InvalidArgumentError("etcd leases last at least one second");
  json request = {{"TTL", absl::StrCat(seconds)}};
  ASSIGN_OR_RETURN(std::string body, Call("/v3/lease/grant", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  if (const std::string error = StringField(response, "error"); !error.empty()) {
    return absl::UnavailableError(absl::StrCat("etcd lease grant: ", error));
  }
  EtcdLease lease;
  ASSIGN_OR_RETURN(lease.id, Int64Field(response, "ID"));
  ASSIGN_OR_RETURN(int64_t granted, Int64Field(response, "TTL"));
  if (lease.id == 0 || granted <= 0) return absl::InternalError("etcd granted no lease");
  lease.ttl = absl::Seconds(granted);
  return lease;
}

absl::StatusOr<absl::Duration> EtcdClient::KeepAlive(EtcdLeaseId lease) {
  json request = {{"ID", absl::StrCat(lease)}};
  ASSIGN_OR_RETURN(std::string body, Call("/v3/lease/keepalive", request.dump()));
  ASSIGN_OR_RETURN(json response, Parse(body));
  // A streaming RPC through the gateway: {"result": {...}} or {"error": {...}}.
  if (const json& error = Member(response, "error"); error.is_object()) {
    ASSIGN_OR_RETURN(int64_t code, Int64Field(error, "grpc_code"));
    if (code == 0) {
      ASSIGN_OR_RETURN(code, Int64Field(error, "code"));
    }
    if (code <= 0 || code > 16) code = static_cast<int64_t>(absl::StatusCode::kUnavailable);
    return absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat("etcd keepalive: ", StringField(error, "message")));
  }
  const json& result = Member(response, "result");
  ASSIGN_OR_RETURN(int64_t ttl, Int64Field(result, "TTL"));
  // An expired lease answers without a TTL (zero).
  if (ttl <= 0) return absl::NotFoundError(absl::StrCat("etcd lease ", lease, " has expired"));
  return absl::Seconds(ttl);
}

absl::Status EtcdClient::Revoke(EtcdLeaseId lease) {
  json request = {{"ID", absl::StrCat(lease)}};
  return Call("/v3/lease/revoke", request.dump()).status();
}

}  // namespace clusterkv::server::cluster
