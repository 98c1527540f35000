// The C ABI (clusterkv.h) over Client and Sequence. Every entry point validates its pointers,
// converts the absl::Status to its code and records the message on the handle; no exception
// crosses the boundary (allocation failure is reported as RESOURCE_EXHAUSTED).
#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "client/clusterkv.h"
#include "core/kv_layout.h"

struct ckv_client {
  std::unique_ptr<clusterkv::client::Client> client;
  std::string last_error;
};

struct ckv_sequence {
  std::unique_ptr<clusterkv::client::Sequence> sequence;
  std::string last_error;
  clusterkv::client::StepStats last_step;  // of the last successful ckv_sequence_attend
};

struct ckv_prefix {
  clusterkv::client::Client::StoredPrefix prefix;
};

namespace {

using clusterkv::DType;
using clusterkv::KvLayout;

int Record(const absl::Status& status, std::string* last_error) {
  if (last_error != nullptr) last_error->assign(status.message().data(), status.message().size());
  return static_cast<int>(status.code());
}

// Runs `fn` (returning absl::Status), catching what must not cross into C.
template <typename Fn>
int Guarded(std::string* last_error, Fn fn) {
  try {
    return Record(fn(), last_error);
  } catch (const std::bad_alloc&) {
    return Record(absl::ResourceExhaustedError("out of memory"), last_error);
  } catch (const std::exception& e) {
    return Record(absl::InternalError(e.what()), last_error);
  }
}

absl::Status InvalidIf(bool bad, const char* message) {
  return bad ? absl::InvalidArgumentError(message) : absl::OkStatus();
}

// The layout of ckv_sequence_open's and ckv_client_find_prefix's arguments.
absl::StatusOr<KvLayout> MakeLayout(int32_t num_layers, int32_t num_q_heads, int32_t num_kv_heads,
                                    int32_t head_dim, int32_t dtype) {
  if (dtype < CKV_DTYPE_FP16 || dtype > CKV_DTYPE_FP32) {
    return absl::InvalidArgumentError("dtype must be CKV_DTYPE_FP16, _BF16 or _FP32");
  }
  KvLayout layout;
  layout.num_layers = num_layers;
  layout.num_q_heads = num_q_heads;
  layout.num_kv_heads = num_kv_heads;
  layout.head_dim = head_dim;
  layout.dtype = static_cast<DType>(dtype);
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  return layout;
}

// A C array of token ids as a span; InvalidArgument for a NULL array or a negative count.
absl::StatusOr<absl::Span<const int32_t>> TokenSpan(const int32_t* tokens, int64_t count) {
  if (count < 0) return absl::InvalidArgumentError("token count must not be negative");
  if (tokens == nullptr && count > 0) return absl::InvalidArgumentError("null tokens");
  return absl::MakeConstSpan(tokens, static_cast<size_t>(count));
}

// `bytes` bytes at `state` as a string view; InvalidArgument for NULL with bytes > 0.
absl::StatusOr<absl::string_view> StateBytes(const void* state, size_t bytes) {
  if (state == nullptr && bytes > 0) return absl::InvalidArgumentError("null engine state");
  if (bytes == 0) return absl::string_view();
  return absl::string_view(static_cast<const char*>(state), bytes);
}

// Wraps a freshly opened Sequence (or its error) into *sequence.
absl::Status Adopt(absl::StatusOr<std::unique_ptr<clusterkv::client::Sequence>> seq,
                   ckv_sequence** sequence) {
  if (!seq.ok()) return seq.status();
  auto handle = std::make_unique<ckv_sequence>();
  handle->sequence = *std::move(seq);
  *sequence = handle.release();
  return absl::OkStatus();
}

}  // namespace

