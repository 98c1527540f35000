// Where tests find the real GGUF models deploy/setup.sh (deploy/models.sh) fetches: the
// directory $CLUSTERKV_MODEL_DIR, else $HOME/.cache/clusterkv/models. A test that needs a model
// fails (never skips) when the file is missing, with a message naming the command that fetches
// it: CI runs that command before the tests.
#ifndef CLUSTERKV_TESTS_TESTING_MODEL_FILES_H_
#define CLUSTERKV_TESTS_TESTING_MODEL_FILES_H_

#include <filesystem>
#include <string>

#include "tools/clusterkv_llama/model_loader.h"

namespace clusterkv::testing {

inline constexpr char kSmolLm2File[] = "SmolLM2-135M-Instruct.Q4_1.gguf";
inline constexpr char kGemma3File[] = "gemma-3-270m-q4_k_m.gguf";

inline std::string ModelPath(const std::string& file) {
  return llama::DefaultModelDir() + "/" + file;
}

// "" when the model is present, else the failure message.
inline std::string MissingModelMessage(const std::string& file) {
  const std::string path = ModelPath(file);
  if (std::filesystem::exists(path)) return "";
  return "model " + path + " is missing: run deploy/setup.sh (or deploy/models.sh) to fetch it";
}

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_TESTING_MODEL_FILES_H_
