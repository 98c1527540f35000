#include "tools/clusterkv_llama/park.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/sequence.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

constexpr uint32_t kParkMagic = 0x4b524150;  // "PARK"

// The engine state of a parked decode: the next input token, its position, then the local
// layers' windows (EncodeLocalWindows; empty for a model without local layers).
std::string EncodeParked(int32_t next_token, int64_t position, const std::string& windows) {
  std::string out(sizeof(kParkMagic) + sizeof(next_token) + sizeof(position), '\0');
  char* p = out.data();
  std::memcpy(p, &kParkMagic, sizeof(kParkMagic));
  std::memcpy(p + sizeof(kParkMagic), &next_token, sizeof(next_token));
  std::memcpy(p + sizeof(kParkMagic) + sizeof(next_token), &position, sizeof(position));
  return out + windows;
}

absl::Status DecodeParked(const std::string& state, int32_t* next_token, int64_t* position,
                          std::string* windows) {
  constexpr size_t kHeader = sizeof(kParkMagic) + sizeof(int32_t) + sizeof(int64_t);
  uint32_t magic = 0;
  if (state.size() < kHeader) {
    return absl::FailedPreconditionError("the session was not parked by --mode=park");
  }
  std::memcpy(&magic, state.data(), sizeof(magic));
  if (magic != kParkMagic) {
    return absl::FailedPreconditionError("the session was not parked by --mode=park");
  }
  std::memcpy(next_token, state.data() + sizeof(magic), sizeof(int32_t));
  std::memcpy(position, state.data() + sizeof(magic) + sizeof(int32_t), sizeof(int64_t));
  *windows = state.substr(kHeader);
  return absl::OkStatus();
}

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// The generated text, or the token ids for a model without a tokenizer.
std::string Text(const Tokenizer* tokenizer, const std::vector<int32_t>& ids) {
  if (tokenizer == nullptr) return absl::StrCat("token ids ", absl::StrJoin(ids, " "));
  return tokenizer->Decode(ids, /*render_special=*/false);
}

// Generates `count` greedy tokens from `next` at `position`; returns them and leaves the next
// input token and its position in `next` / `position`.
absl::StatusOr<std::vector<int32_t>> Generate(const DecoderModel& model,
                                              AttentionBackend& backend, int32_t count,
                                              int32_t* next, int64_t* position) {
  std::vector<int32_t> out;
  std::vector<float> logits(static_cast<size_t>(model.config().vocab));
  for (int32_t i = 0; i < count; ++i) {
    out.push_back(*next);
    RETURN_IF_ERROR(model.DecodeStep(*next, *position, backend, logits.data(), nullptr, nullptr));
    *next = Argmax(logits);
    ++*position;
  }
  return out;
}

// Generates `count` tokens from `next` at `position`, prints them, and parks the decode (a
// checkpoint with the next input token, its position and the local windows). Returns how many
// tokens it generated.
absl::StatusOr<size_t> GenerateAndPark(const DecoderModel& model, ClusterKvSession& session,
                                       const Tokenizer* tokenizer, int32_t count, int32_t* next,
                                       int64_t* position, std::ostream& out) {
  ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                   Generate(model, *session.backend, count, next, position));
  auto* local = dynamic_cast<LocalWindowBackend*>(session.backend.get());
  RETURN_IF_ERROR(session.sparse->sequence().Checkpoint(
      EncodeParked(*next, *position, local != nullptr ? local->SaveWindows() : std::string())));
  out << "generated: " << Text(tokenizer, tokens) << "\n";
  return tokens.size();
}

absl::Status CheckSession(const ParkOptions& o) {
  if (o.session.empty()) {
    return absl::InvalidArgumentError("--mode=park and --mode=resume need --session=NAME");
  }
  if (o.target.empty()) {
    return absl::InvalidArgumentError(
        "--mode=park and --mode=resume need --target: a daemon that outlives this process");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunPark(const ModelWeights& weights, const Tokenizer* tokenizer,
                     const std::vector<int32_t>& prompt, const ParkOptions& o,
                     std::ostream& out) {
  RETURN_IF_ERROR(CheckSession(o));
  const ModelConfig& c = weights.config;
  DecoderModel model(&weights, o.threads);
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client,
                   client::Client::Connect(ClientOptionsFor(c, o, o.budget, o.threads, 1)));
  ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> seq,
                   client->OpenSequence(o.session, c.ToKvLayout(o.kv_dtype)));
  if (seq->num_tokens() > 0) {
    return absl::AlreadyExistsError(absl::StrCat("session '", o.session,
                                                 "' exists; resume it or pick another name"));
  }
  ClusterKvSession session = WrapClusterKv(c, std::move(client), std::move(seq), o.session);
  ASSIGN_OR_RETURN(PrefillResult prefill, model.Prefill(prompt));
  RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *session.backend));
  int32_t next = Argmax(prefill.last_logits);
  int64_t position = static_cast<int64_t>(prompt.size());
  const double prefill_s = absl::ToDoubleSeconds(absl::Now() - start);
  ASSIGN_OR_RETURN(const size_t generated, GenerateAndPark(model, session, tokenizer,
                                                           o.new_tokens, &next, &position, out));
  out << absl::StrFormat(
      "parked session '%s' at token %d (prompt %d tokens, prefill + offload %.1f s, %d tokens "
      "generated); continue it with --mode=resume --session=%s\n",
      o.session, position, prompt.size(), prefill_s, generated, o.session);
  return absl::OkStatus();
}

absl::Status RunResume(const ModelWeights& weights, const Tokenizer* tokenizer,
                       const ParkOptions& o, std::ostream& out) {
  RETURN_IF_ERROR(CheckSession(o));
  const ModelConfig& c = weights.config;
  DecoderModel model(&weights, o.threads);
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client,
                   client::Client::Connect(ClientOptionsFor(c, o, o.budget, o.threads, 1)));
  ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> seq, client->ResumeSequence(o.session));
  int32_t next = 0;
  int64_t position = 0;
  std::string windows;
  RETURN_IF_ERROR(DecodeParked(seq->engine_state(), &next, &position, &windows));
  ClusterKvSession session = WrapClusterKv(c, std::move(client), std::move(seq), o.session);
  if (auto* local = dynamic_cast<LocalWindowBackend*>(session.backend.get()); local != nullptr) {
    RETURN_IF_ERROR(local->RestoreWindows(windows));
  }
  const double resume_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  ASSIGN_OR_RETURN(const size_t generated, GenerateAndPark(model, session, tokenizer,
                                                           o.new_tokens, &next, &position, out));
  out << absl::StrFormat(
      "resumed session '%s' in %.1f ms (no prefill), generated %d tokens, parked again at token "
      "%d\n",
      o.session, resume_ms, generated, position);
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
