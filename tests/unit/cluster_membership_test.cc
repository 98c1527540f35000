// Membership and the sequence directory (server/cluster/) against a real etcd started by the
// test: registration under a lease (a second holder of the id is refused; Leave removes the
// node at once; a killed node's record expires with its lease), keep-alive rounds publishing
// the load, lease loss and re-registration, the injected clock behind lease_current(); directory
// claims racing between nodes, take-over only when the owner's lease is gone, compare-and-delete,
// per-tenant listing.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/cluster/directory.h"
#include "server/cluster/membership.h"
#include "server/cluster/testing/etcd_process.h"

namespace clusterkv::server::cluster {
namespace {



class FakeClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1000000);
};

class ClusterEtcdTest : public ::testing::Test {
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
    // Each test is its own cluster in the shared etcd.
    keys_ = std::make_unique<ClusterKeys>(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    etcd_client_ = NewClient();
  }

  static std::unique_ptr<EtcdClient> NewClient() {
    absl::StatusOr<std::unique_ptr<EtcdTransport>> t =
        MakeHttpEtcdTransport({etcd_->endpoint(), absl::Seconds(2), absl::Seconds(5)});
    EXPECT_TRUE(t.ok()) << t.status();
    return std::make_unique<EtcdClient>(*std::move(t));
  }

  MembershipOptions Options(const std::string& id, absl::Duration ttl = absl::Seconds(30)) {
    MembershipOptions o;
    o.self.node_id = id;
    o.self.grpc_address = id + ".example:7000";
    o.lease_ttl = ttl;
    o.register_timeout = absl::ZeroDuration();
    return o;
  }

  // Polls etcd (bounded) until `id` is registered (or not).
  bool WaitRegistered(const std::string& id, bool registered, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      absl::StatusOr<std::optional<EtcdKeyValue>> kv = etcd_client_->Get(keys_->Node(id));
      if (kv.ok() && kv->has_value() == registered) return true;
      absl::SleepFor(absl::Milliseconds(100));  // polling etcd, bounded above
    }
    return false;
  }

  static EtcdProcess* etcd_;
  static absl::Status* start_status_;
  std::unique_ptr<ClusterKeys> keys_;
  std::unique_ptr<EtcdClient> etcd_client_;
};

EtcdProcess* ClusterEtcdTest::etcd_ = nullptr;
absl::Status* ClusterEtcdTest::start_status_ = nullptr;

TEST_F(ClusterEtcdTest, JoinRegistersUnderALeaseAndLeaveRemovesAtOnce) {
  MembershipOptions o = Options("node-1");
  o.load = [] {
    NodeLoad l;
    l.host_capacity_bytes = 1000;
    l.host_bytes = 10;
    return l;
  };
  absl::StatusOr<std::unique_ptr<Membership>> m = Membership::Join(etcd_client_.get(), keys_.get(), o);
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<std::optional<EtcdKeyValue>> kv = etcd_client_->Get(keys_->Node("node-1"));
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->lease, (*m)->lease());
  absl::StatusOr<NodeInfo> info = DecodeNodeInfo((*kv)->value);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->grpc_address, "node-1.example:7000");
  EXPECT_EQ(info->load.host_bytes, 10u);
  EXPECT_TRUE((*m)->lease_current());

  // The same id cannot be registered twice while the first holder is live.
  absl::StatusOr<std::unique_ptr<Membership>> dup =
      Membership::Join(etcd_client_.get(), keys_.get(), Options("node-1"));
  EXPECT_TRUE(absl::IsAlreadyExists(dup.status())) << dup.status();

  ASSERT_TRUE((*m)->Leave().ok());
  kv = etcd_client_->Get(keys_->Node("node-1"));
  ASSERT_TRUE(kv.ok());
  EXPECT_FALSE(kv->has_value()) << "Leave revokes the lease";
  EXPECT_FALSE((*m)->lease_current());
  EXPECT_TRUE((*m)->Leave().ok());  // idempotent
  EXPECT_TRUE(absl::IsFailedPrecondition((*m)->Tick()));
  // Now the id is free again.
  absl::StatusOr<std::unique_ptr<Membership>> again =
      Membership::Join(etcd_client_.get(), keys_.get(), Options("node-1"));
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(ClusterEtcdTest, TicksPublishLoadAndReportLiveNodes) {
  uint64_t used = 1;
  MembershipOptions a = Options("a");
  a.load = [&used] {
    NodeLoad l;
    l.host_capacity_bytes = 100;
    l.host_bytes = used;
    return l;
  };
  std::vector<std::vector<NodeInfo>> seen;
  a.on_refresh = [&seen](const std::vector<NodeInfo>& nodes) { seen.push_back(nodes); };
  auto ma = Membership::Join(etcd_client_.get(), keys_.get(), a);
  ASSERT_TRUE(ma.ok());
  auto mb = Membership::Join(etcd_client_.get(), keys_.get(), Options("b"));
  ASSERT_TRUE(mb.ok());
  used = 77;
  ASSERT_TRUE((*ma)->Tick().ok());
  ASSERT_EQ(seen.size(), 1u);
  ASSERT_EQ(seen[0].size(), 2u);
  EXPECT_EQ(seen[0][0].node_id, "a");
  EXPECT_EQ(seen[0][0].load.host_bytes, 77u);
  EXPECT_EQ(seen[0][1].node_id, "b");
  EXPECT_EQ((*ma)->last_nodes().size(), 2u);
  ASSERT_TRUE((*mb)->Leave().ok());
  ASSERT_TRUE((*ma)->Tick().ok());
  ASSERT_EQ(seen.size(), 2u);
  ASSERT_EQ(seen[1].size(), 1u);
  EXPECT_EQ(seen[1][0].node_id, "a");
}

