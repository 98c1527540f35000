// The UCX library this process runs on, as the loader found it (Debian's 1.13 or the PyPI
// wheel's 1.22 of a CLUSTERKV_UCX_PREFIX build), for reports and version-dependent tests.
#ifndef CLUSTERKV_CORE_UCX_UCX_VERSION_H_
#define CLUSTERKV_CORE_UCX_UCX_VERSION_H_

#include <string>

namespace clusterkv::ucx {

// "major.minor.release" of the loaded libucp (ucp_get_version), e.g. "1.22.0".
std::string RuntimeVersion();

// "major.minor" of the UCP API headers this code was compiled against (UCP_API_VERSION).
std::string CompiledVersion();

}  // namespace clusterkv::ucx

#endif  // CLUSTERKV_CORE_UCX_UCX_VERSION_H_
