#include "server/internal/pin_ledger.h"

#include <utility>
#include <vector>

namespace clusterkv::server {

std::shared_ptr<PinLedger> PinLedger::Create() {
  return std::shared_ptr<PinLedger>(new PinLedger());
}

std::shared_ptr<const void> PinLedger::Hold(std::shared_ptr<const void> pins) {
  auto* entry = new Entry{std::move(pins)};
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      std::shared_ptr<const void> out = std::move(entry->pins);
      delete entry;
      return out;
    }
    entries_.insert(entry);
  }
  const void* const address = entry->pins.get();
  return std::shared_ptr<const void>(
      address, [ledger = shared_from_this(), entry](const void*) { ledger->Release(entry); });
}

void PinLedger::Release(Entry* entry) {
  std::shared_ptr<const void> pins;
  {
    absl::MutexLock lock(&mu_);
    if (entries_.erase(entry) > 0) pins = std::move(entry->pins);  // else Close() took them
  }
  delete entry;
  // `pins` goes here, outside the lock (releasing pins takes the store's lock).
}

void PinLedger::Close() {
  std::vector<std::shared_ptr<const void>> released;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    released.reserve(entries_.size());
    for (Entry* entry : entries_) released.push_back(std::move(entry->pins));
    entries_.clear();  // each entry is deleted by its holder's last release
  }
}

size_t PinLedger::held() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace clusterkv::server
