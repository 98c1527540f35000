#include "server/cluster/peer_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/rpc_support.h"

namespace clusterkv::server::cluster {

PeerClient::PeerClient(std::string node_id, std::string address,
                       std::shared_ptr<grpc::Channel> channel, const PeerOptions* options)
    : node_id_(std::move(node_id)),
      address_(std::move(address)),
      channel_(std::move(channel)),
      stub_(v1::KvCache::NewStub(channel_)),
      options_(options) {}

void PeerClient::Prepare(grpc::ClientContext* context, const std::string& tenant) const {
  context->AddMetadata("authorization", options_->authorization);
  context->AddMetadata(rpc::kTenantMetadataKey, tenant);
  const absl::Time now = options_->clock != nullptr ? options_->clock->Now() : SystemClock().Now();
  context->set_deadline(absl::ToChronoTime(now + options_->timeout));
}

absl::Status PeerClient::Convert(const grpc::Status& status) const {
  absl::Status s = rpc::FromGrpcStatus(status);
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("node ", node_id_, ": ", s.message()));
}

absl::StatusOr<v1::OpenSequenceResponse> PeerClient::OpenSequence(
    const std::string& tenant, const v1::OpenSequenceRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::OpenSequenceResponse response;
  absl::Status s = Convert(stub_->OpenSequence(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::Status PeerClient::CloseSequence(const std::string& tenant,
                                       const v1::CloseSequenceRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::CloseSequenceResponse response;
  return Convert(stub_->CloseSequence(&context, request, &response));
}

absl::StatusOr<v1::ListSequencesResponse> PeerClient::ListSequences(
    const std::string& tenant, const v1::ListSequencesRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::ListSequencesResponse response;
  absl::Status s = Convert(stub_->ListSequences(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<v1::PutClustersResponse> PeerClient::PutClusters(
    const std::string& tenant, const v1::PutClustersRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::PutClustersResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::PutClustersRequest>> writer =
      stub_->PutClusters(&context, &response);
  writer->Write(request);  // on failure, Finish says why
  writer->WritesDone();
  absl::Status s = Convert(writer->Finish());
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<v1::AppendClustersResponse> PeerClient::AppendClusters(
    const std::string& tenant, const v1::AppendClustersRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::AppendClustersResponse response;
  absl::Status s = Convert(stub_->AppendClusters(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<v1::GetIndexResponse> PeerClient::GetIndex(const std::string& tenant,
                                                          const v1::GetIndexRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::GetIndexResponse response;
  absl::Status s = Convert(stub_->GetIndex(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<v1::SelectResponse> PeerClient::Select(const std::string& tenant,
                                                      const v1::SelectRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  v1::SelectResponse response;
  absl::Status s = Convert(stub_->Select(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::Status PeerClient::FetchClusters(
    const std::string& tenant, const v1::FetchClustersRequest& request,
    const std::function<absl::Status(v1::ClusterBlock& block)>& on_block) {
  grpc::ClientContext context;
  Prepare(&context, tenant);
  std::unique_ptr<grpc::ClientReader<v1::FetchClustersResponse>> reader =
      stub_->FetchClusters(&context, request);
  v1::FetchClustersResponse message;
  absl::Status sink;
  while (sink.ok() && reader->Read(&message)) {
    for (v1::ClusterBlock& block : *message.mutable_blocks()) {
      sink = on_block(block);
      if (!sink.ok()) break;
    }
  }
  if (!sink.ok()) {
    context.TryCancel();
    (void)reader->Finish();
    return sink;
  }
  return Convert(reader->Finish());
}

PeerClient* PeerPool::Get(const std::string& node_id, const std::string& address) {
  absl::MutexLock lock(&mu_);
  Entry& entry = clients_[node_id];
  if (entry.client != nullptr && entry.address == address) return entry.client.get();
  if (entry.client != nullptr) retired_.push_back(std::move(entry.client));
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(options_.max_message_bytes);
  args.SetMaxReceiveMessageSize(options_.max_message_bytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options_.tls_root_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls_root_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options_.tls_target_name.empty()) {
      args.SetSslTargetNameOverride(options_.tls_target_name);
    }
  }
  entry.address = address;
  entry.client = std::make_unique<PeerClient>(
      node_id, address, grpc::CreateCustomChannel(address, credentials, args), &options_);
  return entry.client.get();
}

}  // namespace clusterkv::server::cluster
