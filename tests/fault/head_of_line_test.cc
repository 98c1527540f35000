// Head-of-line blocking, tested deterministically (no timing): client A's fetch of a block
// that lives only on the SSD is held inside the SSD read by the fault-injection file system;
// while it is held, client B's fetches of host-tier blocks complete, over gRPC and over the
// UCX data plane, and a client's appends and index reads complete too. Then the read is
// released and A's fetch completes bit-exact. The daemon runs in-process so its store can use
// the FaultyFileSystem.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "proto/rpc_support.h"
#include "server/daemon.h"
#include "storage/testing/faulty_file_system.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/integration/ucx_test_util.h"
#include "tests/testing/temp_dir.h"

namespace clusterkv::testing {
namespace {

constexpr int32_t kTokens = 256;  // 256 tokens x 128 x fp16 x 2 + positions: ~129 KiB a block

std::vector<v1::ClusterBlock> Blocks(int32_t layer, int count, uint32_t seed) {
  std::vector<v1::ClusterBlock> out;
  for (int c = 0; c < count; ++c) out.push_back(MakeBlock(Ref(layer, 0, c), kTokens, seed + c));
  return out;
}

grpc::Status PutBlocks(const KvCacheClient& client, const std::string& id,
                       const std::vector<v1::ClusterBlock>& blocks) {
  std::vector<v1::PutClustersRequest> messages;
  for (const v1::ClusterBlock& b : blocks) {
    v1::PutClustersRequest m;
    m.set_sequence_id(id);
    *m.add_blocks() = b;
    messages.push_back(std::move(m));
  }
  return PutMessages(client, messages);
}

// Whether the block is in the host tier now (one batch pin, released at once).
bool Resident(storage::TieredStore& store, const std::string& tenant, const std::string& seq,
              int32_t layer, int32_t cluster) {
  storage::PinnedBlockSet pins =
      store.PinResident(SequenceKey{tenant, seq}, {ClusterId{HeadId{layer, 0}, cluster}});
  return pins.data(0) != nullptr;
}

TEST(HeadOfLineTest, AHeldSsdReadHoldsUpNoHostTierFetchOverGrpcOrUcx) {
  TempDir dir("clusterkv-hol");
  auto fs = std::make_shared<storage::testing::FaultyFileSystem>();
  server::DaemonOptions options;
  options.socket_path = dir.Sub("clusterkvd.sock");
  options.store.path = dir.Sub("data");
  options.store.host_capacity_bytes = uint64_t{4} << 20;
  options.store.high_watermark = 0.9;
  options.store.low_watermark = 0.5;
  options.store.huge_pages = false;
  options.store.background_eviction = false;  // eviction only when the test asks
  options.store.file_system = fs;
  options.auth = server::auth::AuthMode::kNone;
  options.observability.metrics_address = "";
  options.worker_threads = 2;
  absl::StatusOr<std::unique_ptr<server::Daemon>> daemon = server::Daemon::Start(options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string target = (*daemon)->unix_target();
  storage::TieredStore& store = (*daemon)->store();

  // A's sequence: 20 blocks (~2.5 MiB); evicting down to the low watermark moves the oldest
  // to the SSD. Then B's: 4 blocks, which stay in the host tier.
  KvCacheClient a = MakeKvCacheClient(target, "tenant-a");
  KvCacheClient b = MakeKvCacheClient(target, "tenant-b");
  const std::vector<v1::ClusterBlock> cold = Blocks(0, 20, 100);
  ASSERT_GRPC_OK(OpenSequence(a, "cold"));
  ASSERT_GRPC_OK(PutBlocks(a, "cold", cold));
  ASSERT_TRUE(store.EvictToLowWatermark().ok());
  ASSERT_TRUE(store.FlushSsd().ok());  // evicted blocks now live in blob files
  const std::vector<v1::ClusterBlock> hot = Blocks(1, 4, 500);
  ASSERT_GRPC_OK(OpenSequence(b, "hot"));
  ASSERT_GRPC_OK(PutBlocks(b, "hot", hot));
  ASSERT_FALSE(Resident(store, "tenant-a", "cold", 0, 0)) << "block 0 of A should be on the SSD";
  for (int c = 0; c < 4; ++c) ASSERT_TRUE(Resident(store, "tenant-b", "hot", 1, c));

  // UCX client of B, connected before the SSD is held.
  absl::StatusOr<ucx_test::UcxClient> ucx = ucx_test::MakeUcxClient(target, "tenant-b");
  ASSERT_TRUE(ucx.ok()) << ucx.status();

  fs->HoldBlobReads(true);
  grpc::Status a_status;
  std::vector<v1::ClusterBlock> a_blocks;
  std::thread a_fetch([&] {
    FetchResult got = Fetch(a, "cold", {Ref(0, 0, 0)});
    a_status = got.status;
    a_blocks = got.blocks;
  });
  // A is now inside the SSD read, on a worker thread.
  if (!fs->WaitForHeldReads(1, absl::Seconds(60))) {
    fs->HoldBlobReads(false);
    a_fetch.join();
    FAIL() << "A's fetch never read the SSD: " << a_status.error_message();
  }

  // B over gRPC: every block, bit-exact.
  ExpectFetchMatches(b, "hot", hot);
  // B over UCX: every block lands in its slot.
  std::vector<client::DirectFetch> requests;
  const uint64_t payload = storage::ClusterBlockBytes(kTokens, 128, DType::kFloat16) -
                           uint64_t{kTokens} * sizeof(int32_t);
  for (int c = 0; c < 4; ++c) {
    requests.push_back(client::DirectFetch{ClusterId{HeadId{1, 0}, c}, c * payload, kTokens});
  }
  absl::StatusOr<std::vector<client::DirectFetchResult>> results =
      ucx->transport->FetchInto("hot", requests);
  ASSERT_TRUE(results.ok()) << results.status();
  for (int c = 0; c < 4; ++c) {
    ASSERT_TRUE((*results)[c].status.ok()) << (*results)[c].status;
    const std::string& data = hot[c].data();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(ucx->transport->region_base()) +
                              c * payload,
                          payload),
              data.substr(kTokens * sizeof(int32_t)))
        << "slot " << c;
  }
  // Control-plane calls of a third sequence complete too (the other worker thread).
  ASSERT_GRPC_OK(OpenSequence(b, "fresh"));

  fs->HoldBlobReads(false);
  a_fetch.join();
  ASSERT_TRUE(a_status.ok()) << a_status.error_message();
  ASSERT_EQ(a_blocks.size(), 1u);
  EXPECT_EQ(a_blocks[0].data(), cold[0].data());
  EXPECT_TRUE((*daemon)->Shutdown().ok());
}

}  // namespace
}  // namespace clusterkv::testing
