// A small Prometheus metrics registry: counters, gauges and fixed-bucket histograms, grouped in
// families with a fixed list of label names, rendered in the text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Debian 12 has no
// prometheus-cpp; this is the one registry of the daemon (DESIGN.md section 7).
//
// Ownership: the Registry owns its families, a family owns its children (one per label-value
// tuple). Pointers returned by Add*/WithLabels stay valid for the registry's life, except after
// Family::Clear() (used by scrape-time collectors that rebuild a family).
//
// Thread-safety: everything is thread-safe. Updating a child is lock-free (relaxed atomics);
// WithLabels takes the family's mutex, so hot paths resolve their children once and keep the
// pointers. Render() runs the collectors (pull-style metrics) and serialises scrapes.
//
// Example:
//   Registry registry;
//   auto* requests = registry.AddCounter("clusterkv_rpc_requests_total", "RPCs served.",
//                                        {"rpc", "code"});
//   requests->WithLabels({"Stats", "OK"})->Increment();
//   std::string text = registry.Render();
#ifndef CLUSTERKV_SERVER_METRICS_REGISTRY_H_
#define CLUSTERKV_SERVER_METRICS_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace clusterkv::server::metrics {

// A monotonically increasing count.
class Counter {
 public:
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  // Mirrors a monotonic count kept elsewhere (e.g. storage::StoreStats), at scrape time.
  void Set(uint64_t total) { value_.store(total, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value);
  void Add(double delta);
  double value() const;

 private:
  std::atomic<uint64_t> bits_{0};  // the double's bit pattern (0 bits == 0.0)
};

// Observations counted into fixed buckets (upper bounds, ascending; +Inf is implicit).
class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double value);
  // Adds counts[i] observations to bucket i (bounds().size() + 1 counts, the last for +Inf)
  // and `sum` to the sum: a histogram observed elsewhere, merged in.
  void Add(const std::vector<uint64_t>& counts, double sum);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  const std::vector<double>* bounds_;  // owned by the family
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds + 1 (the last is +Inf)
  std::atomic<uint64_t> sum_bits_{0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// The part of a family the registry renders; see Family<T>.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }
  // Appends "# HELP", "# TYPE" and every sample (children in label-value order).
  virtual void Render(std::string& out) const = 0;

 protected:
  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

// One metric name with its children, one per tuple of label values (in label_names order).
template <typename T>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> labels,
         std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(labels)),
        bounds_(std::move(bounds)) {}

  // The child for `values` (created on first use). CHECK-fails when the number of values is
  // not the number of label names: a programming error.
  T* WithLabels(const std::vector<std::string>& values);
  // Removes every child (pointers handed out before become invalid).
  void Clear();
  void Render(std::string& out) const override;

 private:
  std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each name may be registered once; names and label names must be valid Prometheus names
  // (CHECK-fails otherwise: metric definitions are code, not input). Histogram bounds must be
  // strictly ascending and finite.
  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>* AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);

  // Runs before every Render(), e.g. to copy a store's statistics into gauges. Collectors run
  // one scrape at a time, in registration order.
  void AddCollector(std::function<void()> collector);

  // The text exposition format 0.0.4 of every family, in registration order.
  std::string Render();

  // Names of the registered families, in registration order.
  std::vector<std::string> FamilyNames() const;

 private:
  void Add(std::unique_ptr<FamilyBase> family);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(mu_);
  absl::Mutex render_mu_;  // one scrape at a time (collectors write shared gauges)
};

// Exposition helpers (exposed for tests).
// A sample value: integers without a fraction, otherwise the shortest round-trip form;
// "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);
// Escapes a label value (backslash, double quote, newline).
std::string EscapeLabelValue(std::string_view value);
// Escapes HELP text (backslash, newline).
std::string EscapeHelp(std::string_view help);
// [a-zA-Z_:][a-zA-Z0-9_:]* (metric names) / [a-zA-Z_][a-zA-Z0-9_]* (label names, no "__").
bool IsValidMetricName(std::string_view name);
bool IsValidLabelName(std::string_view name);

}  // namespace clusterkv::server::metrics

#endif  // CLUSTERKV_SERVER_METRICS_REGISTRY_H_