TEST_F(ClusterEtcdTest, LeaseCurrentFollowsTheInjectedClock) {
  auto clock = std::make_shared<FakeClock>();
  MembershipOptions o = Options("n", absl::Seconds(30));
  o.clock = clock;
  auto m = Membership::Join(etcd_client_.get(), keys_.get(), o);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE((*m)->lease_current());
  clock->Advance(absl::Seconds(29));
  EXPECT_TRUE((*m)->lease_current());
  clock->Advance(absl::Seconds(2));
  EXPECT_FALSE((*m)->lease_current()) << "no renewal for longer than the TTL";
  ASSERT_TRUE((*m)->Tick().ok());
  EXPECT_TRUE((*m)->lease_current());
}

TEST_F(ClusterEtcdTest, ALostLeaseIsRegisteredAgainOnTheNextRound) {
  auto m = Membership::Join(etcd_client_.get(), keys_.get(), Options("n"));
  ASSERT_TRUE(m.ok());
  const EtcdLeaseId first = (*m)->lease();
  // Someone (an operator, or expiry during a partition) revokes the lease: the record is gone.
  ASSERT_TRUE(etcd_client_->Revoke(first).ok());
  ASSERT_TRUE(WaitRegistered("n", false, absl::Seconds(5)));
  ASSERT_TRUE((*m)->Tick().ok());
  EXPECT_EQ((*m)->lease_losses(), 1u);
  EXPECT_NE((*m)->lease(), first);
  EXPECT_TRUE(WaitRegistered("n", true, absl::Seconds(5)));
}

TEST_F(ClusterEtcdTest, KeepAliveThreadHoldsTheNodeAndAKilledNodeExpires) {
  MembershipOptions o = Options("live", absl::Seconds(2));
  auto live = Membership::Join(etcd_client_.get(), keys_.get(), o);
  ASSERT_TRUE(live.ok());
  (*live)->StartKeepAlive();
  // A node that never renews stands for one killed with SIGKILL.
  auto dead = Membership::Join(etcd_client_.get(), keys_.get(), Options("dead", absl::Seconds(2)));
  ASSERT_TRUE(dead.ok());
  ASSERT_TRUE(WaitRegistered("dead", false, absl::Seconds(15))) << "the dead node's lease expired";
  // The kept-alive node outlived several TTLs.
  absl::StatusOr<std::optional<EtcdKeyValue>> kv = etcd_client_->Get(keys_->Node("live"));
  ASSERT_TRUE(kv.ok());
  EXPECT_TRUE(kv->has_value());
  ASSERT_TRUE((*live)->Leave().ok());  // stops the thread cleanly, then revokes
  EXPECT_TRUE(WaitRegistered("live", false, absl::Seconds(1)));
}

TEST_F(ClusterEtcdTest, JoinWaitsForAPreviousInstanceToExpire) {
  // The previous instance of "n" was killed: its record lives until its 2 s lease expires.
  auto old = Membership::Join(etcd_client_.get(), keys_.get(), Options("n", absl::Seconds(2)));
  ASSERT_TRUE(old.ok());
  MembershipOptions o = Options("n", absl::Seconds(2));
  o.register_timeout = absl::Seconds(20);
  auto restarted = Membership::Join(etcd_client_.get(), keys_.get(), o);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_NE((*restarted)->lease(), (*old)->lease());
}

TEST_F(ClusterEtcdTest, BadOptionsAreRefused) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      Membership::Join(etcd_client_.get(), keys_.get(), Options("a b")).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      Membership::Join(etcd_client_.get(), keys_.get(), Options("n", absl::Seconds(1))).status()));
}

DirectoryEntry Entry(const std::string& owner, std::vector<std::string> replicas = {}) {
  DirectoryEntry e;
  e.owner = owner;
  e.replicas = std::move(replicas);
  e.layout = KvLayout::Llama3_8B();
  return e;
}

