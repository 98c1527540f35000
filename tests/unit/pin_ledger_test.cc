// server/internal/pin_ledger.h: a hold keeps its pins until its last alias goes, or until
// Close(), whichever is first, exactly once either way; holds after Close() are pass-through.
#include "server/internal/pin_ledger.h"

#include <memory>
#include <utility>

#include "gtest/gtest.h"

namespace clusterkv::server {
namespace {

// Pins that count their release.
std::shared_ptr<const void> CountedPins(int* released) {
  return std::shared_ptr<const void>(new int(7), [released](const void* p) {
    ++*released;
    delete static_cast<const int*>(p);
  });
}

TEST(PinLedgerTest, PinsGoWithTheLastAlias) {
  auto ledger = PinLedger::Create();
  int released = 0;
  std::shared_ptr<const void> held = ledger->Hold(CountedPins(&released));
  EXPECT_EQ(ledger->held(), 1u);
  std::shared_ptr<const void> alias(held, nullptr);  // as a message's block slice keeps it
  held.reset();
  EXPECT_EQ(released, 0);
  alias.reset();
  EXPECT_EQ(released, 1);
  EXPECT_EQ(ledger->held(), 0u);
}

TEST(PinLedgerTest, CloseReleasesWhatIsStillHeldOnce) {
  auto ledger = PinLedger::Create();
  int kept = 0, dropped = 0;
  std::shared_ptr<const void> still_held = ledger->Hold(CountedPins(&kept));
  ledger->Hold(CountedPins(&dropped)).reset();
  EXPECT_EQ(dropped, 1);
  ledger->Close();
  EXPECT_EQ(kept, 1) << "released by Close while a slice still holds it";
  EXPECT_EQ(ledger->held(), 0u);
  still_held.reset();  // gRPC drops the slice after shutdown: nothing is released twice
  EXPECT_EQ(kept, 1);
}

TEST(PinLedgerTest, TheLedgerOutlivesItsOwnerWhileHeld) {
  auto ledger = PinLedger::Create();
  int released = 0;
  std::shared_ptr<const void> held = ledger->Hold(CountedPins(&released));
  ledger.reset();  // the service is gone; the hold keeps the ledger
  held.reset();
  EXPECT_EQ(released, 1);
}

TEST(PinLedgerTest, HoldsAfterCloseArePassThrough) {
  auto ledger = PinLedger::Create();
  ledger->Close();
  int released = 0;
  std::shared_ptr<const void> held = ledger->Hold(CountedPins(&released));
  EXPECT_EQ(ledger->held(), 0u);
  held.reset();
  EXPECT_EQ(released, 1);
}

}  // namespace
}  // namespace clusterkv::server
