// RequestHandler's resumable sessions and shared documents: checkpoints (PutState, GetState),
// sealing a document (SealDocument), the tenant's prefix directory (FindPrefix) and creating a
// fork of a document (CreateFork, called by OpenSequence). The fork's shared clusters are read
// under the document's key by the fetch path (FetchPlan::BlockOf).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/rpc_support.h"
#include "server/internal/document_directory.h"
#include "server/request_handler.h"
#include "server/request_validation.h"

namespace clusterkv::server {
namespace {

storage::BlockKey ChunkKey(const SequenceKey& key, int32_t layer, int32_t chunk) {
  // The engine's chunks live beside layer 0's (chunk numbers are unique per sequence).
  const int32_t stored_layer = layer == kEngineStateLayer ? 0 : layer;
  return storage::BlockKey{key, ClusterId{HeadId{stored_layer, 0}, kStateChunkBase + chunk}};
}

}  // namespace

absl::Status RequestHandler::CheckWritable(const SequenceKey& key, const Session& session) {
  if (session.sealed) {
    return absl::FailedPreconditionError(
        absl::StrCat("sequence '", key.sequence, "' is a sealed document (read-only)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SequenceState> RequestHandler::LoadState(const SequenceKey& key) {
  ASSIGN_OR_RETURN(std::string bytes, store_->GetStateRecord(key));
  v1::SequenceState state;
  if (!state.ParseFromString(bytes)) {
    return absl::DataLossError(
        absl::StrCat("session state record of '", key.sequence, "' is malformed"));
  }
  return state;
}

absl::Status RequestHandler::EnsureDirectory() {
  if (documents_->Loaded()) return absl::OkStatus();
  // Grants cross tenants, so every tenant's records are read at once.
  ASSIGN_OR_RETURN(std::vector<SequenceKey> keys, store_->ListSequences(""));
  for (const SequenceKey& key : keys) {
    absl::StatusOr<v1::SequenceState> state = LoadState(key);
    if (absl::IsNotFound(state.status())) continue;
    RETURN_IF_ERROR(state.status());
    if (state->sealed()) {
      documents_->AddDocument(key.tenant, key, state->segments());
      for (const std::string& grantee : state->grants()) {
        documents_->AddDocument(grantee, key, state->segments());
      }
    }
    if (state->has_base()) documents_->AddFork(BaseKey(key, state->base()), key);
  }
  documents_->MarkLoaded();
  return absl::OkStatus();
}

absl::StatusOr<v1::PutStateResponse> RequestHandler::PutState(const CallContext& call,
                                                              const v1::PutStateRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  RETURN_IF_ERROR(ValidatePutState(layout, request, options_.max_block_bytes));
  absl::MutexLock write(&session->write_mu);
  RETURN_IF_ERROR(CheckWritable(key, *session));
  // The committed state: its chunks are the ones a resume reads; numbers from its next_chunk
  // up belong to no committed state (a checkpoint that failed half way may have left some).
  absl::StatusOr<v1::SequenceState> committed = LoadState(key);
  if (!committed.ok() && !absl::IsNotFound(committed.status())) return committed.status();
  const int32_t uncommitted_from = committed.ok() ? committed->next_chunk() : 0;
  const std::optional<bool> durable =
      request.write_through() ? std::optional<bool>(true) : std::optional<bool>();
  for (const v1::StateChunk& chunk : request.chunks()) {
    const storage::BlockKey block_key = ChunkKey(key, chunk.layer(), chunk.chunk());
    const auto* data = reinterpret_cast<const uint8_t*>(chunk.data().data());
    const absl::Span<const uint8_t> bytes = absl::MakeConstSpan(data, chunk.data().size());
    absl::Status stored = store_->PutBlock(block_key, bytes, durable);
    if (!absl::IsAlreadyExists(stored)) {
      RETURN_IF_ERROR(stored);
      continue;
    }
    // A retried checkpoint re-sends its chunks: the same bytes are success.
    ASSIGN_OR_RETURN(std::vector<uint8_t> have, store_->GetBlock(block_key));
    if (have.size() == bytes.size() && std::equal(have.begin(), have.end(), data)) continue;
    if (chunk.chunk() < uncommitted_from) {
      return absl::AlreadyExistsError(absl::StrCat("state chunk ", chunk.chunk(), " of layer ",
                                                   chunk.layer(), " exists with other bytes"));
    }
    // Left by a checkpoint that never committed (its process died): replaced.
    RETURN_IF_ERROR(store_->DeleteBlock(block_key));
    RETURN_IF_ERROR(store_->PutBlock(block_key, bytes, durable));
  }
  v1::SequenceState state = request.state();
  state.set_sealed(false);
  state.clear_segments();
  state.clear_base();
  if (session->base != nullptr) {
    // The fork's base is the daemon's record (written when the fork was made), never the
    // client's.
    RETURN_IF_ERROR(committed.status());
    *state.mutable_base() = committed->base();
  }
  RETURN_IF_ERROR(store_->PutStateRecord(key, state.SerializeAsString()));
  // Chunks the previous state named and this one does not (window rows since clustered and
  // offloaded) are no longer needed.
  if (committed.ok()) {
    absl::flat_hash_set<std::pair<int32_t, int32_t>> named;
    for (const v1::LayerCheckpoint& l : state.layers()) {
      for (int32_t chunk : l.chunks()) named.emplace(l.layer(), chunk);
    }
    for (int32_t chunk : state.engine_chunks()) named.emplace(kEngineStateLayer, chunk);
    auto drop_unnamed = [&](int32_t layer, int32_t chunk) -> absl::Status {
      if (named.contains(std::pair{layer, chunk})) return absl::OkStatus();
      const absl::Status dropped = store_->DeleteBlock(ChunkKey(key, layer, chunk));
      return absl::IsNotFound(dropped) ? absl::OkStatus() : dropped;
    };
    for (const v1::LayerCheckpoint& l : committed->layers()) {
      for (int32_t chunk : l.chunks()) RETURN_IF_ERROR(drop_unnamed(l.layer(), chunk));
    }
    for (int32_t chunk : committed->engine_chunks()) {
      RETURN_IF_ERROR(drop_unnamed(kEngineStateLayer, chunk));
    }
  }
  RETURN_IF_ERROR(UpdateTokens(key, *session, state.num_tokens(), /*grow_only=*/true));
  return v1::PutStateResponse();
}

absl::StatusOr<v1::GetStateResponse> RequestHandler::GetState(const CallContext& call,
                                                              const v1::GetStateRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  if (request.layers_size() > layout.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("GetState names ", request.layers_size(),
                                                   " layers; the sequence has ",
                                                   layout.num_layers));
  }
  std::vector<bool> named(static_cast<size_t>(layout.num_layers), false);
  for (int32_t layer : request.layers()) {
    if (layer < 0 || layer >= layout.num_layers || named[static_cast<size_t>(layer)]) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, " is out of range or named twice"));
    }
    named[static_cast<size_t>(layer)] = true;
  }
  v1::GetStateResponse response;
  absl::StatusOr<v1::SequenceState> state = LoadState(key);
  if (absl::IsNotFound(state.status())) return response;
  RETURN_IF_ERROR(state.status());
  bool engine_state = request.engine_state();
  if (request.base()) {
    // A fork reads what it shares of its document, whichever tenant owns the document.
    if (!state->has_base()) {
      return absl::FailedPreconditionError(
          absl::StrCat("'", key.sequence, "' is not a fork of a document"));
    }
    const v1::BaseDocument base = state->base();
    key = BaseKey(key, base);
    ASSIGN_OR_RETURN(state, LoadState(key));
    // The engine state belongs to the document's end: only a fork of all of it gets it.
    engine_state = engine_state && state->num_tokens() == base.tokens();
  }
  uint64_t bytes = 0;
  auto add_chunk = [&](int32_t layer, int32_t chunk) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<uint8_t> data, store_->GetBlock(ChunkKey(key, layer, chunk)));
    bytes += data.size();
    if (bytes > options_.max_response_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the state of the named layers exceeds ", options_.max_response_bytes,
          " bytes; ask for fewer layers at a time"));
    }
    v1::StateChunk* out = response.add_chunks();
    out->set_layer(layer);
    out->set_chunk(chunk);
    out->set_data(data.data(), data.size());
    return absl::OkStatus();
  };
  for (const v1::LayerCheckpoint& l : state->layers()) {
    if (l.layer() < 0 || l.layer() >= layout.num_layers || !named[static_cast<size_t>(l.layer())]) {
      continue;
    }
    for (int32_t chunk : l.chunks()) RETURN_IF_ERROR(add_chunk(l.layer(), chunk));
  }
  if (engine_state) {
    for (int32_t chunk : state->engine_chunks()) {
      RETURN_IF_ERROR(add_chunk(kEngineStateLayer, chunk));
    }
  }
  *response.mutable_state() = *std::move(state);
  return response;
}

