// libFuzzer target: the .npy parser of the quality evaluation (tools/clusterkv_eval/npy.h),
// which reads model dumps from anywhere. ParseNpy works on a memory buffer, so the input is
// parsed directly, with and without bf16 interpretation. Every failure must be
// InvalidArgument; what parses must hold exactly shape-product elements and re-encode to an
// image that parses to the same array.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/kv_layout.h"
#include "tools/clusterkv_eval/npy.h"

namespace clusterkv::eval {
namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

void FuzzOne(absl::string_view bytes) {
  for (bool bf16 : {false, true}) {
    const NpyReadOptions options{.bf16 = bf16};
    const absl::StatusOr<NpyArray> array = ParseNpy(bytes, options);
    if (!array.ok()) {
      Require(absl::IsInvalidArgument(array.status()));
      continue;
    }
    int64_t count = 1;
    for (int64_t d : array->shape) {
      Require(d >= 0);
      count *= d;
    }
    Require(array->NumElements() == count);
    Require(array->data.size() == static_cast<size_t>(count) * DTypeSize(array->dtype));
    const absl::StatusOr<std::string> encoded = EncodeNpy(*array);
    Require(encoded.ok());
    const absl::StatusOr<NpyArray> again = ParseNpy(*encoded, options);
    Require(again.ok() && again->dtype == array->dtype && again->shape == array->shape &&
            again->data == array->data);
  }
}

}  // namespace
}  // namespace clusterkv::eval

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clusterkv::eval::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
