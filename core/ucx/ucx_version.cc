#include "core/ucx/ucx_version.h"

#include "absl/strings/str_cat.h"
#include "ucp/api/ucp.h"

namespace clusterkv::ucx {

std::string RuntimeVersion() {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  return absl::StrCat(major, ".", minor, ".", release);
}

std::string CompiledVersion() { return absl::StrCat(UCP_API_MAJOR, ".", UCP_API_MINOR); }

}  // namespace clusterkv::ucx
