#include "tools/clusterkv_eval/npy.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace clusterkv::eval {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
// numpy aligns the data start to 64 bytes (so memory-mapped arrays are aligned).
constexpr size_t kAlignment = 64;
constexpr int64_t kMaxBytes = int64_t{1} << 40;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("npy: ", what));
}

// One value of the header dictionary: a string, a bool, a tuple of non-negative ints, or a
// list (only a structured dtype uses one, which we reject).
struct HeaderValue {
  enum class Kind { kString, kBool, kTuple, kList } kind = Kind::kString;
  std::string str;
  bool boolean = false;
  std::vector<int64_t> ints;
};

// Recursive-descent parser for the Python dict literal numpy writes, e.g.
// "{'descr': '<f4', 'fortran_order': False, 'shape': (8, 32768, 128), }".
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::Status Parse(std::vector<std::pair<std::string, HeaderValue>>* out) {
    SkipSpace();
    if (!Consume('{')) return Bad("header is not a dict literal");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      ASSIGN_OR_RETURN(std::string key, ParseString());
      SkipSpace();
      if (!Consume(':')) return Bad(absl::StrCat("expected ':' after key '", key, "'"));
      SkipSpace();
      ASSIGN_OR_RETURN(HeaderValue value, ParseValue());
      out->emplace_back(std::move(key), std::move(value));
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Bad("expected ',' or '}' in header dict");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Bad("trailing characters after header dict");
    return absl::OkStatus();
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  absl::StatusOr<std::string> ParseString() {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return Bad("expected a quoted string in header");
    }
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) return Bad("unterminated string in header");
    std::string s(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  absl::StatusOr<int64_t> ParseInt() {
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < text_.size() && absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_]))) {
      const int digit = text_[pos_++] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) {
        return Bad("shape dimension overflows int64");
      }
      v = v * 10 + digit;
    }
    if (pos_ == start) return Bad("expected a non-negative integer in shape");
    Consume('L');  // Python 2 long suffix
    return v;
  }

  absl::StatusOr<HeaderValue> ParseValue() {
    HeaderValue v;
    if (pos_ >= text_.size()) return Bad("header ends inside the dict");
    const char c = text_[pos_];
    if (c == '\'' || c == '"') {
      v.kind = HeaderValue::Kind::kString;
      ASSIGN_OR_RETURN(v.str, ParseString());
    } else if (ConsumeWord("True")) {
      v.kind = HeaderValue::Kind::kBool;
      v.boolean = true;
    } else if (ConsumeWord("False")) {
      v.kind = HeaderValue::Kind::kBool;
      v.boolean = false;
    } else if (Consume('(')) {
      v.kind = HeaderValue::Kind::kTuple;
      while (true) {
        SkipSpace();
        if (Consume(')')) break;
        ASSIGN_OR_RETURN(int64_t dim, ParseInt());
        v.ints.push_back(dim);
        SkipSpace();
        if (Consume(',')) continue;
        SkipSpace();
        if (Consume(')')) break;
        return Bad("expected ',' or ')' in shape tuple");
      }
    } else if (c == '[') {
      // Structured dtype: skip to the matching bracket, honouring nesting and strings.
      v.kind = HeaderValue::Kind::kList;
      int depth = 0;
      while (pos_ < text_.size()) {
        const char ch = text_[pos_];
        if (ch == '\'' || ch == '"') {
          ASSIGN_OR_RETURN(std::string ignored, ParseString());
          continue;
        }
        ++pos_;
        if (ch == '[' || ch == '(') ++depth;
        if (ch == ']' || ch == ')') --depth;
        if (depth == 0) break;
      }
      if (depth != 0) return Bad("unterminated list in header");
    } else {
      return Bad(absl::StrCat("unexpected character '", std::string(1, c), "' in header"));
    }
    return v;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::StatusOr<DType> DTypeOfDescr(absl::string_view descr, bool bf16) {
  if (descr == "<f2") return DType::kFloat16;
  if (descr == "<f4") return DType::kFloat32;
  if (descr == "<V2" || descr == "|V2" || descr == "<u2") {
    if (bf16) return DType::kBFloat16;
    return Bad(
        absl::StrCat("dtype '", descr, "' is only accepted as bfloat16 bit patterns: pass --bf16"));
  }
  if (!descr.empty() && descr[0] == '>') {
    return Bad(absl::StrCat("big-endian dtype '", descr, "' is not supported; save as '<",
                            descr.substr(1), "'"));
  }
  return Bad(absl::StrCat("unsupported dtype '", descr,
                          "' (supported: '<f2', '<f4', bf16 as '<V2'/'|V2'/'<u2' with --bf16)"));
}

// Programming errors (a caller broke a documented precondition) abort; Debian's Abseil has no
// CHECK.
void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "clusterkv_eval: precondition failed: %s\n", what);
    std::abort();
  }
}

uint32_t ReadLe(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

int64_t NpyArray::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor3View NpyArray::View3() const {
  Require(shape.size() == 3, "NpyArray::View3 of an array that is not 3-d");
  return Tensor3View(data.data(), dtype, {shape[0], shape[1], shape[2]});
}

NpyArray NpyArray::FromFloats(const std::vector<float>& values, std::vector<int64_t> shape,
                              DType dtype) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  Require(a.NumElements() == static_cast<int64_t>(values.size()),
          "NpyArray::FromFloats: value count differs from the shape");
  a.data = EncodeAs(values, dtype);
  return a;
}