absl::StatusOr<v1::SealDocumentResponse> RequestHandler::SealDocument(
    const CallContext& call, const v1::SealDocumentRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  RETURN_IF_ERROR(ValidateDocumentSegments(layout, request.segments()));
  RETURN_IF_ERROR(EnsureDirectory());
  absl::MutexLock write(&session->write_mu);
  if (session->sealed) {
    // A retried seal that landed: the same segments are success.
    ASSIGN_OR_RETURN(v1::SequenceState sealed, LoadState(key));
    if (sealed.segments().SerializeAsString() == request.segments().SerializeAsString()) {
      return v1::SealDocumentResponse();
    }
    return absl::FailedPreconditionError(
        absl::StrCat("'", key.sequence, "' is sealed already, with other segments"));
  }
  if (session->base != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", key.sequence, "' is a fork; only a sequence of its own can be sealed"));
  }
  absl::StatusOr<v1::SequenceState> state = LoadState(key);
  if (absl::IsNotFound(state.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", key.sequence, "' has no checkpoint to seal (PutState first)"));
  }
  RETURN_IF_ERROR(state.status());
  const v1::DocumentSegments& segments = request.segments();
  const int n = segments.hashes_size();
  if (segments.tokens(n - 1) > state->num_tokens()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the segments end at token ", segments.tokens(n - 1), "; the checkpoint holds ",
        state->num_tokens()));
  }
  // Every segment's clusters must exist: a fork reads them.
  for (int32_t l = 0; l < layout.num_layers; ++l) {
    const int32_t needed = segments.clusters((n - 1) * layout.num_layers + l);
    if (needed == 0) continue;
    for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
      ASSIGN_OR_RETURN(std::shared_ptr<const storage::HeadIndexRecord> index,
                       FindIndex(key, *session, HeadId{l, h}));
      if (index->num_clusters() < needed) {
        return absl::FailedPreconditionError(absl::StrCat(
            "layer ", l, " kv head ", h, " holds ", index->num_clusters(),
            " clusters; the segments name ", needed));
      }
    }
  }
  state->set_sealed(true);
  *state->mutable_segments() = segments;
  RETURN_IF_ERROR(store_->PutStateRecord(key, state->SerializeAsString()));
  {
    absl::MutexLock lock(&mu_);
    session->sealed = true;
  }
  documents_->AddDocument(key.tenant, key, segments);
  return v1::SealDocumentResponse();
}

