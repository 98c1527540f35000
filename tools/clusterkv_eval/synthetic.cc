#include "tools/clusterkv_eval/synthetic.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/parallel.h"
#include "core/splitmix64.h"
#include "core/status_macros.h"

namespace clusterkv::eval {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Topic-less filler directions ("the", ",", ...) per head.
constexpr int kNumFillers = 32;
// Outlier (massive-activation) channel pairs per head.
constexpr int kOutlierPairs = 3;
// Norm of the outlier offset relative to the unit topic component.
constexpr double kOutlierNorm = 1.2;
// Topics remembered for revisits.
constexpr int kRecentTopics = 16;
// Norm of the value topic component (the gaussian part has norm ~sqrt(head_dim)).
constexpr double kValueTopicNorm = 8.0;


uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Seed of the stream of (layer, kv head).
uint64_t HeadSeed(uint64_t seed, int32_t layer, int32_t head) {
  uint64_t s = seed;
  uint64_t mix = SplitMix64(s);
  uint64_t key =
      (static_cast<uint64_t>(static_cast<uint32_t>(layer)) << 32) | static_cast<uint32_t>(head);
  mix ^= key * 0xd1342543de82ef95ULL;
  return SplitMix64(mix);
}

// Everything fixed for one (layer, kv head): frequency profile, topics, fillers, outliers.
class HeadGenerator {
 public:
  HeadGenerator(const SyntheticOptions& o, uint64_t seed) : o_(o), rng_(seed), d_(o.head_dim) {
    half_ = d_ / 2;
    // Pair i rotates with frequency theta^(-2i/d) (i = 0 fastest). Energy profile: a logistic
    // step putting most topic energy in the slowest ~30% of pairs.
    pair_energy_.resize(half_);
    for (int i = 0; i < half_; ++i) {
      const double x = (i - 0.7 * half_) / std::max(0.05 * half_, 0.5);
      pair_energy_[i] = 0.12 + 0.88 / (1.0 + std::exp(-x));
    }
    inv_freq_.resize(half_);
    for (int i = 0; i < half_; ++i) {
      inv_freq_[i] = std::pow(o.rope_theta, -2.0 * i / d_);
    }
    topics_ = ProfiledDirections(o.num_topics);
    topic_values_ = GaussianDirections(o.num_topics);
    topic_strength_.resize(o.num_topics);
    for (double& s : topic_strength_) s = std::exp(0.25 * rng_.Normal());
    fillers_ = ProfiledDirections(kNumFillers);
    // Outliers in the slowest quarter of pairs: both channels of each pair.
    offset_.assign(d_, 0.0);
    const int lo = half_ - std::max(kOutlierPairs, half_ / 4);
    std::vector<int> candidates(half_ - lo);
    std::iota(candidates.begin(), candidates.end(), lo);
    for (int k = 0; k < kOutlierPairs && !candidates.empty(); ++k) {
      const size_t pick = rng_.Below(candidates.size());
      const int pair = candidates[pick];
      candidates.erase(candidates.begin() + static_cast<long>(pick));
      for (int c : PairChannels(pair)) {
        const double sign = rng_.Uniform() < 0.5 ? -1.0 : 1.0;
        offset_[c] =
            sign * (0.6 + 0.4 * rng_.Uniform()) * kOutlierNorm / std::sqrt(2.0 * kOutlierPairs);
      }
    }
    // Zipf(0.8) popularity over topics.
    topic_cdf_.resize(o.num_topics);
    double acc = 0.0;
    for (int z = 0; z < o.num_topics; ++z) topic_cdf_[z] = acc += std::pow(z + 1.0, -0.8);
    for (double& c : topic_cdf_) c /= acc;
  }

