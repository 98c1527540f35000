#include "core/ids.h"

namespace clusterkv {
namespace {

constexpr size_t kMaxIdBytes = 128;

absl::Status ValidateId(absl::string_view what, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " id is empty"));
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " id is ", id.size(), " bytes; the limit is ", kMaxIdBytes));
  }
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(what, " id contains a control character"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SequenceKey::Validate() const {
  if (absl::Status s = ValidateId("tenant", tenant); !s.ok()) return s;
  return ValidateId("sequence", sequence);
}

}  // namespace clusterkv
