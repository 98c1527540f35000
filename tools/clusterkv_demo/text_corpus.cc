#include "tools/clusterkv_demo/text_corpus.h"

#include <zlib.h>

#include <cctype>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace clusterkv::demo {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

uint32_t BigEndian32(const std::string& s, size_t pos) {
  return (uint32_t(uint8_t(s[pos])) << 24) | (uint32_t(uint8_t(s[pos + 1])) << 16) |
         (uint32_t(uint8_t(s[pos + 2])) << 8) | uint32_t(uint8_t(s[pos + 3]));
}

// Inflates the zlib stream at data[pos...] into `out`; returns the bytes of input consumed.
absl::StatusOr<size_t> Inflate(const std::string& data, size_t pos, size_t expected,
                               std::string* out) {
  out->assign(expected, '\0');
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return absl::InternalError("inflateInit failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + pos));
  z.avail_in = static_cast<uInt>(data.size() - pos);
  z.next_out = reinterpret_cast<Bytef*>(out->data());
  z.avail_out = static_cast<uInt>(expected);
  const int rc = inflate(&z, Z_FINISH);
  const size_t consumed = z.total_in;
  const size_t produced = z.total_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != expected) {
    return absl::DataLossError(absl::StrCat("bad zlib stream at offset ", pos));
  }
  return consumed;
}

// Appends the elements of the first character vector (STRSXP) of an R XDR serialization.
absl::Status ParseStrings(const std::string& s, std::vector<std::string>* lines) {
  // Header: "X\n", then format version, writer version, min reader version (3 ints), and for
  // format 3 the native encoding (int length + bytes).
  if (s.size() < 14 || s[0] != 'X' || s[1] != '\n') {
    return absl::DataLossError("not an R XDR serialization");
  }
  size_t pos = 2;
  const uint32_t version = BigEndian32(s, pos);
  pos += 12;
  if (version == 3) pos += 4 + BigEndian32(s, pos);
  if (pos + 8 > s.size()) return absl::DataLossError("truncated R object");
  const uint32_t flags = BigEndian32(s, pos);
  if ((flags & 0xff) != 16) return absl::OkStatus();  // not a character vector: skip it
  const uint32_t count = BigEndian32(s, pos + 4);
  pos += 8;
  for (uint32_t i = 0; i < count; ++i) {
    if (pos + 8 > s.size()) return absl::DataLossError("truncated character vector");
    const uint32_t element_flags = BigEndian32(s, pos);
    const int32_t length = static_cast<int32_t>(BigEndian32(s, pos + 4));
    pos += 8;
    if ((element_flags & 0xff) != 9) return absl::DataLossError("unexpected element type");
    if (length < 0) {  // NA_character_
      lines->emplace_back();
      continue;
    }
    if (pos + static_cast<size_t>(length) > s.size()) return absl::DataLossError("truncated string");
    lines->emplace_back(s.substr(pos, static_cast<size_t>(length)));
    pos += static_cast<size_t>(length);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadRLazyLoadStrings(const std::string& rdb_path) {
  absl::StatusOr<std::string> data = ReadAll(rdb_path);
  if (!data.ok()) {
    return absl::NotFoundError(absl::StrCat(data.status().message(),
                                            " (apt-get install r-cran-janeaustenr)"));
  }
  std::vector<std::string> lines;
  size_t pos = 0;
  std::string object;
  while (pos + 4 <= data->size()) {
    const uint32_t expected = BigEndian32(*data, pos);
    absl::StatusOr<size_t> consumed = Inflate(*data, pos + 4, expected, &object);
    if (!consumed.ok()) return consumed.status();
    if (absl::Status s = ParseStrings(object, &lines); !s.ok()) return s;
    pos += 4 + *consumed;
  }
  if (lines.empty()) return absl::DataLossError(absl::StrCat("no text in ", rdb_path));
  return lines;
}

absl::StatusOr<std::vector<std::string>> ReadTextLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> Words(const std::vector<std::string>& lines) {
  std::vector<std::string> words;
  for (const std::string& line : lines) {
    std::string word;
    for (char c : line) {
      if (std::isalpha(static_cast<unsigned char>(c)) || (c == '\'' && !word.empty())) {
        word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      } else if (!word.empty()) {
        words.push_back(std::move(word));
        word.clear();
      }
    }
    if (!word.empty()) words.push_back(std::move(word));
  }
  return words;
}

}  // namespace clusterkv::demo
