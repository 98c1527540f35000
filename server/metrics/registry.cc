#include "server/metrics/registry.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <set>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"

namespace clusterkv::server::metrics {
namespace {

uint64_t ToBits(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

double FromBits(uint64_t bits) {
  double v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

void AtomicAdd(std::atomic<uint64_t>& bits, double delta) {
  uint64_t old = bits.load(std::memory_order_relaxed);
  while (!bits.compare_exchange_weak(old, ToBits(FromBits(old) + delta),
                                     std::memory_order_relaxed)) {
  }
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"` plus `extra` (already formatted, e.g. le="0.5"), closed with `}`; nothing when
// there are no labels at all.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     const std::string& extra = "") {
  if (names.empty() && extra.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ",";
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra.empty()) absl::StrAppend(&out, names.empty() ? "" : ",", extra);
  out += "}";
  return out;
}

void AppendSample(std::string& out, const std::string& name, const std::string& labels,
                  const std::string& value) {
  absl::StrAppend(&out, name, labels, " ", value, "\n");
}

void RenderChild(std::string& out, const std::string& name, const std::vector<std::string>& names,
                 const std::vector<std::string>& values, const Counter& c) {
  AppendSample(out, name, LabelSet(names, values), absl::StrCat(c.value()));
}

void RenderChild(std::string& out, const std::string& name, const std::vector<std::string>& names,
                 const std::vector<std::string>& values, const Gauge& g) {
  AppendSample(out, name, LabelSet(names, values), FormatValue(g.value()));
}

void RenderChild(std::string& out, const std::string& name, const std::vector<std::string>& names,
                 const std::vector<std::string>& values, const Histogram& h) {
  const Histogram::Snapshot s = h.Read();
  const std::string bucket = name + "_bucket";
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    AppendSample(out, bucket,
                 LabelSet(names, values, absl::StrCat("le=\"", FormatValue(h.bounds()[i]), "\"")),
                 absl::StrCat(s.cumulative[i]));
  }
  AppendSample(out, bucket, LabelSet(names, values, "le=\"+Inf\""), absl::StrCat(s.count));
  AppendSample(out, name + "_sum", LabelSet(names, values), FormatValue(s.sum));
  AppendSample(out, name + "_count", LabelSet(names, values), absl::StrCat(s.count));
}

template <typename T>
std::unique_ptr<T> MakeChild(const std::vector<double>*) {
  return std::make_unique<T>();
}

template <>
std::unique_ptr<Histogram> MakeChild<Histogram>(const std::vector<double>* bounds) {
  return std::make_unique<Histogram>(bounds);
}

}  // namespace

// ---- Gauge / Histogram ------------------------------------------------------------------------

void Gauge::Set(double value) { bits_.store(ToBits(value), std::memory_order_relaxed); }
void Gauge::Add(double delta) { AtomicAdd(bits_, delta); }
double Gauge::value() const { return FromBits(bits_.load(std::memory_order_relaxed)); }

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // Bounds are few (<= ~20): a linear scan beats a binary search's branches here.
  size_t i = 0;
  while (i < bounds_->size() && value > (*bounds_)[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_bits_, value);
}

void Histogram::Add(const std::vector<uint64_t>& counts, double sum) {
  for (size_t i = 0; i < counts.size() && i <= bounds_->size(); ++i) {
    if (counts[i] > 0) buckets_[i].fetch_add(counts[i], std::memory_order_relaxed);
  }
  AtomicAdd(sum_bits_, sum);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.cumulative.resize(bounds_->size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = FromBits(sum_bits_.load(std::memory_order_relaxed));
  return s;
}

// ---- Families -------------------------------------------------------------------------------

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

template <typename T>
T* Family<T>::WithLabels(const std::vector<std::string>& values) {
  ABSL_RAW_CHECK(values.size() == label_names_.size(), "metric: wrong label count");
  absl::MutexLock lock(&mu_);
  std::unique_ptr<T>& child = children_[values];
  if (child == nullptr) child = MakeChild<T>(&bounds_);
  return child.get();
}

template <typename T>
void Family<T>::Clear() {
  absl::MutexLock lock(&mu_);
  children_.clear();
}

template <typename T>
void Family<T>::Render(std::string& out) const {
  absl::StrAppend(&out, "# HELP ", name_, " ", EscapeHelp(help_), "\n");
  absl::StrAppend(&out, "# TYPE ", name_, " ", TypeName(type_), "\n");
  absl::MutexLock lock(&mu_);
  for (const auto& [values, child] : children_) {
    RenderChild(out, name_, label_names_, values, *child);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- Registry -------------------------------------------------------------------------------

void Registry::Add(std::unique_ptr<FamilyBase> family) {
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    ABSL_RAW_CHECK(f->name() != family->name(), "metric registered twice");
  }
  families_.push_back(std::move(family));
}

namespace {
void CheckNames(const std::string& name, const std::vector<std::string>& labels) {
  ABSL_RAW_CHECK(IsValidMetricName(name), "bad metric name");
  std::set<std::string> seen;
  for (const std::string& l : labels) {
    ABSL_RAW_CHECK(IsValidLabelName(l) && l != "le", "bad label name");
    ABSL_RAW_CHECK(seen.insert(l).second, "label name twice");
  }
}
}  // namespace

Family<Counter>* Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  CheckNames(name, label_names);
  auto family = std::make_unique<Family<Counter>>(name, help, MetricType::kCounter,
                                                  std::move(label_names));
  Family<Counter>* raw = family.get();
  Add(std::move(family));
  return raw;
}

Family<Gauge>* Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  CheckNames(name, label_names);
  auto family =
      std::make_unique<Family<Gauge>>(name, help, MetricType::kGauge, std::move(label_names));
  Family<Gauge>* raw = family.get();
  Add(std::move(family));
  return raw;
}

Family<Histogram>* Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  CheckNames(name, label_names);
  ABSL_RAW_CHECK(!bounds.empty(), "histogram has no buckets");
  for (size_t i = 0; i < bounds.size(); ++i) {
    ABSL_RAW_CHECK(std::isfinite(bounds[i]), "histogram bound not finite");
    ABSL_RAW_CHECK(i == 0 || bounds[i] > bounds[i - 1], "histogram bounds not ascending");
  }
  auto family = std::make_unique<Family<Histogram>>(
      name, help, MetricType::kHistogram, std::move(label_names), std::move(bounds));
  Family<Histogram>* raw = family.get();
  Add(std::move(family));
  return raw;
}

void Registry::AddCollector(std::function<void()> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Render() {
  absl::MutexLock scrape(&render_mu_);
  std::vector<std::function<void()>> collectors;
  std::vector<const FamilyBase*> families;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
    for (const auto& f : families_) families.push_back(f.get());
  }
  for (const auto& collect : collectors) collect();
  std::string out;
  for (const FamilyBase* f : families) f->Render(out);
  return out;
}

std::vector<std::string> Registry::FamilyNames() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& f : families_) names.push_back(f->name());
  return names;
}

// ---- Exposition helpers -----------------------------------------------------------------------

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buf[400];
  const double magnitude = std::fabs(value);
  // Plain decimals where they are short ("0.0001", not "1e-04"); exponents beyond.
  const std::chars_format format = magnitude >= 1e-6 && magnitude < 1e15
                                       ? std::chars_format::fixed
                                       : std::chars_format::general;
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value, format);
  return std::string(buf, r.ptr);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty() || !(IsAlpha(name[0]) || name[0] == ':')) return false;
  for (char c : name) {
    if (!(IsAlpha(c) || IsDigit(c) || c == ':')) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || !IsAlpha(name[0])) return false;
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_') return false;  // reserved
  for (char c : name) {
    if (!(IsAlpha(c) || IsDigit(c))) return false;
  }
  return true;
}

}  // namespace clusterkv::server::metrics