extern "C" {

int ckv_client_open(const char* target, const char* tenant, ckv_client** client) {
  if (client == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  *client = nullptr;
  if (target == nullptr || tenant == nullptr) {
    return static_cast<int>(absl::StatusCode::kInvalidArgument);
  }
  return Guarded(nullptr, [&]() -> absl::Status {
    clusterkv::client::ClientOptions options;
    options.target = target;
    options.tenant = tenant;
    absl::StatusOr<std::unique_ptr<clusterkv::client::Client>> c =
        clusterkv::client::Client::Connect(std::move(options));
    if (!c.ok()) return c.status();
    auto handle = std::make_unique<ckv_client>();
    handle->client = *std::move(c);
    *client = handle.release();
    return absl::OkStatus();
  });
}

void ckv_client_close(ckv_client* client) { delete client; }

const char* ckv_client_last_error(const ckv_client* client) {
  return client == nullptr ? "null client handle" : client->last_error.c_str();
}

int ckv_sequence_open(ckv_client* client, const char* sequence_id, int32_t num_layers,
                      int32_t num_q_heads, int32_t num_kv_heads, int32_t head_dim, int32_t dtype,
                      ckv_sequence** sequence) {
  if (client == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&client->last_error, [&]() -> absl::Status {
    if (sequence == nullptr) return absl::InvalidArgumentError("null sequence out-pointer");
    *sequence = nullptr;
    if (sequence_id == nullptr) return absl::InvalidArgumentError("null sequence id");
    absl::StatusOr<KvLayout> layout =
        MakeLayout(num_layers, num_q_heads, num_kv_heads, head_dim, dtype);
    if (!layout.ok()) return layout.status();
    return Adopt(client->client->OpenSequence(sequence_id, *layout), sequence);
  });
}

int ckv_sequence_offload_prefill(ckv_sequence* sequence, int32_t layer, const void* k,
                                 const void* v, int64_t tokens) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(k == nullptr || v == nullptr, "null k or v"); !s.ok()) {
      return s;
    }
    if (tokens < 1) return absl::InvalidArgumentError("tokens must be positive");
    const KvLayout& layout = sequence->sequence->layout();
    const std::array<int64_t, 3> dims = {layout.num_kv_heads, tokens, layout.head_dim};
    return sequence->sequence->OffloadPrefill(layer, clusterkv::Tensor3View(k, layout.dtype, dims),
                                              clusterkv::Tensor3View(v, layout.dtype, dims));
  });
}

int ckv_sequence_attend(ckv_sequence* sequence, int32_t layer, const float* q, float* out) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(q == nullptr || out == nullptr, "null q or out"); !s.ok()) {
      return s;
    }
    const KvLayout& layout = sequence->sequence->layout();
    clusterkv::client::StepStats stats;
    absl::Status status = sequence->sequence->Attend(
        layer, clusterkv::ConstMatrixView(q, layout.num_q_heads, layout.head_dim),
        clusterkv::MatrixView(out, layout.num_q_heads, layout.head_dim), &stats);
    if (status.ok()) sequence->last_step = stats;
    return status;
  });
}

int ckv_attend_batch(ckv_sequence* const* sequences, int32_t count, int32_t layer,
                     const float* q, float* out, int* statuses) {
  const int invalid = static_cast<int>(absl::StatusCode::kInvalidArgument);
  if (sequences == nullptr || q == nullptr || out == nullptr || count < 1) return invalid;
  std::vector<const ckv_sequence*> distinct(sequences, sequences + count);
  std::sort(distinct.begin(), distinct.end());
  if (distinct.front() == nullptr ||
      std::adjacent_find(distinct.begin(), distinct.end()) != distinct.end()) {
    return invalid;  // a NULL or repeated sequence
  }
  const KvLayout& first = sequences[0]->sequence->layout();
  const int64_t rows = first.num_q_heads, cols = first.head_dim;
  std::vector<clusterkv::client::StepStats> stats(static_cast<size_t>(count));
  std::vector<clusterkv::client::BatchAttendItem> items(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    const KvLayout& layout = sequences[i]->sequence->layout();
    if (layout.num_q_heads != rows || layout.head_dim != cols) {
      sequences[i]->last_error = "every sequence of a batch needs the same query shape";
      return invalid;
    }
    const size_t offset = static_cast<size_t>(i) * static_cast<size_t>(rows * cols);
    items[i].sequence = sequences[i]->sequence.get();
    items[i].queries = clusterkv::ConstMatrixView(q + offset, rows, cols);
    items[i].out = clusterkv::MatrixView(out + offset, rows, cols);
    items[i].stats = &stats[i];
  }
  absl::Status status;
  try {
    status = clusterkv::client::Sequence::AttendBatch(layer, absl::MakeSpan(items));
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError("out of memory");
    for (auto& item : items) item.status = status;
  } catch (const std::exception& e) {
    status = absl::InternalError(e.what());
    for (auto& item : items) item.status = status;
  }
  for (int32_t i = 0; i < count; ++i) {
    const absl::Status& s = items[i].status;
    sequences[i]->last_error = s.ok() ? "" : std::string(s.message());
    if (s.ok()) sequences[i]->last_step = stats[i];
    if (statuses != nullptr) statuses[i] = static_cast<int>(s.code());
  }
  return static_cast<int>(status.code());
}

