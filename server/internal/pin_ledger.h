// PinLedger: the host-tier pins that outgoing gRPC messages still hold, and the one place that
// can release them all. FetchClusters sends a host-resident block's bytes straight from its pin
// (proto/fetch_wire.h): the pin goes when gRPC releases the block's slice, normally right after
// the bytes reach the socket, but for a cancelled call possibly only when its stream is
// destroyed, which gRPC may do after the server has stopped. The daemon calls Close() once the
// server has stopped and before the store closes, so no pin outlives the store; a slice
// released later finds its pins already gone.
//
// Thread-safe. Owned by shared_ptr: every hold keeps the ledger alive.
//
// Example:
//   auto ledger = PinLedger::Create();
//   std::shared_ptr<const void> held = ledger->Hold(std::move(pins));
//   builder.AddReferenced(ref, tokens, bytes, std::shared_ptr<const void>(held, bytes.data()));
//   ...
//   ledger->Close();  // shutdown: `pins` is released now if a slice still holds it
#ifndef CLUSTERKV_SERVER_INTERNAL_PIN_LEDGER_H_
#define CLUSTERKV_SERVER_INTERNAL_PIN_LEDGER_H_

#include <cstddef>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace clusterkv::server {

class PinLedger : public std::enable_shared_from_this<PinLedger> {
 public:
  static std::shared_ptr<PinLedger> Create();

  // Takes `pins` (anything whose destruction releases pins). The result keeps them until its
  // last copy (or alias) is gone, or until Close(), whichever comes first. After Close(),
  // returns `pins` itself: nothing is held back any more.
  std::shared_ptr<const void> Hold(std::shared_ptr<const void> pins);

  // Releases every pin still held (outside the ledger's lock) and stops holding new ones.
  void Close();

  // Holds currently in the ledger (not yet released or closed).
  size_t held() const;

 private:
  struct Entry {
    std::shared_ptr<const void> pins;
  };
  PinLedger() = default;
  void Release(Entry* entry);

  mutable absl::Mutex mu_;
  absl::flat_hash_set<Entry*> entries_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_INTERNAL_PIN_LEDGER_H_
