#include "server/cluster/node_info.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/cluster/cluster_keys.h"

namespace clusterkv::server::cluster {

using nlohmann::json;

double NodeLoad::Fraction() const {
  if (host_capacity_bytes == 0) return 0.0;
  return static_cast<double>(host_bytes + ssd_bytes) / static_cast<double>(host_capacity_bytes);
}

std::string EncodeNodeInfo(const NodeInfo& info) {
  return json{{"node_id", info.node_id},
              {"grpc_address", info.grpc_address},
              {"ucx", info.ucx},
              {"ucx_address", absl::Base64Escape(info.ucx_address)},
              {"load",
               {{"host_capacity_bytes", info.load.host_capacity_bytes},
                {"host_bytes", info.load.host_bytes},
                {"ssd_bytes", info.load.ssd_bytes},
                {"high_watermark", info.load.high_watermark}}}}
      .dump();
}

absl::StatusOr<NodeInfo> DecodeNodeInfo(absl::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("not a node record: ", text.substr(0, 200)));
  };
  if (!j.is_object()) return bad();
  auto id = j.find("node_id");
  auto address = j.find("grpc_address");
  auto ucx = j.find("ucx");
  auto load = j.find("load");
  if (id == j.end() || !id->is_string() || address == j.end() || !address->is_string() ||
      ucx == j.end() || !ucx->is_boolean() || load == j.end() || !load->is_object()) {
    return bad();
  }
  NodeInfo info;
  info.node_id = id->get<std::string>();
  info.grpc_address = address->get<std::string>();
  info.ucx = ucx->get<bool>();
  if (auto ucx_address = j.find("ucx_address"); ucx_address != j.end()) {  // absent: older nodes
    if (!ucx_address->is_string() ||
        !absl::Base64Unescape(ucx_address->get<std::string>(), &info.ucx_address)) {
      return bad();
    }
  }
  RETURN_IF_ERROR(ValidateName("node id", info.node_id));
  const auto u64 = [&](const char* name, uint64_t* out) {
    auto it = load->find(name);
    if (it == load->end() || !it->is_number_unsigned()) return false;
    *out = it->get<uint64_t>();
    return true;
  };
  auto watermark = load->find("high_watermark");
  if (!u64("host_capacity_bytes", &info.load.host_capacity_bytes) ||
      !u64("host_bytes", &info.load.host_bytes) || !u64("ssd_bytes", &info.load.ssd_bytes) ||
      watermark == load->end() || !watermark->is_number()) {
    return bad();
  }
  info.load.high_watermark = watermark->get<double>();
  return info;
}

}  // namespace clusterkv::server::cluster