absl::StatusOr<v1::FindPrefixResponse> RequestHandler::FindPrefix(
    const CallContext& call, const v1::FindPrefixRequest& request) {
  if (call.tenant.empty()) return absl::InvalidArgumentError("tenant is empty");
  if (request.hashes_size() > kMaxDocumentSegments) {
    return absl::InvalidArgumentError(absl::StrCat("FindPrefix names ", request.hashes_size(),
                                                   " segments; the limit is ",
                                                   kMaxDocumentSegments));
  }
  std::vector<const std::string*> hashes;
  for (const std::string& hash : request.hashes()) {
    if (hash.size() < kMinSegmentHashBytes || hash.size() > kMaxSegmentHashBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("a segment hash has ", hash.size(), " bytes; 16 to 64 are accepted"));
    }
    hashes.push_back(&hash);
  }
  RETURN_IF_ERROR(EnsureDirectory());
  v1::FindPrefixResponse response;
  if (std::optional<DocumentDirectory::Match> match = documents_->Find(call.tenant, hashes)) {
    response.set_document(match->document.sequence);
    response.set_segments(match->segments);
    response.set_tokens(match->tokens);
    if (match->document.tenant != call.tenant) response.set_owner(match->document.tenant);
  }
  return response;
}

absl::StatusOr<v1::GrantDocumentResponse> RequestHandler::GrantDocument(
    const CallContext& call, const v1::GrantDocumentRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  // The grantee names a tenant: the same rules as any id.
  RETURN_IF_ERROR((SequenceKey{request.tenant(), "grant"}.Validate()));
  if (request.tenant() == key.tenant) {
    return absl::InvalidArgumentError("a tenant always sees its own documents");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  RETURN_IF_ERROR(EnsureDirectory());
  absl::MutexLock write(&session->write_mu);
  if (!session->sealed) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", key.sequence, "' is not a sealed document"));
  }
  ASSIGN_OR_RETURN(v1::SequenceState state, LoadState(key));
  auto* grants = state.mutable_grants();
  auto it = std::find(grants->begin(), grants->end(), request.tenant());
  if (request.revoke()) {
    if (it == grants->end()) return v1::GrantDocumentResponse();
    grants->erase(it);
  } else {
    if (it != grants->end()) return v1::GrantDocumentResponse();
    if (grants->size() >= kMaxDocumentGrants) {
      return absl::ResourceExhaustedError(absl::StrCat("a document is shared with at most ",
                                                       kMaxDocumentGrants, " tenants"));
    }
    *grants->Add() = request.tenant();
  }
  RETURN_IF_ERROR(store_->PutStateRecord(key, state.SerializeAsString()));
  if (request.revoke()) {
    documents_->RemoveViewer(request.tenant(), key);
  } else {
    documents_->AddDocument(request.tenant(), key, state.segments());
  }
  return v1::GrantDocumentResponse();
}

