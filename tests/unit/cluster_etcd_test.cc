// EtcdClient (server/cluster/etcd_client.h) against a real etcd started by the test: put / get /
// prefix range / delete, transactions (a claim raced by two clients: exactly one wins; compare
// on mod revision), leases (grant, keepalive, revoke, expiry removes the lease's keys), and the
// error paths (etcd unreachable, a body that is not etcd's JSON).
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/cluster/etcd_client.h"
#include "server/cluster/testing/etcd_process.h"

namespace clusterkv::server::cluster {
namespace {



class EtcdClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    etcd_ = new EtcdProcess();
    start_status_ = new absl::Status(etcd_->Start());
  }
  static void TearDownTestSuite() {
    delete etcd_;
    delete start_status_;
  }
  void SetUp() override {
    if (absl::IsFailedPrecondition(*start_status_)) GTEST_SKIP() << *start_status_;
    ASSERT_TRUE(start_status_->ok()) << *start_status_;
    // Each test works under its own prefix of the shared etcd.
    prefix_ = absl::StrCat("/test/", ::testing::UnitTest::GetInstance()->current_test_info()->name(), "/");
  }

  static std::unique_ptr<EtcdClient> NewClient() {
    absl::StatusOr<std::unique_ptr<EtcdTransport>> t =
        MakeHttpEtcdTransport({etcd_->endpoint(), absl::Seconds(2), absl::Seconds(5)});
    EXPECT_TRUE(t.ok()) << t.status();
    return std::make_unique<EtcdClient>(*std::move(t));
  }

  std::string Key(const std::string& name) const { return prefix_ + name; }

  static EtcdProcess* etcd_;
  static absl::Status* start_status_;
  std::string prefix_;
};

EtcdProcess* EtcdClientTest::etcd_ = nullptr;
absl::Status* EtcdClientTest::start_status_ = nullptr;

