// SequenceWriteLocks: an exclusive hold on one sequence (a re-replication's commit) leaves every
// other sequence's writes free, shared holds of one sequence coexist, and entries are freed with
// their last holder.
#include "server/cluster/sequence_write_locks.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace clusterkv::server::cluster {
namespace {

TEST(SequenceWriteLocksTest, AnExclusiveHoldStallsOnlyItsOwnSequence) {
  SequenceWriteLocks locks;
  const SequenceKey a{"tenant", "a"};
  const SequenceKey b{"tenant", "b"};
  {
    SequenceWriteLocks::Exclusive commit = locks.LockExclusive(a);
    // Writes to b, from another thread, go on while a is held.
    bool wrote = false;
    SequenceWriteLocks::Shared other_writer = locks.LockShared(b);
    std::thread writer([&] {
      SequenceWriteLocks::Shared w = locks.LockShared(b);  // shared holds coexist
      wrote = true;
    });
    writer.join();
    EXPECT_TRUE(wrote);
    // A write to a waits for the commit: it gets in only after the exclusive hold is gone.
    absl::Notification entered;
    std::thread blocked([&] {
      SequenceWriteLocks::Shared w = locks.LockShared(a);
      entered.Notify();
    });
    EXPECT_FALSE(entered.HasBeenNotified());
    {
      SequenceWriteLocks::Exclusive released = std::move(commit);
    }
    entered.WaitForNotification();
    blocked.join();
    EXPECT_EQ(locks.size(), 1u);  // b's entry, held by other_writer
  }
  EXPECT_EQ(locks.size(), 0u);
}

}  // namespace
}  // namespace clusterkv::server::cluster