TEST_F(ClusterEtcdTest, DirectoryClaimRaceHasOneWinnerAndBothSeeIt) {
  constexpr int kRounds = 10;
  auto c1 = NewClient();
  auto c2 = NewClient();
  Directory d1(c1.get(), keys_.get());
  Directory d2(c2.get(), keys_.get());
  for (int round = 0; round < kRounds; ++round) {
    const SequenceKey key{"tenant", absl::StrCat("seq-", round)};
    absl::Barrier* start = new absl::Barrier(2);
    absl::StatusOr<Directory::ClaimResult> r1, r2;
    std::thread t1([&] {
      if (start->Block()) delete start;
      r1 = d1.Claim(key, Entry("n1"));
    });
    std::thread t2([&] {
      if (start->Block()) delete start;
      r2 = d2.Claim(key, Entry("n2"));
    });
    t1.join();
    t2.join();
    ASSERT_TRUE(r1.ok()) << r1.status();
    ASSERT_TRUE(r2.ok()) << r2.status();
    EXPECT_NE(r1->claimed, r2->claimed) << "round " << round;
    const std::string winner = r1->claimed ? "n1" : "n2";
    EXPECT_EQ(r1->entry.owner, winner);
    EXPECT_EQ(r2->entry.owner, winner);
    EXPECT_EQ(r1->entry.incarnation, r2->entry.incarnation);
    EXPECT_GT(r1->entry.incarnation, 0);
  }
}

TEST_F(ClusterEtcdTest, TakeOverOnlyOnceTheOwnersLeaseIsGone) {
  Directory dir(etcd_client_.get(), keys_.get());
  auto owner = Membership::Join(etcd_client_.get(), keys_.get(), Options("owner"));
  ASSERT_TRUE(owner.ok());
  const SequenceKey key{"t", "s"};
  absl::StatusOr<Directory::ClaimResult> claim = dir.Claim(key, Entry("owner", {"rep", "rep2"}));
  ASSERT_TRUE(claim.ok() && claim->claimed);
  const DirectoryEntry seen = claim->entry;
  EXPECT_TRUE(absl::IsInvalidArgument(dir.TakeOver(key, seen, "stranger").status()));
  absl::StatusOr<bool> taken = dir.TakeOver(key, seen, "rep");
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(*taken) << "the owner is still registered";

  ASSERT_TRUE((*owner)->Leave().ok());  // the owner's lease is gone
  taken = dir.TakeOver(key, seen, "rep");
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(*taken);
  absl::StatusOr<std::optional<DirectoryEntry>> now = dir.Lookup(key);
  ASSERT_TRUE(now.ok() && now->has_value());
  EXPECT_EQ((*now)->owner, "rep");
  EXPECT_EQ((*now)->replicas, std::vector<std::string>{"rep2"});
  EXPECT_EQ((*now)->incarnation, seen.incarnation) << "a take-over keeps the incarnation";
  // A second replica acting on the stale entry loses.
  taken = dir.TakeOver(key, seen, "rep2");
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(*taken);
}

TEST_F(ClusterEtcdTest, RemoveIsCompareAndDeleteAndANewClaimIsANewIncarnation) {
  Directory dir(etcd_client_.get(), keys_.get());
  const SequenceKey key{"t", "s"};
  absl::StatusOr<Directory::ClaimResult> first = dir.Claim(key, Entry("a"));
  ASSERT_TRUE(first.ok() && first->claimed);
  DirectoryEntry stale = first->entry;
  stale.mod_revision -= 1;
  absl::StatusOr<bool> removed = dir.Remove(key, stale);
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(*removed);
  removed = dir.Remove(key, first->entry);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  absl::StatusOr<std::optional<DirectoryEntry>> gone = dir.Lookup(key);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  absl::StatusOr<Directory::ClaimResult> second = dir.Claim(key, Entry("b"));
  ASSERT_TRUE(second.ok() && second->claimed);
  EXPECT_GT(second->entry.incarnation, first->entry.incarnation);
}

TEST_F(ClusterEtcdTest, ListIsPerTenantAndMarkJoinedIsOnce) {
  Directory dir(etcd_client_.get(), keys_.get());
  for (const SequenceKey& k :
       std::vector<SequenceKey>{{"a", "1"}, {"a", "2"}, {"a/b", "3"}, {"ab", "4"}}) {
    ASSERT_TRUE(dir.Claim(k, Entry("n")).ok());
  }
  // Garbage under the prefix is skipped, not fatal.
  ASSERT_TRUE(etcd_client_->Put(keys_->Sequence({"a", "junk"}), "not json").ok());
  auto a = dir.List("a");
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].first.sequence, "1");
  EXPECT_EQ((*a)[1].first.sequence, "2");
  auto all = dir.List("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  absl::StatusOr<bool> first = dir.MarkJoined("n");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(*first);
  absl::StatusOr<bool> second = dir.MarkJoined("n");
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
}

}  // namespace
}  // namespace clusterkv::server::cluster
