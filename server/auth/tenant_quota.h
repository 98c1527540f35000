// Per-tenant quotas: host-tier bytes, SSD-tier bytes and open sequences. Zero means
// unlimited. Enforced by the store's quota hook (bytes, at every block put) and by
// RequestHandler::OpenSequence (sequences). Exceeding a quota answers RESOURCE_EXHAUSTED naming
// the quota; other tenants are unaffected.
//
// The SSD quota bounds what the tenant could hold on the SSD once everything of it is evicted:
// its SSD bytes plus its host bytes plus the new block. Write-through blocks (in both tiers)
// count twice, so the check errs on the side of refusing.
#ifndef CLUSTERKV_SERVER_AUTH_TENANT_QUOTA_H_
#define CLUSTERKV_SERVER_AUTH_TENANT_QUOTA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "storage/tiered_store.h"

namespace clusterkv::server::auth {

struct TenantQuotas {
  uint64_t host_bytes = 0;  // 0: unlimited
  uint64_t ssd_bytes = 0;
  uint64_t sequences = 0;

  bool limits_bytes() const { return host_bytes != 0 || ssd_bytes != 0; }
};

// OK, or RESOURCE_EXHAUSTED when `add_bytes` more for `tenant` (now at `usage`) would pass a
// byte quota.
absl::Status CheckByteQuota(const TenantQuotas& quotas, const std::string& tenant,
                            const storage::TenantUsage& usage, uint64_t add_bytes);
// OK, or RESOURCE_EXHAUSTED when `tenant`, holding `sequences` already, may not create another.
absl::Status CheckSequenceQuota(const TenantQuotas& quotas, const std::string& tenant,
                                uint64_t sequences);
// The store's quota hook for `quotas` (quick, lock-free: safe under the store's lock).
storage::QuotaHook MakeQuotaHook(const TenantQuotas& quotas);

}  // namespace clusterkv::server::auth

#endif  // CLUSTERKV_SERVER_AUTH_TENANT_QUOTA_H_