  // Writes keys/values [tokens, d] and queries for the G query heads: q_out[g] points at the
  // [num_queries, d] block of query head g.
  void Generate(float* keys, float* values, const std::vector<float*>& q_out) {
    const int64_t n = o_.context;
    std::vector<int32_t> token_topic(n);
    std::vector<double> pre(d_);
    int32_t last_topic = -1;
    std::vector<double> last_perturb(d_, 0.0);
    std::vector<int32_t> recent;
    int64_t t = 0;
    while (t < n) {
      const int32_t topic = NextTopic(last_topic, &recent);
      const double len_draw = o_.mean_segment_tokens * std::exp(0.8 * rng_.Normal() - 0.32);
      const int64_t len = std::min<int64_t>(
          n - t, std::clamp<int64_t>(std::llround(len_draw), 4,
                                     static_cast<int64_t>(8 * o_.mean_segment_tokens) + 4));
      // This instance of the topic: its own small perturbation (norm ~0.35).
      std::vector<double> perturb = ProfiledGaussian(0.35);
      for (int64_t e = t + len; t < e; ++t) {
        const bool filler = rng_.Uniform() < o_.filler_fraction;
        token_topic[t] = filler ? -1 : topic;
        const double amp = 1.0 + 0.15 * rng_.Normal();
        const double* dir = filler ? &fillers_[rng_.Below(kNumFillers) * d_] : &topics_[topic * d_];
        const double strength = filler ? 0.7 : topic_strength_[topic];
        for (int c = 0; c < d_; ++c) {
          pre[c] = amp * (strength * dir[c] + (filler ? 0.0 : perturb[c])) +
                   o_.key_noise / std::sqrt(d_) * rng_.Normal();
          if (offset_[c] != 0.0) pre[c] += offset_[c] * (1.0 + 0.25 * StudentT3());
        }
        Rope(pre.data(), static_cast<double>(t), keys + t * d_);
        float* v = values + t * d_;
        for (int c = 0; c < d_; ++c) {
          v[c] = static_cast<float>(
              rng_.Normal() + (filler ? 0.0 : kValueTopicNorm * topic_values_[topic * d_ + c]));
        }
      }
      last_topic = topic;
      last_perturb = std::move(perturb);
    }
    GenerateQueries(keys, token_topic, last_topic, last_perturb, q_out);
  }

 private:
  std::vector<int> PairChannels(int pair) const {
    if (o_.rope_style == RopeStyle::kRotateHalf) return {pair, pair + half_};
    return {2 * pair, 2 * pair + 1};
  }
  int PairOf(int channel) const {
    return o_.rope_style == RopeStyle::kRotateHalf ? channel % half_ : channel / 2;
  }

  // Gaussian vector shaped by the frequency profile, with expected norm `norm`.
  std::vector<double> ProfiledGaussian(double norm) {
    std::vector<double> v(d_);
    double energy = 0.0;
    for (int c = 0; c < d_; ++c) energy += pair_energy_[PairOf(c)];
    for (int c = 0; c < d_; ++c) {
      v[c] = rng_.Normal() * std::sqrt(pair_energy_[PairOf(c)] / energy) * norm;
    }
    return v;
  }