TEST_F(EtcdClientTest, PutGetDeleteRoundTripBinarySafe) {
  auto etcd = NewClient();
  const std::string value("bytes \0\x01\xff with nul", 19);
  absl::StatusOr<int64_t> rev = etcd->Put(Key("a"), value);
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_GT(*rev, 0);
  absl::StatusOr<std::optional<EtcdKeyValue>> got = etcd->Get(Key("a"));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->key, Key("a"));
  EXPECT_EQ((*got)->value, value);
  EXPECT_EQ((*got)->create_revision, *rev);
  EXPECT_EQ((*got)->mod_revision, *rev);
  EXPECT_EQ((*got)->version, 1);

  absl::StatusOr<int64_t> rev2 = etcd->Put(Key("a"), "second");
  ASSERT_TRUE(rev2.ok());
  got = etcd->Get(Key("a"));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->create_revision, *rev);  // same incarnation
  EXPECT_EQ((*got)->mod_revision, *rev2);
  EXPECT_EQ((*got)->version, 2);

  absl::StatusOr<int64_t> deleted = etcd->Delete(Key("a"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  got = etcd->Get(Key("a"));
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
  deleted = etcd->Delete(Key("a"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 0);
}

TEST_F(EtcdClientTest, RangeReturnsExactlyThePrefixInKeyOrder) {
  auto etcd = NewClient();
  for (const char* k : {"dir/b", "dir/a", "dir/c/d", "dir0", "dia", "dir"}) {
    ASSERT_TRUE(etcd->Put(Key(k), k).ok());
  }
  absl::StatusOr<std::vector<EtcdKeyValue>> kvs = etcd->Range(Key("dir/"));
  ASSERT_TRUE(kvs.ok()) << kvs.status();
  std::vector<std::string> keys;
  for (const EtcdKeyValue& kv : *kvs) keys.push_back(kv.key.substr(prefix_.size()));
  EXPECT_EQ(keys, (std::vector<std::string>{"dir/a", "dir/b", "dir/c/d"}));
  absl::StatusOr<std::vector<EtcdKeyValue>> none = etcd->Range(Key("nothing/"));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(absl::IsInvalidArgument(etcd->Range("").status()));
}

TEST(PrefixRangeEndTest, IncrementsTheLastByteThatCanBe) {
  EXPECT_EQ(PrefixRangeEnd("/a/"), "/a0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST_F(EtcdClientTest, TwoClaimantsRacingOneKeyExactlyOneWins) {
  constexpr int kRounds = 20;
  auto a = NewClient();
  auto b = NewClient();
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = Key(absl::StrCat("claim-", round));
    absl::Barrier* start = new absl::Barrier(2);
    absl::StatusOr<bool> won_a = false, won_b = false;
    std::thread ta([&] {
      if (start->Block()) delete start;
      won_a = a->PutIfAbsent(key, "a");
    });
    std::thread tb([&] {
      if (start->Block()) delete start;
      won_b = b->PutIfAbsent(key, "b");
    });
    ta.join();
    tb.join();
    ASSERT_TRUE(won_a.ok()) << won_a.status();
    ASSERT_TRUE(won_b.ok()) << won_b.status();
    EXPECT_NE(*won_a, *won_b) << "round " << round << ": exactly one claim must succeed";
    absl::StatusOr<std::optional<EtcdKeyValue>> got = a->Get(key);
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ((*got)->value, *won_a ? "a" : "b");
    // A later claim of the existing key fails and leaves it untouched.
    absl::StatusOr<bool> again = b->PutIfAbsent(key, "late");
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(*again);
  }
}

TEST_F(EtcdClientTest, TxnComparesModRevisionAndReportsTheFailureBranch) {
  auto etcd = NewClient();
  absl::StatusOr<int64_t> rev = etcd->Put(Key("owner"), "node-1");
  ASSERT_TRUE(rev.ok());
  // Compare-and-swap on the revision seen: succeeds once, then fails (the revision moved on).
  for (int i = 0; i < 2; ++i) {
    EtcdTxn txn;
    txn.compares.push_back({Key("owner"), EtcdCompare::Target::kModRevision, *rev});
    txn.success.push_back({EtcdOp::Kind::kPut, Key("owner"), "node-2", 0});
    txn.failure.push_back({EtcdOp::Kind::kGet, Key("owner"), "", 0});
    txn.failure.push_back({EtcdOp::Kind::kGet, Key("absent"), "", 0});
    absl::StatusOr<EtcdTxnResult> result = etcd->Txn(txn);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->succeeded, i == 0);
    if (i == 1) {
      ASSERT_EQ(result->gets.size(), 2u);
      ASSERT_TRUE(result->gets[0].has_value());
      EXPECT_EQ(result->gets[0]->value, "node-2");
      EXPECT_FALSE(result->gets[1].has_value());
    }
  }
  // Two compares are ANDed: the key exists (create_revision != 0) fails the claim.
  EtcdTxn both;
  both.compares.push_back({Key("owner"), EtcdCompare::Target::kCreateRevision, 0});
  both.compares.push_back({Key("other"), EtcdCompare::Target::kCreateRevision, 0});
  both.success.push_back({EtcdOp::Kind::kDelete, Key("owner"), "", 0});
  absl::StatusOr<EtcdTxnResult> result = etcd->Txn(both);
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->succeeded);
  absl::StatusOr<std::optional<EtcdKeyValue>> still = etcd->Get(Key("owner"));
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->has_value());
}

TEST_F(EtcdClientTest, LeaseKeepAliveRevokeDeletesItsKeys) {
  auto etcd = NewClient();
  absl::StatusOr<EtcdLease> lease = etcd->LeaseGrant(absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(lease->id, 0);
  EXPECT_EQ(lease->ttl, absl::Seconds(30));
  ASSERT_TRUE(etcd->Put(Key("member"), "x", lease->id).ok());
  absl::StatusOr<std::optional<EtcdKeyValue>> got = etcd->Get(Key("member"));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->lease, lease->id);

  absl::StatusOr<absl::Duration> ttl = etcd->KeepAlive(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, absl::Seconds(30));

  ASSERT_TRUE(etcd->Revoke(lease->id).ok());
  got = etcd->Get(Key("member"));
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value()) << "revoking a lease deletes its keys";
  EXPECT_TRUE(absl::IsNotFound(etcd->KeepAlive(lease->id).status()));
  const absl::Status revoked = etcd->Revoke(lease->id);
  EXPECT_TRUE(absl::IsNotFound(revoked)) << revoked;
  const absl::Status put = etcd->Put(Key("member"), "x", lease->id).status();
  EXPECT_TRUE(absl::IsNotFound(put)) << put;
  EXPECT_TRUE(absl::IsInvalidArgument(etcd->LeaseGrant(absl::Milliseconds(500)).status()));
}

