// The _clusterkv extension module; the package clusterkv/__init__.py re-exports it.
#include "bindings.h"
#include "clusterkv/version.h"

PYBIND11_MODULE(_clusterkv, m) {
  namespace ckv = clusterkv::python;
  m.doc() = "Native bindings of libclusterkv (see the clusterkv package).";
  // The library actually loaded, which may differ from the headers this module was built with.
  m.attr("__version__") = ckv_version();
  m.attr("HEADER_VERSION") = CLUSTERKV_VERSION_STRING;
  ckv::RegisterErrors(m);
  ckv::RegisterClient(m);
  ckv::RegisterSequence(m);
}
