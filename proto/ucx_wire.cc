#include "proto/ucx_wire.h"

#include <algorithm>

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
  // u16 length | bytes; `s` is at most kMaxTextBytes long.
  void String(absl::string_view s) {
    U16(static_cast<uint16_t>(s.size()));
    Text(s);
  }
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
  // u16 length | bytes, at most `max_bytes` long.
  bool String(size_t max_bytes, std::string* s) {
    uint16_t n = 0;
    return U16(&n) && n <= max_bytes && Text(n, s);
  }
  // The next n bytes as a view (for a nested reader).
  bool View(size_t n, absl::string_view* v) {
    if (in_.size() - pos_ < n) return false;
    *v = in_.substr(pos_, n);
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
  Kind kind = Kind::kFetchRequest;
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

// Reads the header's fields and checks magic and version.
absl::Status ReadFields(Reader& r, uint16_t* kind, Header* h) {
  uint32_t magic = 0;
  uint16_t version = 0;
  if (!r.U32(&magic) || !r.U16(&version) || !r.U16(kind) || !r.U64(&h->request_id) ||
      !r.U64(&h->session_id) || !r.U32(&h->count) || !r.I32(&h->status) || !r.U32(&h->text_bytes) ||
      !r.U32(&h->block_slot_bytes)) {
    return absl::InvalidArgumentError("data-plane message shorter than its header");
  }
  if (magic != kMagic) return absl::InvalidArgumentError("data-plane message: bad magic");
  if (version != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-plane message version ", version, "; this side speaks ", kVersion));
  }
  return absl::OkStatus();
}

// Reads and checks the header and that the rest holds exactly text + count entries.
absl::StatusOr<Header> ReadHeader(Reader& r, Kind want, size_t entry_bytes, size_t max_entries,
                                  size_t max_text_bytes = kMaxTextBytes) {
  uint16_t kind = 0;
  Header h;
  if (absl::Status s = ReadFields(r, &kind, &h); !s.ok()) return s;
  const uint32_t count = h.count;
  const uint32_t text_bytes = h.text_bytes;
  if (kind != static_cast<uint16_t>(want)) {
    return absl::InvalidArgumentError(absl::StrCat("data-plane message of kind ", kind,
                                                   ", expected ", static_cast<int>(want)));
  }
  if (want != Kind::kFetchRequest && h.block_slot_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-plane message of kind ", kind, " with a nonzero block_slot_bytes"));
  }
  if (text_bytes > max_text_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("data-plane message text of ", text_bytes,
                                                   " bytes; the limit is ", max_text_bytes));
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
  return h;
}

void WriteEntry(const FetchEntry& e, Writer& w) {
  w.I32(e.layer);
  w.I32(e.kv_head);
  w.I32(e.cluster);
  w.I32(e.expected_tokens);
  w.U64(e.slot_offset);
}

void ReadEntry(Reader& r, FetchEntry* e) {  // lengths were checked by ReadHeader
  r.I32(&e->layer);
  r.I32(&e->kv_head);
  r.I32(&e->cluster);
  r.I32(&e->expected_tokens);
  r.U64(&e->slot_offset);
}

void WriteResult(const BlockResult& b, Writer& w) {
  w.I32(b.code);
  w.I32(b.num_tokens);
  w.U64(b.bytes);
}

void ReadResult(Reader& r, BlockResult* b) {  // lengths were checked by ReadHeader
  r.I32(&b->code);
  r.I32(&b->num_tokens);
  r.U64(&b->bytes);
}

// A batch's limits, capped by the protocol's ceilings.
BatchLimits Capped(const BatchLimits& limits) {
  BatchLimits out = limits;
  out.max_sequences = std::min(out.max_sequences, kMaxBatchSequences);
  out.max_text_bytes = std::min(out.max_text_bytes, kMaxBatchTextBytes);
  return out;
}

// A batch text's u32 number of sequences, checked against the limit.
absl::StatusOr<uint32_t> ReadSequenceCount(Reader& text, size_t max_sequences) {
  uint32_t n = 0;
  if (!text.U32(&n)) return absl::InvalidArgumentError("batch text without a sequence count");
  if (n > max_sequences) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", n, " sequences; the limit is ", max_sequences));
  }
  return n;
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
  for (const FetchEntry& e : request.entries) WriteEntry(e, w);
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
  for (const BlockResult& b : completion.blocks) WriteResult(b, w);
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
  for (FetchEntry& e : out.entries) ReadEntry(r, &e);
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
  for (BlockResult& b : out.blocks) ReadResult(r, &b);
  return out;
}

std::string Encode(const BatchFetchRequest& request) {
  size_t text_bytes = 4;
  for (const std::string& id : request.sequence_ids) text_bytes += 2 + id.size();
  Writer w(kHeaderBytes + text_bytes + request.entries.size() * kBatchEntryBytes);
  WriteHeader(Header{Kind::kBatchFetchRequest, request.request_id, request.session_id,
                     static_cast<uint32_t>(request.entries.size()), 0,
                     static_cast<uint32_t>(text_bytes), 0},
              w);
  w.U32(static_cast<uint32_t>(request.sequence_ids.size()));
  for (const std::string& id : request.sequence_ids) w.String(id);
  for (const BatchFetchEntry& e : request.entries) {
    WriteEntry(e.block, w);
    w.U32(e.sequence);
    w.U32(0);  // reserved
  }
  return w.Take();
}