int ckv_sequence_prefetch(ckv_sequence* sequence, int32_t layer, const float* q_guess) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(q_guess == nullptr, "null q_guess"); !s.ok()) return s;
    const KvLayout& layout = sequence->sequence->layout();
    return sequence->sequence->Prefetch(
        layer, clusterkv::ConstMatrixView(q_guess, layout.num_q_heads, layout.head_dim));
  });
}

double ckv_sequence_estimated_recall(const ckv_sequence* sequence, int minimum) {
  if (sequence == nullptr) return std::nan("");
  return minimum != 0 ? sequence->last_step.estimated_recall_min
                      : sequence->last_step.estimated_recall;
}

int ckv_sequence_append_token(ckv_sequence* sequence, int32_t layer, const void* k, const void* v) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(k == nullptr || v == nullptr, "null k or v"); !s.ok()) {
      return s;
    }
    const KvLayout& layout = sequence->sequence->layout();
    return sequence->sequence->AppendToken(
        layer, clusterkv::ConstMatrixView(k, layout.dtype, layout.num_kv_heads, layout.head_dim),
        clusterkv::ConstMatrixView(v, layout.dtype, layout.num_kv_heads, layout.head_dim));
  });
}

int64_t ckv_sequence_num_tokens(const ckv_sequence* sequence) {
  return sequence == nullptr ? 0 : sequence->sequence->num_tokens();
}

int ckv_sequence_checkpoint(ckv_sequence* sequence) {
  return ckv_sequence_checkpoint_with_state(sequence, nullptr, 0);
}

int ckv_sequence_checkpoint_with_state(ckv_sequence* sequence, const void* state, size_t bytes) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    absl::StatusOr<absl::string_view> engine_state = StateBytes(state, bytes);
    if (!engine_state.ok()) return engine_state.status();
    return sequence->sequence->Checkpoint(*engine_state);
  });
}

int ckv_sequence_publish(ckv_sequence* sequence, const int32_t* tokens, int64_t count,
                         const char* model) {
  return ckv_sequence_publish_with_state(sequence, tokens, count, model, nullptr, 0);
}

int ckv_sequence_publish_with_state(ckv_sequence* sequence, const int32_t* tokens, int64_t count,
                                    const char* model, const void* state, size_t bytes) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(model == nullptr, "null model"); !s.ok()) return s;
    absl::StatusOr<absl::Span<const int32_t>> ids = TokenSpan(tokens, count);
    if (!ids.ok()) return ids.status();
    absl::StatusOr<absl::string_view> engine_state = StateBytes(state, bytes);
    if (!engine_state.ok()) return engine_state.status();
    return sequence->sequence->Publish(*ids, model, *engine_state);
  });
}

int ckv_sequence_grant(ckv_sequence* sequence, const char* tenant) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(tenant == nullptr, "null tenant"); !s.ok()) return s;
    return sequence->sequence->Grant(tenant);
  });
}

int ckv_sequence_revoke(ckv_sequence* sequence, const char* tenant) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(tenant == nullptr, "null tenant"); !s.ok()) return s;
    return sequence->sequence->Revoke(tenant);
  });
}

int ckv_sequence_read_tokens(ckv_sequence* sequence, int32_t layer, int64_t begin, int64_t end,
                             float* keys, float* values) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&sequence->last_error, [&]() -> absl::Status {
    if (absl::Status s = InvalidIf(keys == nullptr || values == nullptr, "null keys or values");
        !s.ok()) {
      return s;
    }
    return sequence->sequence->ReadTokens(layer, begin, end, keys, values);
  });
}

const char* ckv_sequence_base_document(const ckv_sequence* sequence) {
  return sequence == nullptr ? "" : sequence->sequence->base_document().c_str();
}

int64_t ckv_sequence_base_tokens(const ckv_sequence* sequence) {
  return sequence == nullptr ? 0 : sequence->sequence->base_tokens();
}

int ckv_sequence_engine_state(const ckv_sequence* sequence, const void** data, size_t* bytes) {
  if (data != nullptr) *data = nullptr;
  if (bytes != nullptr) *bytes = 0;
  if (sequence == nullptr || data == nullptr || bytes == nullptr) {
    return static_cast<int>(absl::StatusCode::kInvalidArgument);
  }
  const std::string& state = sequence->sequence->engine_state();
  *data = state.data();
  *bytes = state.size();
  return CKV_OK;
}

