#include "storage/key_codec.h"

#include "absl/strings/str_cat.h"

namespace clusterkv::storage {
namespace {

void PutBigEndian32(int32_t value, std::string* out) {
  const uint32_t v = static_cast<uint32_t>(value);
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

int32_t GetBigEndian32(absl::string_view in) {
  const auto b = [&](int i) { return static_cast<uint32_t>(static_cast<uint8_t>(in[i])); };
  return static_cast<int32_t>((b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3));
}

// Splits "tenant\0sequence\0rest"; DataLoss when either terminator is missing.
absl::StatusOr<std::pair<SequenceKey, absl::string_view>> SplitSequence(
    absl::string_view encoded) {
  const size_t t = encoded.find('\0');
  if (t == absl::string_view::npos) return absl::DataLossError("key without tenant terminator");
  const size_t s = encoded.find('\0', t + 1);
  if (s == absl::string_view::npos) {
    return absl::DataLossError("key without sequence terminator");
  }
  SequenceKey key{std::string(encoded.substr(0, t)), std::string(encoded.substr(t + 1, s - t - 1))};
  return std::make_pair(std::move(key), encoded.substr(s + 1));
}

}  // namespace

std::string SequencePrefix(const SequenceKey& sequence) {
  std::string out;
  out.reserve(sequence.tenant.size() + sequence.sequence.size() + 2);
  out.append(sequence.tenant);
  out.push_back('\0');
  out.append(sequence.sequence);
  out.push_back('\0');
  return out;
}

std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return end;  // empty: no upper bound
}

namespace {

// Block and directory keys: prefix, kind byte, layer, kv_head, cluster.
std::string EncodeClusterKey(const BlockKey& key, char kind) {
  std::string out = SequencePrefix(key.sequence);
  out.push_back(kind);
  PutBigEndian32(key.cluster.head.layer, &out);
  PutBigEndian32(key.cluster.head.kv_head, &out);
  PutBigEndian32(key.cluster.cluster, &out);
  return out;
}

absl::StatusOr<BlockKey> DecodeClusterKey(absl::string_view encoded, char kind) {
  auto split = SplitSequence(encoded);
  if (!split.ok()) return split.status();
  absl::string_view rest = split->second;
  if (rest.size() != 13 || rest[0] != kind) {
    return absl::DataLossError(
        absl::StrCat("malformed '", std::string(1, kind), "' key of ", encoded.size(), " bytes"));
  }
  BlockKey key;
  key.sequence = std::move(split->first);
  key.cluster.head.layer = GetBigEndian32(rest.substr(1));
  key.cluster.head.kv_head = GetBigEndian32(rest.substr(5));
  key.cluster.cluster = GetBigEndian32(rest.substr(9));
  return key;
}

}  // namespace

std::string EncodeBlockKey(const BlockKey& key) { return EncodeClusterKey(key, 'B'); }
std::string EncodeDirectoryKey(const BlockKey& key) { return EncodeClusterKey(key, 'D'); }
absl::StatusOr<BlockKey> DecodeBlockKey(absl::string_view encoded) {
  return DecodeClusterKey(encoded, 'B');
}
absl::StatusOr<BlockKey> DecodeDirectoryKey(absl::string_view encoded) {
  return DecodeClusterKey(encoded, 'D');
}

absl::StatusOr<char> KeyKind(absl::string_view encoded) {
  auto split = SplitSequence(encoded);
  if (!split.ok()) return split.status();
  if (split->second.empty()) return absl::DataLossError("key without a kind byte");
  return split->second[0];
}

std::string EncodeIndexKey(const SequenceKey& sequence, const HeadId& head) {
  std::string out = SequencePrefix(sequence);
  out.push_back('I');
  PutBigEndian32(head.layer, &out);
  PutBigEndian32(head.kv_head, &out);
  return out;
}

std::string EncodeMetadataKey(const SequenceKey& sequence) {
  std::string out = SequencePrefix(sequence);
  out.push_back('M');
  return out;
}

std::string EncodeStateKey(const SequenceKey& sequence) {
  std::string out = SequencePrefix(sequence);
  out.push_back('S');
  return out;
}

absl::StatusOr<SequenceKey> DecodeSequence(absl::string_view encoded) {
  auto split = SplitSequence(encoded);
  if (!split.ok()) return split.status();
  return std::move(split->first);
}

}  // namespace clusterkv::storage