std::string Encode(const BatchFetchCompletion& completion) {
  const bool ok = completion.code == 0;
  const absl::string_view message = absl::string_view(completion.message).substr(0, kMaxTextBytes);
  size_t text_bytes = 2 + message.size() + 4;
  if (ok) {
    for (const SequenceResult& s : completion.sequences) {
      text_bytes += 4 + 2 + std::min(s.message.size(), kMaxSequenceMessageBytes);
    }
  }
  const size_t count = ok ? completion.blocks.size() : 0;
  Writer w(kHeaderBytes + text_bytes + count * kCompletionEntryBytes);
  WriteHeader(
      Header{Kind::kBatchFetchCompletion, completion.request_id, completion.session_id,
             static_cast<uint32_t>(count), completion.code, static_cast<uint32_t>(text_bytes), 0},
      w);
  w.String(message);
  w.U32(ok ? static_cast<uint32_t>(completion.sequences.size()) : 0);
  if (ok) {
    for (const SequenceResult& s : completion.sequences) {
      w.I32(s.code);
      w.String(absl::string_view(s.message).substr(0, kMaxSequenceMessageBytes));
    }
    for (const BlockResult& b : completion.blocks) WriteResult(b, w);
  }
  return w.Take();
}

absl::StatusOr<BatchFetchRequest> DecodeBatchFetchRequest(absl::string_view bytes,
                                                          const BatchLimits& batch_limits) {
  const BatchLimits limits = Capped(batch_limits);
  Reader r(bytes);
  absl::StatusOr<Header> h = ReadHeader(r, Kind::kBatchFetchRequest, kBatchEntryBytes,
                                        limits.max_entries, limits.max_text_bytes);
  if (!h.ok()) return h.status();
  if (h->status != 0) return absl::InvalidArgumentError("batch request with a nonzero status");
  BatchFetchRequest out;
  out.request_id = h->request_id;
  out.session_id = h->session_id;
  absl::string_view text_bytes;
  r.View(h->text_bytes, &text_bytes);  // lengths were checked by ReadHeader
  Reader text(text_bytes);
  absl::StatusOr<uint32_t> n = ReadSequenceCount(text, limits.max_sequences);
  if (!n.ok()) return n.status();
  out.sequence_ids.resize(*n);
  for (std::string& id : out.sequence_ids) {
    if (!text.String(kMaxTextBytes, &id)) {
      return absl::InvalidArgumentError("batch request: a sequence id leaves its text");
    }
  }
  if (text.remaining() != 0) {
    return absl::InvalidArgumentError("batch request: bytes after the sequence ids");
  }
  out.entries.resize(h->count);
  uint32_t previous = 0;
  for (BatchFetchEntry& e : out.entries) {
    uint32_t reserved = 0;
    ReadEntry(r, &e.block);
    r.U32(&e.sequence);
    r.U32(&reserved);
    if (e.sequence >= *n || e.sequence < previous) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch request: entry of sequence ", e.sequence, " after sequence ",
                       previous, " of ", *n, " (entries are grouped by sequence, in order)"));
    }
    if (reserved != 0) return absl::InvalidArgumentError("batch request: reserved field set");
    previous = e.sequence;
  }
  return out;
}

absl::StatusOr<BatchFetchCompletion> DecodeBatchFetchCompletion(absl::string_view bytes,
                                                                const BatchLimits& batch_limits) {
  const BatchLimits limits = Capped(batch_limits);
  Reader r(bytes);
  absl::StatusOr<Header> h = ReadHeader(r, Kind::kBatchFetchCompletion, kCompletionEntryBytes,
                                        limits.max_entries, limits.max_text_bytes);
  if (!h.ok()) return h.status();
  BatchFetchCompletion out;
  out.request_id = h->request_id;
  out.session_id = h->session_id;
  out.code = h->status;
  absl::string_view text_bytes;
  r.View(h->text_bytes, &text_bytes);  // lengths were checked by ReadHeader
  Reader text(text_bytes);
  if (!text.String(kMaxTextBytes, &out.message)) {
    return absl::InvalidArgumentError("batch reply: its message leaves its text");
  }
  absl::StatusOr<uint32_t> n = ReadSequenceCount(text, limits.max_sequences);
  if (!n.ok()) return n.status();
  if (out.code != 0 && (*n != 0 || h->count != 0)) {
    return absl::InvalidArgumentError("batch reply with a whole-request error and results");
  }
  out.sequences.resize(*n);
  for (SequenceResult& s : out.sequences) {
    if (!text.I32(&s.code) || !text.String(kMaxSequenceMessageBytes, &s.message)) {
      return absl::InvalidArgumentError("batch reply: a sequence's result leaves its text");
    }
  }
  if (text.remaining() != 0) {
    return absl::InvalidArgumentError("batch reply: bytes after the sequence results");
  }
  out.blocks.resize(h->count);
  for (BlockResult& b : out.blocks) ReadResult(r, &b);
  return out;
}

absl::StatusOr<MessageHeader> PeekHeader(absl::string_view bytes) {
  Reader r(bytes);
  uint16_t kind = 0;
  Header h;
  if (absl::Status s = ReadFields(r, &kind, &h); !s.ok()) return s;
  if (kind < static_cast<uint16_t>(Kind::kFetchRequest) ||
      kind > static_cast<uint16_t>(Kind::kBatchFetchCompletion)) {
    return absl::InvalidArgumentError(absl::StrCat("data-plane message of unknown kind ", kind));
  }
  return MessageHeader{static_cast<Kind>(kind), h.request_id, h.session_id};
}

}  // namespace clusterkv::wire
