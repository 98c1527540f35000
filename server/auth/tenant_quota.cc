#include "server/auth/tenant_quota.h"

#include "absl/strings/str_cat.h"

namespace clusterkv::server::auth {

absl::Status CheckByteQuota(const TenantQuotas& quotas, const std::string& tenant,
                            const storage::TenantUsage& usage, uint64_t add_bytes) {
  if (quotas.host_bytes != 0 && usage.host_bytes + add_bytes > quotas.host_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant '", tenant, "' host-tier quota exceeded: ", usage.host_bytes, " of ",
        quotas.host_bytes, " bytes used, a block of ", add_bytes, " bytes does not fit"));
  }
  const uint64_t footprint = usage.host_bytes + usage.ssd_bytes;
  if (quotas.ssd_bytes != 0 && footprint + add_bytes > quotas.ssd_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant '", tenant, "' SSD-tier quota exceeded: ", footprint, " of ", quotas.ssd_bytes,
        " bytes used, a block of ", add_bytes, " bytes does not fit"));
  }
  return absl::OkStatus();
}

absl::Status CheckSequenceQuota(const TenantQuotas& quotas, const std::string& tenant,
                                uint64_t sequences) {
  if (quotas.sequences != 0 && sequences >= quotas.sequences) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant '", tenant, "' sequence quota of ", quotas.sequences, " reached"));
  }
  return absl::OkStatus();
}

storage::QuotaHook MakeQuotaHook(const TenantQuotas& quotas) {
  return [quotas](const std::string& tenant, const storage::TenantUsage& usage,
                  uint64_t add_bytes) { return CheckByteQuota(quotas, tenant, usage, add_bytes); };
}

}  // namespace clusterkv::server::auth
