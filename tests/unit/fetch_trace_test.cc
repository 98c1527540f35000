// FetchTrace: the text clusterkv_bench heat replays. Every block of a sequence is listed (in
// runs of consecutive clusters) before its first fetch, blocks that appear later are listed
// before the fetch that names them, and each fetch is one line grouped by head.
#include "server/fetch_trace.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/testing/blocks.h"
#include "tests/testing/temp_dir.h"

namespace clusterkv::server {
namespace {

using ::clusterkv::testing::BlockBytes;
using ::clusterkv::testing::Key;
using ::clusterkv::testing::TempDir;

TEST(FetchTraceTest, ListsBlocksBeforeTheFetchesThatNameThem) {
  TempDir dir("fetch_trace");
  storage::TieredStoreOptions o;
  o.path = dir.path();
  o.host_capacity_bytes = 8 << 20;
  o.huge_pages = false;
  o.background_eviction = false;
  auto store = storage::TieredStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  auto put = [&](int layer, int head, int cluster, size_t bytes) {
    const storage::BlockKey key = Key("t", "s", layer, head, cluster);
    ASSERT_TRUE((*store)->PutBlock(key, BlockBytes(key, bytes)).ok());
  };
  put(2, 0, 0, 100);
  put(2, 0, 1, 200);
  put(2, 1, 0, 300);
  put(2, 0, 3, 400);
  const SequenceKey seq = Key("t", "s", 0, 0, 0).sequence;
  auto c = [](int layer, int head, int cluster) { return Key("t", "s", layer, head, cluster).cluster; };
  FetchTrace trace;
  trace.Record(seq, {c(2, 0, 1), c(2, 0, 0), c(2, 1, 0)}, **store);
  put(3, 0, 7, 50);  // appended later
  trace.Record(seq, {c(3, 0, 7), c(2, 0, 1)}, **store);
  trace.Record(Key("t", "other", 0, 0, 0).sequence, {c(2, 0, 0)}, **store);  // nothing stored
  EXPECT_EQ(trace.Text(),
            "# clusterkv fetch trace v1 (server/fetch_trace.h)\n"
            "B 0 2.0.0 100,200\n"
            "B 0 2.0.3 400\n"
            "B 0 2.1.0 300\n"
            "F 0 2.0:1,0 2.1:0\n"
            "B 0 3.0.7 50\n"
            "F 0 3.0:7 2.0:1\n"
            "F 1 2.0:0\n");
  EXPECT_EQ(trace.dropped_fetches(), 0u);
  FetchTrace tiny(/*max_bytes=*/1);
  tiny.Record(seq, {c(2, 0, 0)}, **store);
  tiny.Record(seq, {c(2, 0, 0)}, **store);
  EXPECT_EQ(tiny.dropped_fetches(), 1u);
}

}  // namespace
}  // namespace clusterkv::server
