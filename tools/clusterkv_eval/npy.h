// Reader and writer for NumPy .npy files (format versions 1.0, 2.0 and 3.0, C order only), so
// that K/Q/V dumps of any real model can be fed to the quality evaluation.
//
// Supported element types (little-endian only):
//   '<f2'                  fp16 (numpy.float16)
//   '<f4'                  fp32 (numpy.float32)
//   '<V2', '|V2', '<u2'    bfloat16 bit patterns, accepted only with NpyReadOptions::bf16
//                          (what torch/ml_dtypes dumps look like: ml_dtypes.bfloat16 saves as
//                          '|V2'; `t.view(torch.int16).numpy().view(np.uint16)` saves as '<u2').
// Writing bf16 uses '<u2' so plain numpy can np.load it (then .view(ml_dtypes.bfloat16)).
//
// Every malformed input is InvalidArgument: bad magic, unsupported version, unparsable header,
// Fortran order, big-endian or unsupported dtype, a shape whose element count overflows, or a
// file shorter than its header promises. I/O failures (missing file, unwritable path) are
// NotFound / Internal. Functions are thread-safe (no shared state).
//
// Example:
//   ASSIGN_OR_RETURN(NpyArray k, ReadNpy("dump/layer_3_k.npy", {.bf16 = false}));
//   if (k.shape.size() != 3) ...;
//   Tensor3View keys = k.View3();   // [num_kv_heads, tokens, head_dim]
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_NPY_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"

namespace clusterkv::eval {

// An n-dimensional C-order array of one of the KV dtypes; owns its bytes. Value type.
struct NpyArray {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // NumElements() * DTypeSize(dtype) bytes, little-endian

  int64_t NumElements() const;
  // The array as [d0, d1, d2]; the caller checks shape.size() == 3 first (aborts otherwise).
  Tensor3View View3() const;
  // Builds an fp32-sourced array encoded as `dtype` (rounding to nearest even); the
  // value count must equal the shape's product (aborts otherwise).
  static NpyArray FromFloats(const std::vector<float>& values, std::vector<int64_t> shape,
                             DType dtype);
};

struct NpyReadOptions {
  // Interpret 2-byte void / uint16 arrays ('<V2', '|V2', '<u2') as bfloat16 bit patterns.
  bool bf16 = false;
};

struct NpyWriteOptions {
  // 0: version 1.0 unless the header needs more than 65535 bytes (then 2.0). 1 or 2: force.
  int version = 0;
};

// Parses an in-memory .npy image. InvalidArgument as described above.
absl::StatusOr<NpyArray> ParseNpy(absl::string_view bytes, const NpyReadOptions& options = {});

// Reads `path`. NotFound if it cannot be opened; InvalidArgument (naming the path) if malformed.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path, const NpyReadOptions& options = {});

// Encodes `array` as a .npy image. InvalidArgument if data size disagrees with the shape or the
// version is not 0, 1 or 2.
absl::StatusOr<std::string> EncodeNpy(const NpyArray& array, const NpyWriteOptions& options = {});

// Writes `array` to `path` (replacing it). Internal if the file cannot be written; on failure
// the file may be partially written.
absl::Status WriteNpy(const std::string& path, const NpyArray& array,
                      const NpyWriteOptions& options = {});

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_NPY_H_
