// Connection over real gRPC without the daemon: an in-process fake KvCache service checks the
// tenant metadata, the retry of UNAVAILABLE (fake clock, no real sleeps), the PutClusters
// stream retry with ALREADY_EXISTS counted as stored, FetchClusters streaming and the status
// conversion; plus an unreachable socket.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/connection.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/rpc_support.h"

namespace clusterkv::client {
namespace {

class FakeClock final : public Clock {
 public:
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void SleepFor(absl::Duration d) override {
    absl::MutexLock lock(&mu_);
    sleeps_ += 1;
    now_ += d;
  }
  int sleeps() {
    absl::MutexLock lock(&mu_);
    return sleeps_;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ = absl::Now();  // deadlines are real gRPC deadlines: start from real time
  int sleeps_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string Tenant(grpc::ServerContext* context) {
  auto it = context->client_metadata().find(rpc::kTenantMetadataKey);
  if (it == context->client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// A strict store: a block stored once answers ALREADY_EXISTS for the whole stream.
class FakeKvCache final : public v1::KvCache::Service {
 public:
  grpc::Status OpenSequence(grpc::ServerContext* context, const v1::OpenSequenceRequest* request,
                            v1::OpenSequenceResponse* response) override {
    absl::MutexLock lock(&mu);
    tenants.push_back(Tenant(context));
    if (open_failures > 0) {
      --open_failures;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "starting up");
    }
    response->set_created(true);
    *response->mutable_layout() = request->layout();
    return grpc::Status::OK;
  }
  grpc::Status GetIndex(grpc::ServerContext*, const v1::GetIndexRequest* request,
                        v1::GetIndexResponse*) override {
    absl::MutexLock lock(&mu);
    ++get_index_calls;
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no sequence " + request->sequence_id());
  }
  grpc::Status PutClusters(grpc::ServerContext*, grpc::ServerReader<v1::PutClustersRequest>* reader,
                           v1::PutClustersResponse* response) override {
    v1::PutClustersRequest message;
    absl::MutexLock lock(&mu);
    ++put_streams;
    while (reader->Read(&message)) {
      for (const v1::ClusterBlock& block : message.blocks()) {
        const int32_t id = block.id().cluster();
        if (stored.count(id) > 0) {
          return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "block exists");
        }
        stored.insert(id);
        response->set_blocks_stored(response->blocks_stored() + 1);
      }
      indexes += message.indexes_size();
      if (lose_first_put_response && put_streams == 1 && message.indexes_size() > 0) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset");
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status FetchClusters(grpc::ServerContext*, const v1::FetchClustersRequest* request,
                             grpc::ServerWriter<v1::FetchClustersResponse>* writer) override {
    {
      absl::MutexLock lock(&mu);
      ++fetch_calls;
    }
    for (const v1::ClusterRef& ref : request->clusters()) {
      v1::FetchClustersResponse response;
      v1::ClusterBlock* block = response.add_blocks();
      *block->mutable_id() = ref;
      block->set_num_tokens(1);
      block->set_data(std::string(12, static_cast<char>(ref.cluster())));
      writer->Write(response);
    }
    return grpc::Status::OK;
  }

  absl::Mutex mu;
  int open_failures = 0;
  bool lose_first_put_response = false;
  std::vector<std::string> tenants;
  int get_index_calls = 0;
  int put_streams = 0;
  int fetch_calls = 0;
  int indexes = 0;
  std::set<int32_t> stored;
};

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ConnectionOptions options;
    options.target = "in-process";
    options.tenant = "tenant-a";
    options.retry.max_attempts = 4;
    options.clock = clock_;
    auto conn =
        Connection::CreateWithChannel(server_->InProcessChannel(grpc::ChannelArguments()), options);
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = *std::move(conn);
  }
  void TearDown() override {
    conn_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  FakeKvCache service_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Connection> conn_;
};

TEST_F(ConnectionTest, SendsTenantAndRetriesUnavailable) {
  service_.open_failures = 2;
  v1::OpenSequenceRequest request;
  request.set_sequence_id("s");
  request.mutable_layout()->set_num_layers(3);
  auto response = conn_->OpenSequence(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->layout().num_layers(), 3);
  EXPECT_EQ(clock_->sleeps(), 2);
  ASSERT_EQ(service_.tenants.size(), 3u);
  for (const std::string& t : service_.tenants) EXPECT_EQ(t, "tenant-a");
}

TEST_F(ConnectionTest, GivesUpAfterMaxAttempts) {
  service_.open_failures = 100;
  auto response = conn_->OpenSequence(v1::OpenSequenceRequest());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.tenants.size(), 4u);
  EXPECT_EQ(clock_->sleeps(), 3);
}

TEST_F(ConnectionTest, DaemonAnswersAreConvertedNotRetried) {
  v1::GetIndexRequest request;
  request.set_sequence_id("missing");
  auto response = conn_->GetIndex(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(response.status().message().find("missing"), absl::string_view::npos);
  EXPECT_EQ(service_.get_index_calls, 1);
  EXPECT_EQ(clock_->sleeps(), 0);
}

std::vector<v1::PutClustersRequest> Stream(int blocks, int per_message) {
  std::vector<v1::PutClustersRequest> out;
  for (int b = 0; b < blocks; ++b) {
    if (b % per_message == 0) out.emplace_back().set_sequence_id("s");
    v1::ClusterBlock* block = out.back().add_blocks();
    block->mutable_id()->set_cluster(b);
    block->set_num_tokens(1);
    block->set_data(std::string(12, 'x'));
  }
  out.back().add_indexes()->set_layer(0);
  out.back().set_num_tokens(blocks);
  return out;
}

TEST_F(ConnectionTest, PutStreamsEveryMessage) {
  auto response = conn_->PutClusters(Stream(7, 3));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->blocks_stored(), 7);
  EXPECT_EQ(service_.stored.size(), 7u);
  EXPECT_EQ(service_.indexes, 1);
  EXPECT_EQ(service_.put_streams, 1);
}

TEST_F(ConnectionTest, RetriedPutCountsExistingBlocksAsStored) {
  // The first stream stores everything but its answer is lost; the retry meets ALREADY_EXISTS
  // and the connection falls back to block-by-block puts.
  service_.lose_first_put_response = true;
  auto response = conn_->PutClusters(Stream(5, 2));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(service_.stored.size(), 5u);
  EXPECT_GE(service_.indexes, 2);  // the index was re-sent after the blocks
  EXPECT_GE(clock_->sleeps(), 1);
}

TEST_F(ConnectionTest, FirstAttemptAlreadyExistsIsAnError) {
  service_.stored = {0};
  auto response = conn_->PutClusters(Stream(3, 3));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ConnectionTest, FetchDeliversBlocksInOrder) {
  v1::FetchClustersRequest request;
  request.set_sequence_id("s");
  for (int c : {4, 1, 9}) request.add_clusters()->set_cluster(c);
  std::vector<int32_t> seen;
  absl::Status s = conn_->FetchClusters(request, [&](const v1::ClusterBlock& block) {
    seen.push_back(block.id().cluster());
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen, (std::vector<int32_t>{4, 1, 9}));
}

TEST_F(ConnectionTest, FetchCallbackErrorEndsTheCallWithoutRetry) {
  v1::FetchClustersRequest request;
  for (int c : {1, 2, 3}) request.add_clusters()->set_cluster(c);
  int calls = 0;
  absl::Status s = conn_->FetchClusters(request, [&](const v1::ClusterBlock&) {
    return ++calls == 2 ? absl::UnavailableError("device busy") : absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(service_.fetch_calls, 1);
}

TEST(ConnectionNoDaemonTest, UnreachableSocketIsUnavailable) {
  auto clock = std::make_shared<FakeClock>();
  ConnectionOptions options;
  options.target = "unix:/nonexistent-clusterkv-dir/clusterkvd.sock";
  options.tenant = "t";
  options.retry.max_attempts = 3;
  options.clock = clock;
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto stats = (*conn)->Stats();
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(clock->sleeps(), 2);
}

TEST(ConnectionNoDaemonTest, OptionsAreValidated) {
  ConnectionOptions options;
  options.tenant = "t";
  EXPECT_EQ(Connection::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.target = "unix:/x";
  options.tenant = "";
  EXPECT_EQ(Connection::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.tenant = "bad\ntenant";
  EXPECT_EQ(Connection::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.tenant = "t";
  options.max_message_bytes = 100;
  EXPECT_EQ(Connection::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clusterkv::client