  std::vector<double> ProfiledDirections(int count) {
    std::vector<double> out;
    out.reserve(static_cast<size_t>(count) * d_);
    for (int i = 0; i < count; ++i) {
      std::vector<double> v = ProfiledGaussian(1.0);
      Normalize(&v);
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  }

  std::vector<double> GaussianDirections(int count) {
    std::vector<double> out;
    out.reserve(static_cast<size_t>(count) * d_);
    for (int i = 0; i < count; ++i) {
      std::vector<double> v(d_);
      for (double& x : v) x = rng_.Normal();
      Normalize(&v);
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  }

  static void Normalize(std::vector<double>* v) {
    double n2 = 0.0;
    for (double x : *v) n2 += x * x;
    const double inv = n2 > 0.0 ? 1.0 / std::sqrt(n2) : 0.0;
    for (double& x : *v) x *= inv;
  }

  // Student-t with 3 degrees of freedom, clamped: heavy-tailed outlier fluctuations.
  double StudentT3() {
    const double a = rng_.Normal(), b = rng_.Normal(), c = rng_.Normal();
    const double chi = std::sqrt((a * a + b * b + c * c) / 3.0);
    return std::clamp(rng_.Normal() / std::max(chi, 1e-3), -20.0, 20.0);
  }

  int32_t NextTopic(int32_t current, std::vector<int32_t>* recent) {
    int32_t topic = -1;
    if (recent->size() > 1 && rng_.Uniform() < o_.revisit_probability) {
      do {
        topic = (*recent)[rng_.Below(recent->size())];
      } while (topic == current);
    } else {
      do {
        topic = static_cast<int32_t>(
            std::lower_bound(topic_cdf_.begin(), topic_cdf_.end(), rng_.Uniform()) -
            topic_cdf_.begin());
        topic = std::min(topic, o_.num_topics - 1);
      } while (topic == current && o_.num_topics > 1);
    }
    auto it = std::find(recent->begin(), recent->end(), topic);
    if (it != recent->end()) recent->erase(it);
    recent->push_back(topic);
    if (recent->size() > kRecentTopics) recent->erase(recent->begin());
    return topic;
  }

  // Rotates `pre` by RoPE at `pos` into `out` (fp32).
  void Rope(const double* pre, double pos, float* out) const {
    for (int i = 0; i < half_; ++i) {
      const double angle = pos * inv_freq_[i];
      const double cs = std::cos(angle), sn = std::sin(angle);
      int a, b;
      if (o_.rope_style == RopeStyle::kRotateHalf) {
        a = i;
        b = i + half_;
      } else {
        a = 2 * i;
        b = 2 * i + 1;
      }
      out[a] = static_cast<float>(pre[a] * cs - pre[b] * sn);
      out[b] = static_cast<float>(pre[b] * cs + pre[a] * sn);
    }
  }

  // Draws a topic present in the context, proportionally to its token count, not in `used`.
  int32_t RecallTopic(const std::vector<int64_t>& counts, const std::vector<int32_t>& used) {
    int64_t total = 0;
    for (int z = 0; z < o_.num_topics; ++z) {
      if (std::find(used.begin(), used.end(), z) == used.end()) total += counts[z];
    }
    if (total == 0) return static_cast<int32_t>(rng_.Below(o_.num_topics));
    int64_t r = static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(total)));
    for (int z = 0; z < o_.num_topics; ++z) {
      if (std::find(used.begin(), used.end(), z) != used.end()) continue;
      if ((r -= counts[z]) < 0) return z;
    }
    return o_.num_topics - 1;
  }

  // Query in pre-RoPE space from topic slots and weights (weights jittered by `jitter`).
  std::vector<double> QueryPre(const std::vector<int32_t>& slots, const std::vector<double>& w,
                               const std::vector<double>& last_perturb, double jitter) {
    std::vector<double> q(d_, 0.0);
    for (size_t j = 0; j < slots.size(); ++j) {
      const double wj = w[j] * std::exp(jitter * rng_.Normal()) * topic_strength_[slots[j]];
      for (int c = 0; c < d_; ++c) q[c] += wj * topics_[slots[j] * d_ + c];
    }
    // Continuing the last segment: a share of its instance perturbation.
    for (int c = 0; c < d_; ++c) q[c] += w[0] * 0.5 * last_perturb[c];
    std::vector<double> noise = ProfiledGaussian(0.3);
    for (int c = 0; c < d_; ++c) q[c] += noise[c];
    return q;
  }

  // Inverse temperature making the top `k` logits hold `mass` of the softmax (bisection on a
  // log scale; the top-k mass grows monotonically with the inverse temperature).
  static double Calibrate(std::vector<double> logits, int64_t k, double mass) {
    const double lmax = *std::max_element(logits.begin(), logits.end());
    for (double& l : logits) l -= lmax;
    std::nth_element(logits.begin(), logits.begin() + (k - 1), logits.end(),
                     std::greater<double>());
    auto top_mass = [&](double lambda) {
      double top = 0.0, all = 0.0;
      for (size_t i = 0; i < logits.size(); ++i) {
        const double e = std::exp(lambda * logits[i]);
        all += e;
        if (static_cast<int64_t>(i) < k) top += e;
      }
      return top / all;
    };
    double lo = std::log(1e-3), hi = std::log(1e4);
    if (top_mass(std::exp(hi)) < mass) return std::exp(hi);
    for (int it = 0; it < 60; ++it) {
      const double mid = 0.5 * (lo + hi);
      (top_mass(std::exp(mid)) < mass ? lo : hi) = mid;
    }
    return std::exp(hi);
  }

