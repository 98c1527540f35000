// Loads a Llama checkpoint into LlamaWeights (fp32) from either file format:
//
//   safetensors  model.safetensors (one file; sharded checkpoints are not read) with the
//                Hugging Face tensor names (weights.h) and a config.json next to it (or the
//                path given). Q/K rows are in the rotate-half RoPE order.
//   GGUF         a llama.cpp file (v2/v3) with general.architecture "llama", the llama.*
//                metadata keys for the config and the GGUF tensor names (weights.h). Q/K rows
//                are in the interleaved RoPE order (convert_hf_to_gguf.py permutes them), so the
//                loaded weights keep RopeStyle::kInterleaved and are used as they are.
//
// Tensors of type F32, F16 and BF16 are converted to fp32 at load. Errors: NotFound (missing
// file), InvalidArgument (not a Llama model, a missing tensor, a shape that disagrees with the
// config, a quantized or otherwise unsupported tensor type, which the message names), DataLoss
// (a truncated or inconsistent file).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_LOADER_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/safetensors.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

enum class ModelFormat { kSafetensors, kGguf };

absl::string_view ModelFormatName(ModelFormat format);
// By extension: ".gguf" or ".safetensors"; InvalidArgument otherwise.
absl::StatusOr<ModelFormat> FormatFromPath(absl::string_view path);
// "config.json" in the directory of `model_path`.
std::string ConfigPathNextTo(absl::string_view model_path);

// Detects the format from the file's first bytes ("GGUF" magic, else safetensors).
absl::StatusOr<LlamaWeights> LoadModel(const std::string& path);
// `config_path` empty: ConfigPathNextTo(path).
absl::StatusOr<LlamaWeights> LoadSafetensorsModel(const std::string& path,
                                                  const std::string& config_path = "");
absl::StatusOr<LlamaWeights> LoadGgufModel(const std::string& path);

// The config a GGUF file's llama.* metadata and tensor shapes describe (exposed for tests).
absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufIndex& index);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_LOADER_H_