absl::Status RequestHandler::CreateFork(const SequenceKey& key, const KvLayout& layout,
                                        const v1::OpenSequenceRequest& request) {
  const SequenceKey document{
      request.base_owner().empty() ? key.tenant : request.base_owner(), request.base_document()};
  RETURN_IF_ERROR(document.Validate());
  RETURN_IF_ERROR(EnsureDirectory());
  const absl::Status not_found =
      absl::NotFoundError(absl::StrCat("no sequence '", document.sequence, "'"));
  // Another tenant's document exists for the caller only through a grant: without one it
  // answers as a missing document does, from memory, before the store is touched (no timing
  // difference between a document that exists and one that does not).
  if (document.tenant != key.tenant && !documents_->Visible(key.tenant, document)) {
    return not_found;
  }
  absl::StatusOr<std::shared_ptr<Session>> found = FindSession(document);
  if (absl::IsNotFound(found.status())) return not_found;
  RETURN_IF_ERROR(found.status());
  std::shared_ptr<Session> doc = *std::move(found);
  absl::StatusOr<v1::SequenceState> doc_state = LoadState(document);
  if (!doc_state.ok() && !absl::IsNotFound(doc_state.status())) return doc_state.status();
  if (!doc_state.ok() || !doc_state->sealed()) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", document.sequence, "' is not a sealed document"));
  }
  if (doc->layout != layout) {
    return absl::FailedPreconditionError(
        absl::StrCat("document '", document.sequence, "' has layout ", doc->layout.DebugString(),
                     ", not ", layout.DebugString()));
  }
  const v1::DocumentSegments& segments = doc_state->segments();
  const int32_t j = request.base_segments();
  if (j < 1 || j > segments.hashes_size()) {
    return absl::FailedPreconditionError(absl::StrCat("document '", document.sequence, "' has ",
                                                      segments.hashes_size(),
                                                      " segments; the fork asks for ", j));
  }
  v1::SequenceState state;
  v1::BaseDocument* base = state.mutable_base();
  base->set_document(document.sequence);
  if (document.tenant != key.tenant) base->set_owner(document.tenant);
  base->set_segments(j);
  base->set_tokens(segments.tokens(j - 1));
  for (int32_t l = 0; l < layout.num_layers; ++l) {
    base->add_clusters(segments.clusters((j - 1) * layout.num_layers + l));
  }
  // The fork's indexes start as the document's, cut at the segment: its own appends extend
  // them. Centroids are small; the blocks stay shared.
  for (int32_t l = 0; l < layout.num_layers; ++l) {
    const int32_t clusters = base->clusters(l);
    if (clusters == 0) continue;
    for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
      ASSIGN_OR_RETURN(std::shared_ptr<const storage::HeadIndexRecord> index,
                       FindIndex(document, *doc, HeadId{l, h}));
      storage::HeadIndexRecord cut = *index;
      cut.centroids.resize(static_cast<size_t>(clusters) * layout.head_dim);
      cut.sizes.resize(static_cast<size_t>(clusters));
      if (cut.has_key_stats()) {
        cut.key_norms.resize(static_cast<size_t>(clusters));
        cut.key_spreads.resize(static_cast<size_t>(clusters));
      }
      RETURN_IF_ERROR(store_->PutIndex(key, HeadId{l, h}, cut));
    }
  }
  state.set_num_tokens(base->tokens());
  RETURN_IF_ERROR(store_->PutStateRecord(key, state.SerializeAsString()));
  RETURN_IF_ERROR(store_->PutSequence(key, storage::SequenceMeta{layout, base->tokens()}));
  documents_->AddFork(document, key);
  return absl::OkStatus();
}

}  // namespace clusterkv::server