absl::StatusOr<NpyArray> ParseNpy(absl::string_view bytes, const NpyReadOptions& options) {
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0) {
    return Bad("bad magic: not a .npy file");
  }
  const auto* u = reinterpret_cast<const uint8_t*>(bytes.data());
  const int major = u[kMagicLen];
  const int minor = u[kMagicLen + 1];
  if (major < 1 || major > 3 || minor != 0) {
    return Bad(absl::StrCat("unsupported format version ", major, ".", minor,
                            " (supported: 1.0, 2.0, 3.0)"));
  }
  const int len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (bytes.size() < prefix) return Bad("truncated file: header length missing");
  const size_t header_len = ReadLe(u + kMagicLen + 2, len_bytes);
  if (bytes.size() - prefix < header_len) {
    return Bad(absl::StrCat("truncated file: header needs ", header_len, " bytes, file has ",
                            bytes.size() - prefix));
  }
  const absl::string_view header = bytes.substr(prefix, header_len);

  std::vector<std::pair<std::string, HeaderValue>> entries;
  RETURN_IF_ERROR(HeaderParser(header).Parse(&entries));
  const HeaderValue* descr = nullptr;
  const HeaderValue* fortran = nullptr;
  const HeaderValue* shape = nullptr;
  for (const auto& [key, value] : entries) {
    if (key == "descr") descr = &value;
    if (key == "fortran_order") fortran = &value;
    if (key == "shape") shape = &value;
  }
  if (descr == nullptr || fortran == nullptr || shape == nullptr) {
    return Bad("header lacks one of 'descr', 'fortran_order', 'shape'");
  }
  if (descr->kind == HeaderValue::Kind::kList) {
    return Bad("structured dtypes are not supported");
  }
  if (descr->kind != HeaderValue::Kind::kString) return Bad("'descr' is not a string");
  if (fortran->kind != HeaderValue::Kind::kBool) return Bad("'fortran_order' is not a bool");
  if (fortran->boolean) {
    return Bad("Fortran-order arrays are not supported; save with np.ascontiguousarray");
  }
  if (shape->kind != HeaderValue::Kind::kTuple) return Bad("'shape' is not a tuple");

  NpyArray array;
  ASSIGN_OR_RETURN(array.dtype, DTypeOfDescr(descr->str, options.bf16));
  array.shape = shape->ints;
  const int64_t elem = static_cast<int64_t>(DTypeSize(array.dtype));
  int64_t count = 1;
  for (int64_t d : array.shape) {
    if (d != 0 && count > kMaxBytes / elem / d) {
      return Bad(absl::StrCat("shape (", absl::StrJoin(array.shape, ", "), ") is too large"));
    }
    count *= d;
  }
  const size_t data_bytes = static_cast<size_t>(count * elem);
  const size_t available = bytes.size() - prefix - header_len;
  if (available < data_bytes) {
    return Bad(absl::StrCat("truncated file: shape (", absl::StrJoin(array.shape, ", "), ") needs ",
                            data_bytes, " data bytes, file has ", available));
  }
  const uint8_t* start = u + prefix + header_len;
  array.data.assign(start, start + data_bytes);
  return array;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path, const NpyReadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InternalError(absl::StrCat("read error on ", path));
  absl::StatusOr<NpyArray> array = ParseNpy(bytes, options);
  if (!array.ok()) {
    return absl::Status(array.status().code(), absl::StrCat(path, ": ", array.status().message()));
  }
  return array;
}

absl::StatusOr<std::string> EncodeNpy(const NpyArray& array, const NpyWriteOptions& options) {
  if (options.version < 0 || options.version > 2) {
    return Bad(absl::StrCat("cannot write format version ", options.version));
  }
  for (int64_t d : array.shape) {
    if (d < 0) return Bad("negative dimension");
  }
  const size_t expected = static_cast<size_t>(array.NumElements()) * DTypeSize(array.dtype);
  if (array.data.size() != expected) {
    return Bad(absl::StrCat("data holds ", array.data.size(), " bytes, shape needs ", expected));
  }
  const char* descr = array.dtype == DType::kFloat16   ? "<f2"
                      : array.dtype == DType::kFloat32 ? "<f4"
                                                       : "<u2";
  std::string shape = absl::StrJoin(array.shape, ", ");
  if (array.shape.size() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape, "), }");
  int version = options.version;
  if (version == 0) version = header.size() + 1 + kMagicLen + 4 + kAlignment <= 65535 ? 1 : 2;
  const size_t prefix = kMagicLen + 2 + (version == 1 ? 2 : 4);
  // Pad with spaces and end with '\n' so that the data starts on a 64-byte boundary.
  const size_t total = (prefix + header.size() + 1 + kAlignment - 1) / kAlignment * kAlignment;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  if (version == 1 && header.size() > 65535) return Bad("header too long for version 1.0");

  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(version));
  out.push_back(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (int i = 0; i < (version == 1 ? 2 : 4); ++i) out.push_back(static_cast<char>(len >> (8 * i)));
  out += header;
  out.append(reinterpret_cast<const char*>(array.data.data()), array.data.size());
  return out;
}

absl::Status WriteNpy(const std::string& path, const NpyArray& array,
                      const NpyWriteOptions& options) {
  ASSIGN_OR_RETURN(std::string bytes, EncodeNpy(array, options));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create ", path));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("write error on ", path));
  return absl::OkStatus();
}

}  // namespace clusterkv::eval
