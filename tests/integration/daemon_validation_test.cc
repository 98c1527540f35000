// Malformed requests to every RPC of the real daemon: each is answered INVALID_ARGUMENT, and
// the daemon keeps serving (a good call succeeds after every bad one, and the data put before
// the barrage is still served bit-exact after it).
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/daemon_fixture.h"

namespace clusterkv::testing {
namespace {

constexpr char kSeq[] = "valid";
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct BadCase {
  std::string name;
  std::function<grpc::Status()> call;
};

class DaemonValidationTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = Client();
    data_ = MakeSequenceData(/*seed=*/31, /*clusters=*/3, /*layers=*/2);
    ASSERT_GRPC_OK(OpenSequence(client_, kSeq));
    ASSERT_GRPC_OK(PutSequence(client_, kSeq, data_, /*write_through=*/false));
  }

  grpc::Status Open(const std::string& id, const v1::KvLayout* layout) {
    v1::OpenSequenceRequest request;
    request.set_sequence_id(id);
    if (layout != nullptr) *request.mutable_layout() = *layout;
    v1::OpenSequenceResponse response;
    return client_.stub->OpenSequence(client_.Context().get(), request, &response);
  }
  grpc::Status OpenWithLayout(const std::function<void(v1::KvLayout*)>& edit) {
    v1::KvLayout layout = TestLayout();
    edit(&layout);
    return Open("new-sequence", &layout);
  }
  grpc::Status Close(const std::string& id) {
    v1::CloseSequenceRequest request;
    request.set_sequence_id(id);
    request.set_drop(true);
    v1::CloseSequenceResponse response;
    return client_.stub->CloseSequence(client_.Context().get(), request, &response);
  }
  // One PutClusters message: a good block and index, then `edit`.
  grpc::Status Put(const std::function<void(v1::PutClustersRequest*)>& edit) {
    std::vector<v1::PutClustersRequest> messages(1);
    messages[0].set_sequence_id(kSeq);
    *messages[0].add_blocks() = data_.blocks[0];
    *messages[0].add_indexes() = data_.indexes[0];
    edit(&messages[0]);
    return PutMessages(client_, messages);
  }
  // A good first message, then a bad second one on the same stream.
  grpc::Status PutBadSecondMessage() {
    std::vector<v1::PutClustersRequest> messages(2);
    messages[0].set_sequence_id(kSeq);
    *messages[0].add_blocks() = data_.blocks[1];
    messages[1].set_sequence_id(kSeq);
    *messages[1].add_blocks() = data_.blocks[2];
    messages[1].mutable_blocks(0)->mutable_id()->set_cluster(-7);
    return PutMessages(client_, messages);
  }
  // Appends cluster 3 to head (1, 2): a good request, then `edit`.
  grpc::Status Append(const std::function<void(v1::AppendClustersRequest*)>& edit) {
    v1::AppendClustersRequest request;
    request.set_sequence_id(kSeq);
    v1::HeadIndex* appended = request.add_appended();
    appended->set_layer(1);
    appended->set_kv_head(2);
    for (int j = 0; j < 128; ++j) appended->add_centroids(j == 0 ? 1.0f : 0.0f);
    appended->add_sizes(16);
    *request.add_blocks() = MakeBlock(Ref(1, 2, 3), 16, 77);
    edit(&request);
    v1::AppendClustersResponse response;
    return client_.stub->AppendClusters(client_.Context().get(), request, &response);
  }
  grpc::Status Index(const std::string& id, std::vector<int32_t> layers) {
    v1::GetIndexRequest request;
    request.set_sequence_id(id);
    for (int32_t l : layers) request.add_layers(l);
    v1::GetIndexResponse response;
    return client_.stub->GetIndex(client_.Context().get(), request, &response);
  }
  grpc::Status FetchRefs(const std::string& id, const std::vector<v1::ClusterRef>& refs) {
    return Fetch(client_, id, refs).status;
  }
  grpc::Status Select(const std::function<void(v1::SelectRequest*)>& edit) {
    v1::SelectRequest request;
    request.set_sequence_id(kSeq);
    request.set_layer(1);
    request.set_budget(64);
    for (int i = 0; i < 8 * 128; ++i) request.add_queries(0.01f * static_cast<float>(i % 17));
    edit(&request);
    v1::SelectResponse response;
    return client_.stub->Select(client_.Context().get(), request, &response);
  }
  grpc::Status ListAs(const std::string& tenant) {
    KvCacheClient other = MakeKvCacheClient(daemon_.target(), tenant);
    v1::ListSequencesResponse response;
    return other.stub->ListSequences(other.Context().get(), v1::ListSequencesRequest(), &response);
  }

  KvCacheClient client_;
  SequenceData data_;
};