int ckv_sequence_resume(ckv_client* client, const char* sequence_id, ckv_sequence** sequence) {
  if (client == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&client->last_error, [&]() -> absl::Status {
    if (sequence == nullptr) return absl::InvalidArgumentError("null sequence out-pointer");
    *sequence = nullptr;
    if (sequence_id == nullptr) return absl::InvalidArgumentError("null sequence id");
    return Adopt(client->client->ResumeSequence(sequence_id), sequence);
  });
}

int ckv_client_find_prefix(ckv_client* client, const int32_t* tokens, int64_t count,
                           const char* model, int32_t num_layers, int32_t num_q_heads,
                           int32_t num_kv_heads, int32_t head_dim, int32_t dtype,
                           ckv_prefix** prefix) {
  if (client == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&client->last_error, [&]() -> absl::Status {
    if (prefix == nullptr) return absl::InvalidArgumentError("null prefix out-pointer");
    *prefix = nullptr;
    if (absl::Status s = InvalidIf(model == nullptr, "null model"); !s.ok()) return s;
    absl::StatusOr<absl::Span<const int32_t>> ids = TokenSpan(tokens, count);
    if (!ids.ok()) return ids.status();
    absl::StatusOr<KvLayout> layout =
        MakeLayout(num_layers, num_q_heads, num_kv_heads, head_dim, dtype);
    if (!layout.ok()) return layout.status();
    absl::StatusOr<std::optional<clusterkv::client::Client::StoredPrefix>> found =
        client->client->FindPrefix(*ids, model, *layout);
    if (!found.ok()) return found.status();
    if (!found->has_value()) return absl::OkStatus();  // none: OK with *prefix NULL
    auto handle = std::make_unique<ckv_prefix>();
    handle->prefix = **std::move(found);
    *prefix = handle.release();
    return absl::OkStatus();
  });
}

const char* ckv_prefix_document(const ckv_prefix* prefix) {
  return prefix == nullptr ? "" : prefix->prefix.document.c_str();
}

int32_t ckv_prefix_segments(const ckv_prefix* prefix) {
  return prefix == nullptr ? 0 : prefix->prefix.segments;
}

int64_t ckv_prefix_tokens(const ckv_prefix* prefix) {
  return prefix == nullptr ? 0 : prefix->prefix.tokens;
}

const char* ckv_prefix_owner(const ckv_prefix* prefix) {
  return prefix == nullptr ? "" : prefix->prefix.owner.c_str();
}

void ckv_prefix_free(ckv_prefix* prefix) { delete prefix; }

int ckv_sequence_open_from(ckv_client* client, const char* sequence_id, const ckv_prefix* prefix,
                           ckv_sequence** sequence) {
  if (client == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  return Guarded(&client->last_error, [&]() -> absl::Status {
    if (sequence == nullptr) return absl::InvalidArgumentError("null sequence out-pointer");
    *sequence = nullptr;
    if (sequence_id == nullptr) return absl::InvalidArgumentError("null sequence id");
    if (prefix == nullptr) return absl::InvalidArgumentError("null prefix");
    return Adopt(client->client->OpenSequenceFrom(sequence_id, prefix->prefix), sequence);
  });
}

int ckv_sequence_close(ckv_sequence* sequence, int drop) {
  if (sequence == nullptr) return static_cast<int>(absl::StatusCode::kInvalidArgument);
  std::unique_ptr<ckv_sequence> owned(sequence);
  return Guarded(nullptr, [&] { return owned->sequence->Close(drop != 0); });
}

const char* ckv_sequence_last_error(const ckv_sequence* sequence) {
  return sequence == nullptr ? "null sequence handle" : sequence->last_error.c_str();
}

const char* ckv_status_message(int code) {
  switch (code) {
    case 0:
      return "OK";
    case 1:
      return "CANCELLED";
    case 2:
      return "UNKNOWN";
    case 3:
      return "INVALID_ARGUMENT";
    case 4:
      return "DEADLINE_EXCEEDED";
    case 5:
      return "NOT_FOUND";
    case 6:
      return "ALREADY_EXISTS";
    case 7:
      return "PERMISSION_DENIED";
    case 8:
      return "RESOURCE_EXHAUSTED";
    case 9:
      return "FAILED_PRECONDITION";
    case 10:
      return "ABORTED";
    case 11:
      return "OUT_OF_RANGE";
    case 12:
      return "UNIMPLEMENTED";
    case 13:
      return "INTERNAL";
    case 14:
      return "UNAVAILABLE";
    case 15:
      return "DATA_LOSS";
    case 16:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

}  // extern "C"
