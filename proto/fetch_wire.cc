#include "proto/fetch_wire.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace clusterkv::wire {
namespace {

// Protobuf wire types and the tags of the fields written here.
constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kLengthDelimited = 2;
constexpr uint32_t kFixed32 = 5;
constexpr uint8_t kBlocksTag = (1 << 3) | kLengthDelimited;  // FetchClustersResponse.blocks
constexpr uint8_t kIdTag = (1 << 3) | kLengthDelimited;      // ClusterBlock.id
constexpr uint8_t kNumTokensTag = (2 << 3) | kVarint;        // ClusterBlock.num_tokens
constexpr uint8_t kDataTag = (3 << 3) | kLengthDelimited;    // ClusterBlock.data

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// int32 fields travel as the varint of their sign-extended 64-bit value.
uint64_t Int32Wire(int32_t v) { return static_cast<uint64_t>(static_cast<int64_t>(v)); }

// The destroy callback of a referenced block's slice: drops the slice's reference to the
// block's holder.
void ReleaseHolder(void* holder) { delete static_cast<std::shared_ptr<const void>*>(holder); }

// A read cursor over a received message's slices that never reads past their end.
class SliceReader {
 public:
  explicit SliceReader(std::vector<grpc::Slice> slices) : slices_(std::move(slices)) {
    for (const grpc::Slice& s : slices_) remaining_ += s.size();
    SkipEmpty();
  }

  size_t remaining() const { return remaining_; }

  bool ReadVarint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (remaining_ == 0) return false;
      const uint8_t b = slices_[index_].begin()[offset_];
      Advance(1);
      // The tenth byte may only carry the top bit of a 64-bit value.
      if (shift == 63 && b > 1) return false;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;
  }

  bool Skip(size_t n) {
    if (n > remaining_) return false;
    while (n > 0) {
      const size_t step = std::min(n, slices_[index_].size() - offset_);
      Advance(step);
      n -= step;
    }
    return true;
  }

  bool CopyTo(uint8_t* dst, size_t n) {
    if (n > remaining_) return false;
    while (n > 0) {
      const size_t step = std::min(n, slices_[index_].size() - offset_);
      std::memcpy(dst, slices_[index_].begin() + offset_, step);
      dst += step;
      Advance(step);
      n -= step;
    }
    return true;
  }

 private:
  // Moves `n` bytes on, within the current slice (n <= what is left of it).
  void Advance(size_t n) {
    offset_ += n;
    remaining_ -= n;
    SkipEmpty();
  }
  void SkipEmpty() {
    while (index_ < slices_.size() && offset_ == slices_[index_].size()) {
      ++index_;
      offset_ = 0;
    }
  }

  std::vector<grpc::Slice> slices_;
  size_t index_ = 0;
  size_t offset_ = 0;
  size_t remaining_ = 0;
};

absl::Status Malformed(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("malformed FetchClustersResponse: ", what));
}

// Skips a field of wire type `wire_type` whose tag was just read; false when the field does not
// fit in the `limit` bytes left to its message, or has a wire type a message cannot hold here.
bool SkipField(SliceReader& in, uint32_t wire_type, size_t limit) {
  uint64_t n = 0;
  switch (wire_type) {
    case kVarint:
      return in.ReadVarint(&n);
    case kFixed64:
      return limit >= 8 && in.Skip(8);
    case kFixed32:
      return limit >= 4 && in.Skip(4);
    case kLengthDelimited:
      return in.ReadVarint(&n) && n <= limit && in.Skip(static_cast<size_t>(n));
    default:  // groups (3, 4) are not used by proto3 messages; 6 and 7 do not exist
      return false;
  }
}

// Reads one ClusterBlock of `length` bytes into `block`.
absl::Status ReadBlock(SliceReader& in, size_t length, v1::ClusterBlock& block,
                       std::string& id_bytes) {
  const size_t end = in.remaining() - length;  // remaining() once the block is read
  block.clear_id();
  block.set_num_tokens(0);
  bool has_data = false;
  while (in.remaining() > end) {
    uint64_t tag = 0;
    if (!in.ReadVarint(&tag) || in.remaining() < end) return Malformed("truncated block field");
    const size_t left = in.remaining() - end;
    const uint64_t field = tag >> 3;
    const auto wire_type = static_cast<uint32_t>(tag & 7);
    if (field == 0 || field > 0x1fffffff) return Malformed("field number out of range");
    if (field == 1 && wire_type == kLengthDelimited) {
      uint64_t n = 0;
      if (!in.ReadVarint(&n) || in.remaining() < end || n > in.remaining() - end) {
        return Malformed("block id past the block's end");
      }
      id_bytes.resize(static_cast<size_t>(n));
      if (!in.CopyTo(reinterpret_cast<uint8_t*>(id_bytes.data()), id_bytes.size()) ||
          !block.mutable_id()->MergeFromString(id_bytes)) {
        return Malformed("unreadable block id");
      }
    } else if (field == 2 && wire_type == kVarint) {
      uint64_t v = 0;
      if (!in.ReadVarint(&v) || in.remaining() < end) return Malformed("bad num_tokens");
      block.set_num_tokens(static_cast<int32_t>(static_cast<uint32_t>(v)));  // as protobuf
    } else if (field == 3 && wire_type == kLengthDelimited) {
      uint64_t n = 0;
      if (!in.ReadVarint(&n) || in.remaining() < end || n > in.remaining() - end) {
        return Malformed("block data past the block's end");
      }
      // Resized, not cleared first: same-size blocks (the common case) rewrite the bytes in
      // place without zero-filling them.
      std::string* data = block.mutable_data();
      data->resize(static_cast<size_t>(n));
      if (!in.CopyTo(reinterpret_cast<uint8_t*>(data->data()), data->size())) {
        return Malformed("truncated block data");
      }
      has_data = true;
    } else if (!SkipField(in, wire_type, left) || in.remaining() < end) {
      return Malformed("bad field in a block");
    }
  }
  if (!has_data) block.mutable_data()->clear();
  return absl::OkStatus();
}

}  // namespace

