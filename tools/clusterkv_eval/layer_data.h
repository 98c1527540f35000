// The per-layer K/V/Q tensors that the quality evaluation consumes, and where they come from:
// a directory of .npy files dumped from a real model, or the synthetic generator.
//
// Dump layout (also printed by `clusterkv_eval --help`): one directory holding, per layer L,
//   layer_<L>_k.npy   keys    [num_kv_heads, tokens, head_dim]   after RoPE, as cached
//   layer_<L>_v.npy   values  [num_kv_heads, tokens, head_dim]
//   layer_<L>_q.npy   queries [num_q_heads, num_queries, head_dim] after RoPE: the decode
//                     queries at positions tokens, tokens + 1, ... (after the context)
// Query head h belongs to kv head h / G with G = num_q_heads / num_kv_heads (the usual GQA
// grouping of HF's repeat_kv). dtypes '<f2', '<f4', or bf16 bit patterns ('<V2', '|V2', '<u2')
// with --bf16; the three files of a layer may differ in dtype. Layers need not be contiguous
// (a dump of only layers 2, 10, 31 is fine) but must share one shape.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_LAYER_DATA_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_LAYER_DATA_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor_view.h"
#include "tools/clusterkv_eval/npy.h"

namespace clusterkv::eval {

// One layer's keys, values and decode queries (shapes as in the layout above). Value type.
struct LayerTensors {
  NpyArray k;  // [num_kv_heads, tokens, head_dim]
  NpyArray v;  // [num_kv_heads, tokens, head_dim]
  NpyArray q;  // [num_q_heads, num_queries, head_dim]

  // Accessors valid after Validate() returned OK.
  int64_t num_kv_heads() const { return k.shape[0]; }
  int64_t tokens() const { return k.shape[1]; }
  int64_t head_dim() const { return k.shape[2]; }
  int64_t num_q_heads() const { return q.shape[0]; }
  int64_t num_queries() const { return q.shape[1]; }
  int64_t group_size() const { return num_q_heads() / num_kv_heads(); }

  // InvalidArgument (naming the tensor and both shapes) unless k, v, q are 3-d and non-empty, k
  // and v have equal shapes, q's head_dim matches and num_q_heads is a multiple of num_kv_heads.
  absl::Status Validate() const;

  // Keys / values of kv head h: [tokens, head_dim].
  ConstMatrixView Keys(int64_t h) const { return k.View3().Slice(h); }
  ConstMatrixView Values(int64_t h) const { return v.View3().Slice(h); }
  // The G query heads of kv head h at decode step s: [G, head_dim], strided rows.
  ConstMatrixView GroupQueries(int64_t h, int64_t s) const;
};

// A sequence of layers to evaluate. Implementations are not thread-safe.
class LayerSource {
 public:
  virtual ~LayerSource() = default;
  // Layer ids available, ascending.
  virtual std::vector<int32_t> layers() const = 0;
  // Loads (or generates) one layer; the result passes Validate(). NotFound for an unknown layer;
  // other codes as the source documents.
  virtual absl::StatusOr<LayerTensors> Load(int32_t layer) = 0;
  // One line for logs, e.g. "npy dir /data/dump (bf16)".
  virtual std::string Describe() const = 0;
};

// Reads a dump directory in the layout above.
class NpyDirSource : public LayerSource {
 public:
  // Scans `dir` for layer_<L>_k.npy. NotFound if `dir` is missing or holds no such file;
  // InvalidArgument if a layer lacks its _v or _q file.
  static absl::StatusOr<NpyDirSource> Open(const std::string& dir, bool bf16);

  std::vector<int32_t> layers() const override { return layers_; }
  // InvalidArgument (naming the file) for malformed files or inconsistent shapes.
  absl::StatusOr<LayerTensors> Load(int32_t layer) override;
  std::string Describe() const override;

 private:
  NpyDirSource(std::string dir, bool bf16, std::vector<int32_t> layers)
      : dir_(std::move(dir)), bf16_(bf16), layers_(std::move(layers)) {}

  std::string dir_;
  bool bf16_;
  std::vector<int32_t> layers_;
};

// Paths of layer L's files inside `dir`.
std::string LayerFilePath(const std::string& dir, int32_t layer, char tensor /* 'k','v','q' */);

// Writes `tensors` as layer_<layer>_{k,v,q}.npy in `dir` (created if missing), converting every
// tensor to `dtype`. Internal on I/O failure.
absl::Status WriteLayerNpy(const std::string& dir, int32_t layer, const LayerTensors& tensors,
                           DType dtype);

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_LAYER_DATA_H_