  void GenerateQueries(const float* keys, const std::vector<int32_t>& token_topic,
                       int32_t last_topic, const std::vector<double>& last_perturb,
                       const std::vector<float*>& q_out) {
    std::vector<int64_t> counts(o_.num_topics, 0);
    for (int32_t z : token_topic) {
      if (z >= 0) ++counts[z];
    }
    std::vector<int32_t> slots = {last_topic};
    while (static_cast<int32_t>(slots.size()) < o_.query_topics) {
      slots.push_back(RecallTopic(counts, slots));
    }
    std::vector<double> w(slots.size());
    for (size_t j = 0; j < w.size(); ++j) {
      w[j] = std::max(0.3, 1.0 - 0.2 * static_cast<double>(j)) * std::exp(0.2 * rng_.Normal());
    }
    const int64_t n = o_.context;
    const int64_t k_peak =
        std::clamp<int64_t>(std::llround(o_.peak_fraction * static_cast<double>(n)), 1, n);
    std::vector<float> rot(d_);
    std::vector<double> logits(n);
    for (int32_t s = 0; s < o_.num_queries; ++s) {
      if (s > 0) {
        for (size_t j = 1; j < slots.size(); ++j) {
          if (rng_.Uniform() < o_.topic_drift) {
            std::vector<int32_t> others = slots;
            slots[j] = RecallTopic(counts, others);
          }
          w[j] *= std::exp(0.05 * rng_.Normal());
        }
      }
      const double pos = static_cast<double>(n + s);
      std::vector<double> base = QueryPre(slots, w, last_perturb, 0.0);
      Rope(base.data(), pos, rot.data());
      for (int64_t t = 0; t < n; ++t) {
        double dot = 0.0;
        for (int c = 0; c < d_; ++c) dot += static_cast<double>(rot[c]) * keys[t * d_ + c];
        logits[t] = dot;
      }
      const double lambda = Calibrate(logits, k_peak, o_.peak_mass);
      // The evaluation scales logits by 1/sqrt(d): fold sqrt(d) * lambda into the query.
      const double q_scale = lambda * std::sqrt(static_cast<double>(d_));
      double base_norm = 0.0;
      for (double x : base) base_norm += x * x;
      base_norm = std::sqrt(base_norm);
      for (size_t g = 0; g < q_out.size(); ++g) {
        std::vector<double> q = QueryPre(slots, w, last_perturb, 0.25);
        std::vector<double> noise(d_);
        for (double& x : noise) x = rng_.Normal();
        Normalize(&noise);
        for (int c = 0; c < d_; ++c) q[c] += o_.gqa_perturbation * base_norm * noise[c];
        Rope(q.data(), pos, rot.data());
        float* out = q_out[g] + static_cast<int64_t>(s) * d_;
        for (int c = 0; c < d_; ++c) out[c] = static_cast<float>(q_scale * rot[c]);
      }
    }
  }

  const SyntheticOptions& o_;
  Rng rng_;
  int d_;
  int half_;
  std::vector<double> pair_energy_;
  std::vector<double> inv_freq_;
  std::vector<double> topics_;        // [num_topics, d] unit
  std::vector<double> topic_values_;  // [num_topics, d] unit
  std::vector<double> topic_strength_;
  std::vector<double> fillers_;  // [kNumFillers, d] unit
  std::vector<double> offset_;   // [d] outlier channel means, 0 elsewhere
  std::vector<double> topic_cdf_;
};

absl::Status Range(const char* name, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic ", name, " must be in [", lo, ", ", hi, "], got ", v));
  }
  return absl::OkStatus();
}

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t state = seed;
  for (uint64_t& s : s_) s = SplitMix64(state);
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

double Rng::Normal() {
  if (have_spare_) {
    have_spare_ = false;
    return spare_;
  }
  const double u1 = 1.0 - Uniform();  // (0, 1]
  const double u2 = Uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * kPi * u2);
  have_spare_ = true;
  return r * std::cos(2.0 * kPi * u2);
}

uint64_t Rng::Below(uint64_t n) {
  const uint64_t v = static_cast<uint64_t>(Uniform() * static_cast<double>(n));
  return v < n ? v : n - 1;
}