TEST_F(DaemonValidationTest, EveryRpcAnswersInvalidArgumentAndTheDaemonKeepsServing) {
  const std::string control_chars = std::string("bad\x01id", 6);
  const std::string too_long(200, 's');
  std::vector<v1::ClusterRef> too_many(65537, Ref(0, 0, 0));
  const std::vector<BadCase> cases = {
      // OpenSequence
      {"open: empty id", [&] { return Open("", nullptr); }},
      {"open: control characters in id", [&] { return Open(control_chars, nullptr); }},
      {"open: id over 128 bytes", [&] { return Open(too_long, nullptr); }},
      {"open: create without layout", [&] { return Open("new-sequence", nullptr); }},
      {"open: q heads not a multiple of kv heads",
       [&] { return OpenWithLayout([](v1::KvLayout* l) { l->set_num_q_heads(6); }); }},
      {"open: zero kv heads",
       [&] { return OpenWithLayout([](v1::KvLayout* l) { l->set_num_kv_heads(0); }); }},
      {"open: negative layers",
       [&] { return OpenWithLayout([](v1::KvLayout* l) { l->set_num_layers(-1); }); }},
      {"open: odd head_dim",
       [&] { return OpenWithLayout([](v1::KvLayout* l) { l->set_head_dim(127); }); }},
      {"open: unspecified dtype",
       [&] {
         return OpenWithLayout([](v1::KvLayout* l) { l->set_dtype(v1::DTYPE_UNSPECIFIED); });
       }},
      {"open: unknown dtype value",
       [&] {
         return OpenWithLayout([](v1::KvLayout* l) { l->set_dtype(static_cast<v1::DType>(9)); });
       }},
      // CloseSequence
      {"close: empty id", [&] { return Close(""); }},
      {"close: newline in id", [&] { return Close("line\nbreak"); }},
      // ListSequences: the tenant is its only input
      {"list: empty tenant", [&] { return ListAs(""); }},
      // PutClusters
      {"put: control characters in id",
       [&] { return Put([&](v1::PutClustersRequest* r) { r->set_sequence_id(control_chars); }); }},
      {"put: block size does not match num_tokens",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           r->mutable_blocks(0)->set_num_tokens(r->blocks(0).num_tokens() + 1);
         });
       }},
      {"put: truncated block data",
       [&] {
         return Put(
             [](v1::PutClustersRequest* r) { r->mutable_blocks(0)->mutable_data()->pop_back(); });
       }},
      {"put: zero tokens",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           r->mutable_blocks(0)->set_num_tokens(0);
           r->mutable_blocks(0)->clear_data();
         });
       }},
      {"put: negative cluster id",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           r->mutable_blocks(0)->mutable_id()->set_cluster(-1);
         });
       }},
      {"put: layer out of range",
       [&] {
         return Put(
             [](v1::PutClustersRequest* r) { r->mutable_blocks(0)->mutable_id()->set_layer(4); });
       }},
      {"put: kv head out of range",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           r->mutable_blocks(0)->mutable_id()->set_kv_head(-1);
         });
       }},
      {"put: NaN in centroids",
       [&] {
         return Put(
             [](v1::PutClustersRequest* r) { r->mutable_indexes(0)->set_centroids(5, kNaN); });
       }},
      {"put: Inf in centroids",
       [&] {
         return Put(
             [](v1::PutClustersRequest* r) { r->mutable_indexes(0)->set_centroids(0, -kInf); });
       }},
      {"put: centroid count does not match sizes",
       [&] {
         return Put([](v1::PutClustersRequest* r) { r->mutable_indexes(0)->add_centroids(0.5f); });
       }},
      {"put: key norms not one per cluster",
       [&] { return Put([](v1::PutClustersRequest* r) { r->mutable_indexes(0)->add_key_norms(1); }); }},
      {"put: negative key spread",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           v1::HeadIndex* index = r->mutable_indexes(0);
           for (int i = 0; i < index->sizes_size(); ++i) {
             index->add_key_norms(1.0f);
             index->add_key_spreads(i == 0 ? -0.5f : 0.5f);
           }
         });
       }},
      {"put: infinite key norm",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           v1::HeadIndex* index = r->mutable_indexes(0);
           for (int i = 0; i < index->sizes_size(); ++i) {
             index->add_key_norms(i == 0 ? kInf : 1.0f);
             index->add_key_spreads(0.5f);
           }
         });
       }},
      {"put: negative cluster size",
       [&] {
         return Put([](v1::PutClustersRequest* r) { r->mutable_indexes(0)->set_sizes(0, -3); });
       }},
      {"put: index layer out of range",
       [&] { return Put([](v1::PutClustersRequest* r) { r->mutable_indexes(0)->set_layer(9); }); }},
      {"put: negative num_tokens",
       [&] { return Put([](v1::PutClustersRequest* r) { r->set_num_tokens(-5); }); }},
      {"put: block above half the message limit",
       [&] {
         return Put([](v1::PutClustersRequest* r) {
           const int32_t tokens = (33 << 20) / 516 + 1;  // 516 bytes a token at fp16, d=128
           r->mutable_blocks(0)->set_num_tokens(tokens);
           r->mutable_blocks(0)->set_data(std::string(size_t{516} * tokens, '\x11'));
           r->clear_indexes();
         });
       }},
      {"put: bad second message of a stream", [&] { return PutBadSecondMessage(); }},
      // AppendClusters
      {"append: empty id",
       [&] { return Append([](v1::AppendClustersRequest* r) { r->set_sequence_id(""); }); }},
      {"append: NaN in appended centroids",
       [&] {
         return Append(
             [](v1::AppendClustersRequest* r) { r->mutable_appended(0)->set_centroids(1, kNaN); });
       }},
      {"append: block outside the appended clusters",
       [&] {
         return Append([](v1::AppendClustersRequest* r) {
           r->mutable_blocks(0)->mutable_id()->set_cluster(0);
         });
       }},
      {"append: block of another head",
       [&] {
         return Append([](v1::AppendClustersRequest* r) {
           r->mutable_blocks(0)->mutable_id()->set_kv_head(1);
         });
       }},
      {"append: block size mismatch",
       [&] {
         return Append(
             [](v1::AppendClustersRequest* r) { r->mutable_blocks(0)->set_num_tokens(17); });
       }},
      {"append: negative num_tokens",
       [&] { return Append([](v1::AppendClustersRequest* r) { r->set_num_tokens(-1); }); }},
      // GetIndex
      {"index: bad id", [&] { return Index(control_chars, {}); }},
      {"index: layer out of range",
       [&] {
         return Index(kSeq, {0, 4});
       }},
      {"index: negative layer", [&] { return Index(kSeq, {-1}); }},
      // FetchClusters
      {"fetch: bad id", [&] { return FetchRefs(control_chars, {Ref(0, 0, 0)}); }},
      {"fetch: negative cluster id",
       [&] {
         return FetchRefs(kSeq, {Ref(0, 0, 0), Ref(0, 0, -2)});
       }},
      {"fetch: layer out of range", [&] { return FetchRefs(kSeq, {Ref(4, 0, 0)}); }},
      {"fetch: kv head out of range", [&] { return FetchRefs(kSeq, {Ref(0, 4, 0)}); }},
      {"fetch: oversized list", [&] { return FetchRefs(kSeq, too_many); }},
      // Select
      {"select: bad id",
       [&] { return Select([&](v1::SelectRequest* r) { r->set_sequence_id(control_chars); }); }},
      {"select: NaN in queries",
       [&] { return Select([](v1::SelectRequest* r) { r->set_queries(200, kNaN); }); }},
      {"select: Inf in queries",
       [&] { return Select([](v1::SelectRequest* r) { r->set_queries(0, kInf); }); }},
      {"select: budget 0", [&] { return Select([](v1::SelectRequest* r) { r->set_budget(0); }); }},
      {"select: negative budget",
       [&] { return Select([](v1::SelectRequest* r) { r->set_budget(-5); }); }},
      {"select: one query value short",
       [&] { return Select([](v1::SelectRequest* r) { r->mutable_queries()->RemoveLast(); }); }},
      {"select: queries of one head only",
       [&] { return Select([](v1::SelectRequest* r) { r->mutable_queries()->Truncate(128); }); }},
      {"select: layer out of range",
       [&] { return Select([](v1::SelectRequest* r) { r->set_layer(4); }); }},
      {"select: negative layer",
       [&] { return Select([](v1::SelectRequest* r) { r->set_layer(-1); }); }},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    const grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": code " << s.error_code() << " (" << s.error_message() << ")";
    EXPECT_FALSE(s.error_message().empty()) << c.name << ": the status must say what is wrong";
    v1::StatsResponse stats;
    ASSERT_GRPC_OK(client_.stub->Stats(client_.Context().get(), v1::StatsRequest(), &stats));
  }

  // Nothing above changed the sequence: no new sequence, same blocks, same index.
  v1::ListSequencesResponse list;
  ASSERT_GRPC_OK(
      client_.stub->ListSequences(client_.Context().get(), v1::ListSequencesRequest(), &list));
  ASSERT_EQ(list.sequences_size(), 1);
  EXPECT_EQ(list.sequences(0).sequence_id(), kSeq);
  ExpectFetchMatches(client_, kSeq, data_.blocks);
  v1::GetIndexRequest index_request;
  index_request.set_sequence_id(kSeq);
  v1::GetIndexResponse index;
  ASSERT_GRPC_OK(client_.stub->GetIndex(client_.Context().get(), index_request, &index));
  ASSERT_EQ(index.indexes_size(), static_cast<int>(data_.indexes.size()));
  for (int i = 0; i < index.indexes_size(); ++i) {
    EXPECT_EQ(index.indexes(i).SerializeAsString(), data_.indexes[i].SerializeAsString());
  }
  // And a good append still works.
  ASSERT_GRPC_OK(Append([](v1::AppendClustersRequest*) {}));
  ExpectFetchMatches(client_, kSeq, {MakeBlock(Ref(1, 2, 3), 16, 77)});
}

}  // namespace
}  // namespace clusterkv::testing