void FetchResponseBuilder::AddHeader(const v1::ClusterRef& id, int32_t num_tokens,
                                     size_t data_bytes) {
  const size_t id_bytes = id.ByteSizeLong();
  size_t block = 1 + VarintSize(id_bytes) + id_bytes;
  if (num_tokens != 0) block += 1 + VarintSize(Int32Wire(num_tokens));
  if (data_bytes > 0) block += 1 + VarintSize(data_bytes) + data_bytes;
  const size_t before = header_.size();
  header_.push_back(static_cast<char>(kBlocksTag));
  PutVarint(header_, block);
  header_.push_back(static_cast<char>(kIdTag));
  PutVarint(header_, id_bytes);
  header_.resize(header_.size() + id_bytes);
  id.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(header_.data() + header_.size() - id_bytes));
  if (num_tokens != 0) {
    header_.push_back(static_cast<char>(kNumTokensTag));
    PutVarint(header_, Int32Wire(num_tokens));
  }
  if (data_bytes > 0) {
    header_.push_back(static_cast<char>(kDataTag));
    PutVarint(header_, data_bytes);
  }
  ++blocks_;
  data_bytes_ += data_bytes;
  message_bytes_ += header_.size() - before + data_bytes;
}

void FetchResponseBuilder::FlushHeader() {
  if (header_.empty()) return;
  slices_.emplace_back(header_);  // copied (a few dozen bytes a block)
  header_.clear();
}

void FetchResponseBuilder::AddReferenced(const v1::ClusterRef& id, int32_t num_tokens,
                                         absl::Span<const uint8_t> data,
                                         std::shared_ptr<const void> holder) {
  AddHeader(id, num_tokens, data.size());
  if (data.empty()) return;
  FlushHeader();
  // gRPC never writes into an outgoing slice; the cast only fits grpc_slice_new's signature.
  slices_.emplace_back(const_cast<uint8_t*>(data.data()), data.size(), &ReleaseHolder,
                       new std::shared_ptr<const void>(std::move(holder)));
}

void FetchResponseBuilder::AddCopied(const v1::ClusterRef& id, int32_t num_tokens,
                                     absl::Span<const uint8_t> data) {
  AddHeader(id, num_tokens, data.size());
  if (data.empty()) return;
  FlushHeader();
  slices_.emplace_back(data.data(), data.size());  // grpc_slice_from_copied_buffer
}

grpc::ByteBuffer FetchResponseBuilder::Take() {
  FlushHeader();
  grpc::ByteBuffer message(slices_.data(), slices_.size());
  slices_.clear();
  blocks_ = 0;
  data_bytes_ = 0;
  message_bytes_ = 0;
  return message;
}

absl::Status ForEachFetchedBlock(
    const grpc::ByteBuffer& message, v1::ClusterBlock& scratch,
    const std::function<absl::Status(const v1::ClusterBlock& block)>& on_block) {
  std::vector<grpc::Slice> slices;
  if (!message.Valid() || !message.Dump(&slices).ok()) return Malformed("unreadable message");
  SliceReader in(std::move(slices));
  std::string id_bytes;
  while (in.remaining() > 0) {
    uint64_t tag = 0;
    if (!in.ReadVarint(&tag)) return Malformed("truncated field tag");
    const uint64_t field = tag >> 3;
    const auto wire_type = static_cast<uint32_t>(tag & 7);
    if (field == 0 || field > 0x1fffffff) return Malformed("field number out of range");
    if (field == 1 && wire_type == kLengthDelimited) {
      uint64_t length = 0;
      if (!in.ReadVarint(&length) || length > in.remaining()) {
        return Malformed("block past the message's end");
      }
      if (absl::Status s = ReadBlock(in, static_cast<size_t>(length), scratch, id_bytes); !s.ok()) {
        return s;
      }
      if (absl::Status s = on_block(scratch); !s.ok()) return s;
    } else if (!SkipField(in, wire_type, in.remaining())) {
      return Malformed("bad field");
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::wire
