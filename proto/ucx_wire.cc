#include "proto/ucx_wire.h"

#include "absl/strings/str_cat.h"

namespace clusterkv::wire {
namespace {

class Writer {
 public:
  explicit Writer(size_t reserve) { out_.reserve(reserve); }
  void U16(uint16_t v) { Bytes(v, 2); }
  void U32(uint32_t v) { Bytes(v, 4); }
  void I32(int32_t v) { Bytes(static_cast<uint32_t>(v), 4); }
  void U64(uint64_t v) { Bytes(v, 8); }
  void Text(absl::string_view s) { out_.append(s.data(), s.size()); }
  std::string Take() { return std::move(out_); }

 private:
  void Bytes(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  bool U16(uint16_t* v) { return Bytes(v, 2); }
  bool U32(uint32_t* v) { return Bytes(v, 4); }
  bool I32(int32_t* v) {
    uint32_t u = 0;
    if (!Bytes(&u, 4)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool U64(uint64_t* v) { return Bytes(v, 8); }
  bool Text(size_t n, std::string* s) {
    if (in_.size() - pos_ < n) return false;
    s->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  template <typename T>
  bool Bytes(T* v, int n) {
    if (in_.size() - pos_ < static_cast<size_t>(n)) return false;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) {
      x |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += n;
    *v = static_cast<T>(x);
    return true;
  }
  absl::string_view in_;
  size_t pos_ = 0;
};

struct Header {
  Kind kind;
  uint64_t request_id = 0;
  uint64_t session_id = 0;
  uint32_t count = 0;
  int32_t status = 0;
  uint32_t text_bytes = 0;
  uint32_t block_slot_bytes = 0;
};

void WriteHeader(const Header& h, Writer& w) {
  w.U32(kMagic);
  w.U16(kVersion);
  w.U16(static_cast<uint16_t>(h.kind));
  w.U64(h.request_id);
  w.U64(h.session_id);
  w.U32(h.count);
  w.I32(h.status);
  w.U32(h.text_bytes);
  w.U32(h.block_slot_bytes);
}

// Reads and checks the header and that the rest holds exactly text + count entries.
absl::StatusOr<Header> ReadHeader(Reader& r, Kind want, size_t entry_bytes, size_t max_entries) {
  uint32_t magic = 0, count = 0, text_bytes = 0, block_slot_bytes = 0;
  uint16_t version = 0, kind = 0;
  Header h;
  if (!r.U32(&magic) || !r.U16(&version) || !r.U16(&kind) || !r.U64(&h.request_id) ||
      !r.U64(&h.session_id) || !r.U32(&count) || !r.I32(&h.status) || !r.U32(&text_bytes) ||
      !r.U32(&block_slot_bytes)) {
    return absl::InvalidArgumentError("data-plane message shorter than its header");
  }
  if (magic != kMagic) return absl::InvalidArgumentError("data-plane message: bad magic");
  if (version != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-plane message version ", version, "; this side speaks ", kVersion));
  }
  if (kind != static_cast<uint16_t>(want)) {
    return absl::InvalidArgumentError(absl::StrCat("data-plane message of kind ", kind,
                                                   ", expected ", static_cast<int>(want)));
  }
  if (want != Kind::kFetchRequest && block_slot_bytes != 0) {
    return absl::InvalidArgumentError("data-plane reply with a nonzero block_slot_bytes");
  }
  if (text_bytes > kMaxTextBytes) {
    return absl::InvalidArgumentError("data-plane message text too long");
  }
  if (count > max_entries) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-plane message names ", count, " blocks; the limit is ", max_entries));
  }
  if (r.remaining() != text_bytes + static_cast<uint64_t>(count) * entry_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-plane message holds ", r.remaining(), " bytes after its header; ",
                     count, " entries need ", text_bytes + uint64_t{count} * entry_bytes));
  }
  h.kind = want;
  h.count = count;
  h.text_bytes = text_bytes;
  h.block_slot_bytes = block_slot_bytes;
  return h;
}

}  // namespace

std::string Encode(const FetchRequest& request) {
  Writer w(kHeaderBytes + request.sequence_id.size() +
           request.entries.size() * kRequestEntryBytes);
  WriteHeader(Header{Kind::kFetchRequest, request.request_id, request.session_id,
                     static_cast<uint32_t>(request.entries.size()), 0,
                     static_cast<uint32_t>(request.sequence_id.size()),
                     request.block_slot_bytes},
              w);
  w.Text(request.sequence_id);
  for (const FetchEntry& e : request.entries) {
    w.I32(e.layer);
    w.I32(e.kv_head);
    w.I32(e.cluster);
    w.I32(e.expected_tokens);
    w.U64(e.slot_offset);
  }
  return w.Take();
}

std::string Encode(const FetchCompletion& completion) {
  const absl::string_view message =
      absl::string_view(completion.message).substr(0, kMaxTextBytes);
  Writer w(kHeaderBytes + message.size() + completion.blocks.size() * kCompletionEntryBytes);
  WriteHeader(Header{Kind::kFetchCompletion, completion.request_id, completion.session_id,
                     static_cast<uint32_t>(completion.blocks.size()), completion.code,
                     static_cast<uint32_t>(message.size())},
              w);
  w.Text(message);
  for (const BlockResult& b : completion.blocks) {
    w.I32(b.code);
    w.I32(b.num_tokens);
    w.U64(b.bytes);
  }
  return w.Take();
}

absl::StatusOr<FetchRequest> DecodeFetchRequest(absl::string_view bytes, size_t max_entries) {
  Reader r(bytes);
  absl::StatusOr<Header> h = ReadHeader(r, Kind::kFetchRequest, kRequestEntryBytes, max_entries);
  if (!h.ok()) return h.status();
  FetchRequest out;
  out.request_id = h->request_id;
  out.session_id = h->session_id;
  out.block_slot_bytes = h->block_slot_bytes;
  r.Text(h->text_bytes, &out.sequence_id);  // lengths were checked by ReadHeader
  out.entries.resize(h->count);
  for (FetchEntry& e : out.entries) {
    r.I32(&e.layer);
    r.I32(&e.kv_head);
    r.I32(&e.cluster);
    r.I32(&e.expected_tokens);
    r.U64(&e.slot_offset);
  }
  return out;
}

absl::StatusOr<FetchCompletion> DecodeFetchCompletion(absl::string_view bytes,
                                                      size_t max_entries) {
  Reader r(bytes);
  absl::StatusOr<Header> h =
      ReadHeader(r, Kind::kFetchCompletion, kCompletionEntryBytes, max_entries);
  if (!h.ok()) return h.status();
  FetchCompletion out;
  out.request_id = h->request_id;
  out.session_id = h->session_id;
  out.code = h->status;
  r.Text(h->text_bytes, &out.message);
  out.blocks.resize(h->count);
  for (BlockResult& b : out.blocks) {
    r.I32(&b.code);
    r.I32(&b.num_tokens);
    r.U64(&b.bytes);
  }
  return out;
}

}  // namespace clusterkv::wire