TEST_F(EtcdClientTest, ALeaseNotKeptAliveExpiresWithItsKeys) {
  auto etcd = NewClient();
  absl::StatusOr<EtcdLease> lease = etcd->LeaseGrant(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(etcd->Put(Key("member"), "x", lease->id).ok());
  // Kept alive twice, the key stays; then left alone it must vanish within TTL + slack.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(etcd->KeepAlive(lease->id).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  bool gone = false;
  while (!gone && absl::Now() < deadline) {
    absl::StatusOr<std::optional<EtcdKeyValue>> got = etcd->Get(Key("member"));
    ASSERT_TRUE(got.ok());
    gone = !got->has_value();
    if (!gone) absl::SleepFor(absl::Milliseconds(100));  // polling etcd, bounded above
  }
  EXPECT_TRUE(gone) << "the lease's key outlived its TTL by 13 s";
  EXPECT_TRUE(absl::IsNotFound(etcd->KeepAlive(lease->id).status()));
}

TEST(EtcdClientErrorsTest, UnreachableEtcdIsUnavailable) {
  const int port = PickFreePort();  // nothing listens there
  absl::StatusOr<std::unique_ptr<EtcdTransport>> t = MakeHttpEtcdTransport(
      {absl::StrCat("http://127.0.0.1:", port), absl::Milliseconds(500), absl::Seconds(1)});
  ASSERT_TRUE(t.ok());
  EtcdClient etcd(*std::move(t));
  EXPECT_TRUE(absl::IsUnavailable(etcd.Get("/x").status()));
  EXPECT_TRUE(absl::IsUnavailable(etcd.LeaseGrant(absl::Seconds(2)).status()));
}

TEST(EtcdClientErrorsTest, BadEndpointsAreRefused) {
  for (const char* e : {"127.0.0.1:2379", "https://127.0.0.1:2379", "http://127.0.0.1",
                        "http://127.0.0.1:0", "http://:2379/x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(MakeHttpEtcdTransport({e}).status())) << e;
  }
}

// A transport answering a fixed body, to check the client never trusts a malformed answer.
class CannedTransport final : public EtcdTransport {
 public:
  explicit CannedTransport(std::string body) : body_(std::move(body)) {}
  absl::StatusOr<std::string> Post(absl::string_view, absl::string_view) override { return body_; }

 private:
  std::string body_;
};

TEST(EtcdClientErrorsTest, MalformedAnswersAreInternalNeverACrash) {
  for (const char* body :
       {"not json", "[1,2]", R"({"kvs": 5})", R"({"kvs": [{"key": "!!notbase64"}]})",
        R"({"kvs": [{"key": "YQ==", "create_revision": "x"}]})", R"({"kvs": ["str"]})"}) {
    EtcdClient etcd(std::make_unique<CannedTransport>(body));
    EXPECT_TRUE(absl::IsInternal(etcd.Get("/a").status())) << body;
  }
  EtcdClient txn(std::make_unique<CannedTransport>(R"({"succeeded": true, "responses": 3})"));
  EXPECT_TRUE(absl::IsInternal(txn.PutIfAbsent("/a", "b").status()));
  EtcdClient grant(std::make_unique<CannedTransport>(R"({"ID": "0"})"));
  EXPECT_TRUE(absl::IsInternal(grant.LeaseGrant(absl::Seconds(2)).status()));
  EtcdClient keepalive(
      std::make_unique<CannedTransport>(R"({"error": {"grpc_code": 5, "message": "gone"}})"));
  EXPECT_TRUE(absl::IsNotFound(keepalive.KeepAlive(1).status()));
}

}  // namespace
}  // namespace clusterkv::server::cluster
