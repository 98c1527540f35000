// server/cluster/peer_data_plane.h against a real clusterkvd: the pulling side of daemon-to-daemon
// UCX transfers, without etcd. Whole blocks arrive bit-exact; clusters the peer does
// not have, and blocks larger than a slot, are handed back for gRPC; the session pool stays
// within max_sessions while tenants alternate; a peer without UCX is an error that is not
// retried until retry_after.
#include "server/cluster/peer_data_plane.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/ucx_test_util.h"

namespace clusterkv::server::cluster {
namespace {

using ::clusterkv::testing::DaemonProcess;
using ::clusterkv::testing::DaemonProcessOptions;
using namespace ::clusterkv::testing::ucx_test;  // NOLINT: the shared test vocabulary

std::vector<ClusterId> Clusters(int count) {
  std::vector<ClusterId> out;
  for (int i = 0; i < count; ++i) out.push_back(ClusterId{HeadId{0, 0}, i});
  return out;
}

// Pulls `clusters` of tenant's "seq" and checks every delivered block against the stored bytes.
// Returns the clusters handed back (or the pull's error).
absl::StatusOr<std::vector<ClusterId>> PullChecked(PeerDataPlane& plane,
                                                   const std::string& target,
                                                   const std::string& tenant,
                                                   const std::vector<ClusterId>& clusters,
                                                   int* delivered) {
  *delivered = 0;
  return plane.Pull("node-x", target, tenant, "seq", clusters,
                    [&](const ClusterId& id, int32_t tokens, absl::Span<const uint8_t> block) {
                      EXPECT_EQ(tokens, kTokens);
                      const std::vector<uint8_t> want = ::clusterkv::testing::BlockBytes(
                          ::clusterkv::testing::Key(tenant, "seq", 0, 0, id.cluster),
                          BlockSize());
                      EXPECT_EQ(block.size(), want.size());
                      EXPECT_TRUE(block.size() == want.size() &&
                                  std::memcmp(block.data(), want.data(), want.size()) == 0)
                          << "cluster " << id.cluster << " of " << tenant;
                      ++*delivered;
                      return absl::OkStatus();
                    });
}

PeerDataPlaneOptions SmallPlane() {
  PeerDataPlaneOptions o;
  o.region_bytes = size_t{4} << 20;
  o.slot_bytes = 128 << 10;  // BlockSize() is ~33 KiB: 32 slots a batch
  o.timeout = absl::Seconds(10);
  return o;
}

TEST(PeerDataPlaneTest, PullsWholeBlocksAndHandsBackWhatItCannotDeliver) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  absl::StatusOr<std::unique_ptr<PeerDataPlane>> plane = PeerDataPlane::Create(SmallPlane());
  ASSERT_TRUE(plane.ok()) << plane.status();

  std::vector<ClusterId> wanted = Clusters(kClusters);
  wanted.push_back(ClusterId{HeadId{0, 0}, 999});  // not stored
  int delivered = 0;
  absl::StatusOr<std::vector<ClusterId>> left =
      PullChecked(**plane, daemon.target(), "tenant-a", wanted, &delivered);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(delivered, kClusters);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].cluster, 999);

  // Slots smaller than a block: nothing is delivered, everything is handed back.
  PeerDataPlaneOptions tiny = SmallPlane();
  tiny.slot_bytes = static_cast<uint32_t>(BlockSize() - 1);
  absl::StatusOr<std::unique_ptr<PeerDataPlane>> small = PeerDataPlane::Create(tiny);
  ASSERT_TRUE(small.ok()) << small.status();
  left = PullChecked(**small, daemon.target(), "tenant-a", Clusters(4), &delivered);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(delivered, 0);
  EXPECT_EQ(left->size(), 4u);

  // Another tenant's session sees nothing of tenant-a's sequence.
  left = PullChecked(**plane, daemon.target(), "tenant-b", Clusters(2), &delivered);
  EXPECT_EQ(delivered, 0);
  EXPECT_TRUE(!left.ok() || left->size() == 2u);
}

TEST(PeerDataPlaneTest, SessionPoolStaysWithinItsLimitWhileTenantsAlternate) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-b", "seq").ok());
  PeerDataPlaneOptions options = SmallPlane();
  options.max_sessions = 1;
  absl::StatusOr<std::unique_ptr<PeerDataPlane>> plane = PeerDataPlane::Create(options);
  ASSERT_TRUE(plane.ok()) << plane.status();
  for (const char* tenant : {"tenant-a", "tenant-b", "tenant-a", "tenant-b"}) {
    int delivered = 0;
    absl::StatusOr<std::vector<ClusterId>> left =
        PullChecked(**plane, daemon.target(), tenant, Clusters(kClusters), &delivered);
    ASSERT_TRUE(left.ok()) << tenant << ": " << left.status();
    EXPECT_TRUE(left->empty()) << tenant;
    EXPECT_EQ(delivered, kClusters) << tenant;
    EXPECT_EQ((*plane)->num_sessions(), 1u);
  }
}

TEST(PeerDataPlaneTest, APeerWithoutUcxIsAnErrorAndIsNotRetriedAtOnce) {
  DaemonProcessOptions no_ucx;
  no_ucx.flags = {"--ucx=false"};
  DaemonProcess daemon(no_ucx);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  PeerDataPlaneOptions options = SmallPlane();
  options.retry_after = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<PeerDataPlane>> plane = PeerDataPlane::Create(options);
  ASSERT_TRUE(plane.ok()) << plane.status();
  int delivered = 0;
  absl::StatusOr<std::vector<ClusterId>> left =
      PullChecked(**plane, daemon.target(), "tenant-a", Clusters(2), &delivered);
  EXPECT_FALSE(left.ok());
  EXPECT_EQ(delivered, 0);
  EXPECT_EQ((*plane)->num_sessions(), 0u);
  left = PullChecked(**plane, daemon.target(), "tenant-a", Clusters(2), &delivered);
  ASSERT_FALSE(left.ok());
  EXPECT_TRUE(absl::IsUnavailable(left.status())) << left.status();
  EXPECT_NE(left.status().message().find("recently refused"), std::string::npos)
      << left.status();
}

TEST(PeerDataPlaneTest, BadOptionsAreInvalidArgument) {
  PeerDataPlaneOptions o;
  o.slot_bytes = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(PeerDataPlane::Create(o).status()));
  o.slot_bytes = 2u << 20;
  o.region_bytes = size_t{1} << 20;
  EXPECT_TRUE(absl::IsInvalidArgument(PeerDataPlane::Create(o).status()));
}

}  // namespace
}  // namespace clusterkv::server::cluster
