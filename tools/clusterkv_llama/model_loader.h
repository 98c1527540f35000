// Loads a checkpoint into ModelWeights (fp32) from either file format:
//
//   safetensors  model.safetensors (one file; sharded checkpoints are not read) with the
//                Hugging Face tensor names (weights.h) and a config.json next to it (or the
//                path given). Q/K rows are in the rotate-half RoPE order.
//   GGUF         a llama.cpp file (v2/v3) with general.architecture "llama" or "gemma3", the
//                <arch>.* metadata keys for the config (model_config.h; every hyper-parameter,
//                including Gemma 3's layer pattern, window and RoPE bases, comes from the file,
//                with the architecture's fixed values where a file leaves a key out) and the
//                GGUF tensor names (weights.h). Llama Q/K rows are in the interleaved RoPE
//                order (convert_hf_to_gguf.py permutes them); Gemma's are not permuted
//                (rotate-half). Both are used as they are.
//
// Tensors of type F32, F16, BF16 and the GGML quantized types ggml_quant.h decodes are
// converted to fp32 at load. Errors: NotFound (missing file), InvalidArgument (an unsupported
// architecture, a missing tensor, a shape that disagrees with the config, a tensor type that
// cannot be decoded, which the message names), DataLoss (a truncated or inconsistent file).
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
// Where deploy/models.sh puts the real models: $CLUSTERKV_MODEL_DIR, else
// $HOME/.cache/clusterkv/models.
std::string DefaultModelDir();

// By extension: ".gguf" or ".safetensors"; InvalidArgument otherwise.
absl::StatusOr<ModelFormat> FormatFromPath(absl::string_view path);
// "config.json" in the directory of `model_path`.
std::string ConfigPathNextTo(absl::string_view model_path);

// Detects the format from the file's first bytes ("GGUF" magic, else safetensors).
absl::StatusOr<ModelWeights> LoadModel(const std::string& path);
// `config_path` empty: ConfigPathNextTo(path).
absl::StatusOr<ModelWeights> LoadSafetensorsModel(const std::string& path,
                                                  const std::string& config_path = "");
absl::StatusOr<ModelWeights> LoadGgufModel(const std::string& path);

// The config a GGUF file's llama.* metadata and tensor shapes describe (exposed for tests).
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufIndex& index);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_LOADER_H_
