// Tenants and security: idle sequences expire after the TTL, driven by a fake clock
// (no sleeps), and the per-tenant sequence quota of OpenSequence. A real TieredStore in a
// temporary directory under the real RequestHandler.
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/clock.h"
#include "server/request_handler.h"
#include "storage/tiered_store.h"
#include "tests/testing/temp_dir.h"

namespace clusterkv::server {
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
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

v1::KvLayout Layout() {
  v1::KvLayout layout;
  layout.set_num_layers(1);
  layout.set_num_q_heads(2);
  layout.set_num_kv_heads(1);
  layout.set_head_dim(16);
  layout.set_dtype(v1::DTYPE_FP16);
  return layout;
}

class TtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::TieredStoreOptions o;
    o.path = dir_.path();
    o.host_capacity_bytes = uint64_t{4} << 20;
    o.huge_pages = false;
    o.background_eviction = false;
    auto store = storage::TieredStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    MakeHandler({});
  }

  void MakeHandler(const auth::TenantQuotas& quotas) {
    HandlerOptions options;
    options.clock = clock_;
    options.quotas = quotas;
    handler_ = std::make_unique<RequestHandler>(store_.get(), options);
  }

  absl::Status Open(const std::string& tenant, const std::string& id, bool create = true) {
    v1::OpenSequenceRequest request;
    request.set_sequence_id(id);
    if (create) *request.mutable_layout() = Layout();
    request.set_must_exist(!create);
    CallContext call;
    call.tenant = tenant;
    return handler_->OpenSequence(call, request).status();
  }

  bool Exists(const std::string& tenant, const std::string& id) {
    return store_->GetSequence(SequenceKey{tenant, id}).ok();
  }

  testing::TempDir dir_{"security_ttl"};
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::unique_ptr<storage::TieredStore> store_;
  std::unique_ptr<RequestHandler> handler_;
};

TEST_F(TtlTest, IdleSequencesExpireAccessedOnesStay) {
  const absl::Duration ttl = absl::Minutes(10);
  ASSERT_TRUE(Open("a", "idle").ok());
  ASSERT_TRUE(Open("b", "busy").ok());
  clock_->Advance(absl::Minutes(6));
  ASSERT_TRUE(Open("b", "busy", /*create=*/false).ok());  // an access renews it
  EXPECT_EQ(*handler_->ExpireIdle(ttl), 0);
  clock_->Advance(absl::Minutes(4));  // idle: 10 min since creation; busy: 4 min
  EXPECT_EQ(*handler_->ExpireIdle(ttl), 1);
  EXPECT_FALSE(Exists("a", "idle"));
  EXPECT_TRUE(Exists("b", "busy"));
  EXPECT_EQ(handler_->expired_sequences(), 1u);
  // The expired sequence is gone for its tenant too: NOT_FOUND, and the id can be reused.
  EXPECT_EQ(Open("a", "idle", /*create=*/false).code(), absl::StatusCode::kNotFound);
  clock_->Advance(absl::Minutes(10));
  EXPECT_EQ(*handler_->ExpireIdle(ttl), 1);
  EXPECT_FALSE(Exists("b", "busy"));
  EXPECT_EQ(handler_->expired_sequences(), 2u);
}

TEST_F(TtlTest, SequencesFromBeforeARestartGetAFullTtl) {
  ASSERT_TRUE(Open("a", "old").ok());
  clock_->Advance(absl::Hours(1));
  MakeHandler({});  // a new handler (daemon restart) has never seen "old"
  EXPECT_EQ(*handler_->ExpireIdle(absl::Minutes(10)), 0);  // first seen now
  clock_->Advance(absl::Minutes(9));
  EXPECT_EQ(*handler_->ExpireIdle(absl::Minutes(10)), 0);
  clock_->Advance(absl::Minutes(1));
  EXPECT_EQ(*handler_->ExpireIdle(absl::Minutes(10)), 1);
  EXPECT_FALSE(Exists("a", "old"));
}

TEST_F(TtlTest, SequenceQuotaPerTenant) {
  auth::TenantQuotas quotas;
  quotas.sequences = 2;
  MakeHandler(quotas);
  ASSERT_TRUE(Open("a", "1").ok());
  ASSERT_TRUE(Open("a", "2").ok());
  const absl::Status third = Open("a", "3");
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted) << third;
  EXPECT_TRUE(Open("a", "1").ok());  // reopening an existing one is fine
  EXPECT_TRUE(Open("b", "1").ok());  // another tenant is unaffected
  // Expiry frees the quota.
  clock_->Advance(absl::Minutes(1));
  EXPECT_EQ(*handler_->ExpireIdle(absl::Seconds(30)), 3);
  EXPECT_TRUE(Open("a", "3").ok());
}

}  // namespace
}  // namespace clusterkv::server