absl::Status SyntheticOptions::Validate() const {
  RETURN_IF_ERROR(Range("context", static_cast<double>(context), 1, double{1 << 24}));
  RETURN_IF_ERROR(Range("num_layers", num_layers, 1, 1024));
  RETURN_IF_ERROR(Range("num_kv_heads", num_kv_heads, 1, 1024));
  RETURN_IF_ERROR(Range("num_q_heads", num_q_heads, 1, 8192));
  RETURN_IF_ERROR(Range("head_dim", head_dim, 2, 1024));
  if (head_dim % 2 != 0) return absl::InvalidArgumentError("synthetic head_dim must be even");
  if (num_q_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("synthetic num_q_heads ", num_q_heads,
                                                   " is not a multiple of num_kv_heads ",
                                                   num_kv_heads));
  }
  RETURN_IF_ERROR(Range("num_queries", num_queries, 1, 1 << 16));
  RETURN_IF_ERROR(Range("num_topics", num_topics, 2, 1 << 16));
  RETURN_IF_ERROR(Range("mean_segment_tokens", mean_segment_tokens, 1, 1 << 20));
  RETURN_IF_ERROR(Range("revisit_probability", revisit_probability, 0, 1));
  RETURN_IF_ERROR(Range("filler_fraction", filler_fraction, 0, 1));
  RETURN_IF_ERROR(Range("key_noise", key_noise, 0, 100));
  RETURN_IF_ERROR(Range("rope_theta", rope_theta, 1, 1e12));
  RETURN_IF_ERROR(Range("query_topics", query_topics, 1, num_topics));
  RETURN_IF_ERROR(Range("topic_drift", topic_drift, 0, 1));
  RETURN_IF_ERROR(Range("gqa_perturbation", gqa_perturbation, 0, 100));
  RETURN_IF_ERROR(Range("peak_fraction", peak_fraction, 0, 1));
  RETURN_IF_ERROR(Range("peak_mass", peak_mass, 0, 1));
  return absl::OkStatus();
}

absl::StatusOr<LayerTensors> GenerateSyntheticLayer(const SyntheticOptions& options,
                                                    int32_t layer) {
  RETURN_IF_ERROR(options.Validate());
  if (layer < 0 || layer >= options.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic layer ", layer, " outside [0, ", options.num_layers, ")"));
  }
  const int64_t h = options.num_kv_heads, n = options.context, d = options.head_dim;
  const int64_t g = options.num_q_heads / options.num_kv_heads;
  const int64_t nq = options.num_queries;
  std::vector<float> k(static_cast<size_t>(h * n * d));
  std::vector<float> v(k.size());
  std::vector<float> q(static_cast<size_t>(options.num_q_heads * nq * d));
  const int threads = options.threads > 0 ? options.threads : DefaultThreads();
  ParallelFor(h, threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t head = begin; head < end; ++head) {
      std::vector<float*> q_out;
      for (int64_t j = 0; j < g; ++j) q_out.push_back(q.data() + ((head * g + j) * nq) * d);
      HeadGenerator gen(options, HeadSeed(options.seed, layer, static_cast<int32_t>(head)));
      gen.Generate(k.data() + head * n * d, v.data() + head * n * d, q_out);
    }
  });
  LayerTensors t;
  t.k = NpyArray::FromFloats(k, {h, n, d}, DType::kFloat32);
  t.v = NpyArray::FromFloats(v, {h, n, d}, DType::kFloat32);
  t.q = NpyArray::FromFloats(q, {options.num_q_heads, nq, d}, DType::kFloat32);
  return t;
}

std::vector<int32_t> SyntheticSource::layers() const {
  std::vector<int32_t> out(options_.num_layers);
  std::iota(out.begin(), out.end(), 0);
  return out;
}

absl::StatusOr<LayerTensors> SyntheticSource::Load(int32_t layer) {
  return GenerateSyntheticLayer(options_, layer);
}

std::string SyntheticSource::Describe() const {
  return absl::StrCat("synthetic seed=", options_.seed, " context=", options_.context,
                      " layers=", options_.num_layers, " kv_heads=", options_.num_kv_heads,
                      " q_heads=", options_.num_q_heads, " head_dim=", options_.head_dim,
                      " queries=", options_.num_queries, " topics=", options_.num_topics);
}

}  // namespace clusterkv::eval
