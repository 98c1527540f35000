// Connection over real gRPC without the daemon: an in-process fake KvCache service checks the
// tenant metadata, the retry of UNAVAILABLE (fake clock, no real sleeps), the PutClusters
// stream retry with ALREADY_EXISTS counted as stored, FetchClusters streaming and the status
// conversion; a fake whose FetchClusters answers raw bytes checks that the raw reading of the
// responses delivers blocks byte-exact across messages and turns a malformed or short response
// into DataLoss; plus an unreachable socket.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/connection.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/fetch_wire.h"
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

// FetchClusters answered with given raw messages, whatever the request (the other methods are
// the generated defaults).
class RawFetchKvCache final
    : public v1::KvCache::WithRawCallbackMethod_FetchClusters<v1::KvCache::Service> {
 public:
  class Writer final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
   public:
    explicit Writer(std::vector<grpc::ByteBuffer> messages) : messages_(std::move(messages)) {
      Next();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
        return;
      }
      Next();
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      if (next_ == messages_.size()) {
        Finish(grpc::Status::OK);
        return;
      }
      StartWrite(&messages_[next_++]);
    }
    std::vector<grpc::ByteBuffer> messages_;
    size_t next_ = 0;
  };

  grpc::ServerWriteReactor<grpc::ByteBuffer>* FetchClusters(grpc::CallbackServerContext*,
                                                            const grpc::ByteBuffer*) override {
    absl::MutexLock lock(&mu);
    ++fetch_calls;
    return new Writer(messages);
  }

  absl::Mutex mu;
  std::vector<grpc::ByteBuffer> messages;
  int fetch_calls = 0;
};

grpc::ByteBuffer RawBytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

v1::ClusterBlock TestBlock(int32_t cluster, size_t bytes) {
  v1::ClusterBlock block;
  block.mutable_id()->set_cluster(cluster);
  block.set_num_tokens(static_cast<int32_t>(bytes / 516));
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>((i * 131 + cluster) & 0xff);
  block.set_data(data);
  return block;
}

class RawFetchConnectionTest : public ::testing::Test {
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
    options.clock = std::make_shared<FakeClock>();
    auto conn =
        Connection::CreateWithChannel(server_->InProcessChannel(grpc::ChannelArguments()), options);
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = *std::move(conn);
  }
  void TearDown() override {
    conn_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  // Fetches and keeps a copy of every block delivered.
  absl::Status FetchAll(std::vector<v1::ClusterBlock>* got) {
    v1::FetchClustersRequest request;
    request.set_sequence_id("s");
    request.add_clusters()->set_cluster(1);
    return conn_->FetchClusters(request, [&](const v1::ClusterBlock& block) {
      got->push_back(block);
      return absl::OkStatus();
    });
  }

  RawFetchKvCache service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Connection> conn_;
};

TEST_F(RawFetchConnectionTest, BlocksArriveByteExactAcrossMessagesAndSizes) {
  // The daemon's builder (referenced and copied blocks) and plain protobuf serialization.
  const std::vector<v1::ClusterBlock> blocks = {TestBlock(1, 0),       TestBlock(2, 1),
                                                TestBlock(3, 65532),   TestBlock(4, 262128),
                                                TestBlock(5, 1048512), TestBlock(6, 516)};
  auto bytes_of = [](const v1::ClusterBlock& b) {
    return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data().data()),
                                     b.data().size());
  };
  wire::FetchResponseBuilder builder;
  builder.AddCopied(blocks[0].id(), blocks[0].num_tokens(), bytes_of(blocks[0]));
  builder.AddCopied(blocks[1].id(), blocks[1].num_tokens(), bytes_of(blocks[1]));
  service_.messages.push_back(builder.Take());
  auto owner = std::make_shared<v1::ClusterBlock>(blocks[3]);
  builder.AddCopied(blocks[2].id(), blocks[2].num_tokens(), bytes_of(blocks[2]));
  builder.AddReferenced(owner->id(), owner->num_tokens(), bytes_of(*owner), owner);
  service_.messages.push_back(builder.Take());
  v1::FetchClustersResponse last;
  *last.add_blocks() = blocks[4];
  *last.add_blocks() = blocks[5];
  service_.messages.push_back(RawBytes(last.SerializeAsString()));
  std::vector<v1::ClusterBlock> got;
  ASSERT_TRUE(FetchAll(&got).ok());
  ASSERT_EQ(got.size(), blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(got[i].SerializeAsString(), blocks[i].SerializeAsString()) << "block " << i;
  }
}

TEST_F(RawFetchConnectionTest, MalformedResponseIsDataLossAfterTheBlocksBeforeIt) {
  v1::FetchClustersResponse good;
  *good.add_blocks() = TestBlock(1, 1000);
  *good.add_blocks() = TestBlock(2, 1000);
  v1::FetchClustersResponse next;
  *next.add_blocks() = TestBlock(3, 1000);
  const std::string bytes = next.SerializeAsString();
  service_.messages.push_back(RawBytes(good.SerializeAsString()));
  service_.messages.push_back(RawBytes(bytes.substr(0, bytes.size() - 10)));  // cut short
  std::vector<v1::ClusterBlock> got;
  const absl::Status s = FetchAll(&got);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(service_.fetch_calls, 1) << "DataLoss is not retried";
}

TEST_F(RawFetchConnectionTest, GarbageResponseIsDataLoss) {
  for (const std::string& garbage :
       {std::string("\x0a\xff\xff\xff\x0f", 5), std::string(16, '\xff'), std::string("\x0b", 1),
        std::string("\x0a\x04\x1a\x7f\x00\x00", 6)}) {
    service_.messages.clear();
    service_.messages.push_back(RawBytes(garbage));
    std::vector<v1::ClusterBlock> got;
    const absl::Status s = FetchAll(&got);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_TRUE(got.empty());
  }
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
