// Shared helpers of the UCX data-plane tests: a daemon with deterministic blocks, a UCX client
// transport over it, and a bit-exact check of what the daemon wrote into the client's region.
#ifndef CLUSTERKV_TESTS_INTEGRATION_UCX_TEST_UTIL_H_
#define CLUSTERKV_TESTS_INTEGRATION_UCX_TEST_UTIL_H_

#include <stdlib.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/connection.h"
#include "client/ucx_transport.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"
#include "tests/testing/blocks.h"
#include "tests/testing/daemon_process.h"

namespace clusterkv::testing::ucx_test {

// Blocks of layer 0, kv head 0: kTokens tokens of head_dim kDim in fp16.
inline constexpr int kTokens = 64;
inline constexpr int kDim = 128;
inline constexpr int kClusters = 32;
inline KvLayout Layout() { return KvLayout{2, 2, 1, kDim, DType::kFloat16}; }
inline size_t BlockSize() { return storage::ClusterBlockBytes(kTokens, kDim, DType::kFloat16); }
inline size_t PayloadSize() { return BlockSize() - kTokens * sizeof(int32_t); }

// Sets environment variables for the scope (the daemon child inherits them).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// Opens `sequence` for `tenant` and stores clusters [0, kClusters) of layer 0, head 0.
inline absl::Status PutBlocks(const std::string& target, const std::string& tenant,
                              const std::string& sequence) {
  KvCacheClient c = MakeKvCacheClient(target, tenant);
  v1::OpenSequenceRequest open;
  open.set_sequence_id(sequence);
  *open.mutable_layout() = rpc::ToProto(Layout());
  v1::OpenSequenceResponse opened;
  auto ctx = c.Context();
  if (grpc::Status s = c.stub->OpenSequence(ctx.get(), open, &opened); !s.ok()) {
    return rpc::FromGrpcStatus(s);
  }
  auto put_ctx = c.Context();
  v1::PutClustersResponse response;
  auto writer = c.stub->PutClusters(put_ctx.get(), &response);
  for (int i = 0; i < kClusters; ++i) {
    v1::PutClustersRequest request;
    request.set_sequence_id(sequence);
    v1::ClusterBlock* block = request.add_blocks();
    block->mutable_id()->set_cluster(i);
    block->set_num_tokens(kTokens);
    std::vector<uint8_t> bytes = BlockBytes(Key(tenant, sequence, 0, 0, i), BlockSize());
    block->set_data(bytes.data(), bytes.size());
    if (!writer->Write(request)) break;
  }
  writer->WritesDone();
  return rpc::FromGrpcStatus(writer->Finish());
}

struct UcxClient {
  std::unique_ptr<client::Connection> connection;
  std::unique_ptr<client::UcxTransport> transport;
};

// `fetch_spin`: how long FetchInto progresses the worker itself before it hands the wait to
// the progress thread (nullopt: the transport's default).
inline absl::StatusOr<UcxClient> MakeUcxClient(
    const std::string& target, const std::string& tenant,
    absl::Duration fetch_timeout = absl::Seconds(10),
    std::optional<absl::Duration> fetch_spin = std::nullopt) {
  UcxClient out;
  client::ConnectionOptions conn;
  conn.target = target;
  conn.tenant = tenant;
  auto connection = client::Connection::Create(conn);
  if (!connection.ok()) return connection.status();
  out.connection = *std::move(connection);
  client::UcxTransportOptions options;
  options.region_bytes = size_t{8} << 20;
  options.fetch_timeout = fetch_timeout;
  if (fetch_spin) options.fetch_spin = *fetch_spin;
  auto transport = client::UcxTransport::Create(out.connection.get(), options);
  if (!transport.ok()) return transport.status();
  out.transport = *std::move(transport);
  return out;
}

// Block i of the request goes to slot i (PayloadSize() apart), from `first_offset` on.
inline std::vector<client::DirectFetch> Requests(int count, uint64_t first_offset = 0) {
  std::vector<client::DirectFetch> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(client::DirectFetch{ClusterId{HeadId{0, 0}, i},
                                      first_offset + i * PayloadSize(), kTokens});
  }
  return out;
}

// Checks that slot `i` of the region holds block i's keys and values, bit-exact.
inline absl::Status CheckSlots(const client::UcxTransport& t, const std::string& tenant,
                               const std::string& sequence, int count, uint64_t first_offset = 0) {
  for (int i = 0; i < count; ++i) {
    std::vector<uint8_t> bytes = BlockBytes(Key(tenant, sequence, 0, 0, i), BlockSize());
    const uint8_t* slot = t.region_base() + first_offset + i * PayloadSize();
    if (std::memcmp(slot, bytes.data() + kTokens * sizeof(int32_t), PayloadSize()) != 0) {
      return absl::DataLossError(absl::StrCat("slot ", i, " differs from block ", i));
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::testing::ucx_test

#endif  // CLUSTERKV_TESTS_INTEGRATION_UCX_TEST_UTIL_H_
