#include "tools/clusterkv_demo/text_model.h"

#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "core/parallel.h"
#include "core/splitmix64.h"

namespace clusterkv::demo {
namespace {

constexpr double kRopeTheta = 500000.0;
constexpr float kContextDecay = 0.85f;
constexpr float kWordWeight = 0.75f;
constexpr float kContextWeight = 0.55f;
constexpr float kQueryScale = 12.0f;  // query norm; attention logits span about +-12


double Uniform(uint64_t& s) { return (static_cast<double>(SplitMix64(s) >> 11) + 0.5) / 9007199254740992.0; }

float Normal(uint64_t& s) {
  const double u1 = Uniform(s), u2 = Uniform(s);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

void Normalize(float* v, int d, float length) {
  double sq = 0;
  for (int i = 0; i < d; ++i) sq += double(v[i]) * v[i];
  const float scale = sq > 0 ? static_cast<float>(length / std::sqrt(sq)) : 0.0f;
  for (int i = 0; i < d; ++i) v[i] *= scale;
}

}  // namespace

TextKvModel::TextKvModel(const KvLayout& layout, const std::vector<std::string>& words,
                         uint64_t seed)
    : layout_(layout), seed_(seed) {
  const int d = layout.head_dim;
  absl::flat_hash_map<std::string, int32_t> vocab;
  word_ids_.reserve(words.size());
  for (const std::string& w : words) {
    auto [it, inserted] = vocab.emplace(w, static_cast<int32_t>(vocab.size()));
    word_ids_.push_back(it->second);
  }
  vocab_size_ = vocab.size();
  key_embedding_.resize(vocab_size_ * d);
  value_embedding_.resize(vocab_size_ * d);
  for (const auto& [word, id] : vocab) {
    // Seeded by the word itself, so a word's embedding does not depend on the stream.
    uint64_t s = seed ^ std::hash<std::string>()(word);
    for (int i = 0; i < d; ++i) key_embedding_[id * d + i] = Normal(s);
    for (int i = 0; i < d; ++i) value_embedding_[id * d + i] = Normal(s);
    Normalize(&key_embedding_[id * d], d, 1.0f);
  }
  context_.assign(word_ids_.size() * d, 0.0f);
  for (size_t t = 1; t < word_ids_.size(); ++t) {
    const float* prev = &context_[(t - 1) * d];
    const float* e = &key_embedding_[word_ids_[t - 1] * d];
    float* c = &context_[t * d];
    for (int i = 0; i < d; ++i) c[i] = kContextDecay * prev[i] + (1 - kContextDecay) * e[i];
  }
  // RoPE pairs (i, i + d/2) rotate at inv_freq[i]; most energy goes to the slow pairs so that
  // position does not wash out meaning, as in real models' keys.
  inv_freq_.resize(d / 2);
  energy_.resize(d);
  for (int i = 0; i < d / 2; ++i) {
    inv_freq_[i] = static_cast<float>(std::pow(kRopeTheta, -2.0 * i / d));
    const float slow = static_cast<float>(i) / (d / 2 - 1);
    energy_[i] = energy_[i + d / 2] = 0.15f + 0.85f * slow * slow;
  }
  const int heads = layout.num_layers * layout.num_kv_heads;
  perm_.resize(heads);
  sign_.resize(heads);
  for (int h = 0; h < heads; ++h) {
    uint64_t s = seed * 31 + h;
    perm_[h].resize(d);
    std::iota(perm_[h].begin(), perm_[h].end(), 0);
    for (int i = d - 1; i > 0; --i) std::swap(perm_[h][i], perm_[h][SplitMix64(s) % (i + 1)]);
    sign_[h].resize(d);
    for (int i = 0; i < d; ++i) sign_[h][i] = (SplitMix64(s) & 1) ? 1.0f : -1.0f;
  }
}

void TextKvModel::Project(int32_t layer, int32_t head, const float* in, float* out) const {
  const int d = layout_.head_dim;
  const int h = layer * layout_.num_kv_heads + head;
  for (int i = 0; i < d; ++i) out[i] = sign_[h][i] * in[perm_[h][i]] * energy_[i];
}

void TextKvModel::Rope(int64_t position, float* v) const {
  const int half = layout_.head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = static_cast<double>(position) * inv_freq_[i];
    const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = a * s + b * c;
  }
}

void TextKvModel::Key(int32_t layer, int32_t head, int64_t position, float* out) const {
  const int d = layout_.head_dim;
  std::vector<float> mixed(d);
  const float* e = &key_embedding_[word_ids_[position] * d];
  const float* c = &context_[position * d];
  for (int i = 0; i < d; ++i) mixed[i] = kWordWeight * e[i] + kContextWeight * c[i];
  Project(layer, head, mixed.data(), out);
  Normalize(out, d, std::sqrt(static_cast<float>(d)));
  Rope(position, out);
}

void TextKvModel::Value(int32_t layer, int32_t head, int64_t position, float* out) const {
  const int d = layout_.head_dim;
  const float* e = &value_embedding_[word_ids_[position] * d];
  const int h = layer * layout_.num_kv_heads + head;
  for (int i = 0; i < d; ++i) out[i] = sign_[h][i] * e[perm_[h][i]];
}

void TextKvModel::Fill(int32_t layer, int64_t begin, int64_t end, float* keys, float* values,
                       int threads) const {
  const int d = layout_.head_dim;
  const int64_t n = end - begin;
  ParallelFor(static_cast<int64_t>(layout_.num_kv_heads) * n, threads,
              [&](int64_t b, int64_t e, int) {
                for (int64_t i = b; i < e; ++i) {
                  const int32_t head = static_cast<int32_t>(i / n);
                  const int64_t t = i % n;
                  Key(layer, head, begin + t, keys + i * d);
                  Value(layer, head, begin + t, values + i * d);
                }
              });
}

void TextKvModel::Query(int32_t layer, int64_t position, float* queries) const {
  const int d = layout_.head_dim;
  const int group = layout_.GroupSize();
  for (int32_t kv = 0; kv < layout_.num_kv_heads; ++kv) {
    std::vector<float> base(d);
    Key(layer, kv, position, base.data());  // the query looks for keys like its own
    for (int g = 0; g < group; ++g) {
      float* q = queries + static_cast<int64_t>(kv * group + g) * d;
      uint64_t s = seed_ ^ (static_cast<uint64_t>(position) << 20) ^ (kv * group + g);
      for (int i = 0; i < d; ++i) q[i] = base[i] + 0.25f * Normal(s) * energy_[i];
      Normalize(q, d, kQueryScale);  // keys have norm sqrt(d): logits = kQueryScale * cos
    }
  }
}

}  // namespace clusterkv::demo
