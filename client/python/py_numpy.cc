// numpy arrays -> the library's views, with the checks that keep a bad argument from ever
// reaching libclusterkv as a wild pointer: dtype, ndim, shape, strides (the last axis must be
// contiguous, outer axes may be strided, e.g. keys[:, :n]) and alignment.
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bindings.h"

namespace clusterkv::python {
namespace {

std::string ShapeString(const py::array& a) {
  std::vector<int64_t> dims(a.shape(), a.shape() + a.ndim());
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

std::string Expected(std::initializer_list<int64_t> dims) {
  std::vector<std::string> parts;
  for (int64_t d : dims) parts.push_back(d < 0 ? "n" : absl::StrCat(d));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

// Checks ndim and shape against `dims` (negative: any size >= 1) and the stride rules; returns
// the outer strides in elements.
std::vector<int64_t> CheckLayout(const py::array& a, const char* what,
                                 std::initializer_list<int64_t> dims) {
  const size_t ndim = dims.size();
  if (static_cast<size_t>(a.ndim()) != ndim) {
    ThrowInvalid(absl::StrCat(what, " must have ", ndim, " dimensions ", Expected(dims),
                              ", got shape ", ShapeString(a)));
  }
  size_t i = 0;
  for (int64_t want : dims) {
    const int64_t got = a.shape(i);
    if ((want >= 0 && got != want) || (want < 0 && got < 1)) {
      ThrowInvalid(absl::StrCat(what, " must have shape ", Expected(dims), ", got ",
                                ShapeString(a)));
    }
    ++i;
  }
  const int64_t item = a.itemsize();
  if (a.shape(ndim - 1) > 1 && a.strides(ndim - 1) != item) {
    ThrowInvalid(absl::StrCat(what, ": the last axis must be contiguous (stride ", item,
                              " bytes, got ", a.strides(ndim - 1),
                              "); pass numpy.ascontiguousarray(", what, ")"));
  }
  std::vector<int64_t> strides;
  for (size_t d = 0; d + 1 < ndim; ++d) {
    const int64_t s = a.strides(d);
    if (a.shape(d) > 1 && (s <= 0 || s % item != 0)) {
      ThrowInvalid(absl::StrCat(what, ": axis ", d, " has stride ", s,
                                " bytes; only positive strides of whole elements are supported "
                                "(pass numpy.ascontiguousarray(",
                                what, "))"));
    }
    strides.push_back(s / item);
  }
  // Row-major order of the axes: each outer stride spans the whole inner extent (the library
  // reads [d0][d1][d2] blocks; numpy's transposes and fancy indexing can produce other orders).
  int64_t inner = a.shape(ndim - 1);
  for (size_t d = ndim - 1; d-- > 0;) {
    if (a.shape(d) > 1 && strides[d] < inner) {
      ThrowInvalid(absl::StrCat(what, ": axes are not in row-major order (strides ",
                                absl::StrJoin(std::vector<int64_t>(a.strides(), a.strides() + ndim),
                                              ", "),
                                " bytes for shape ", ShapeString(a),
                                "); pass numpy.ascontiguousarray(", what, ")"));
    }
    inner = (a.shape(d) > 1 ? strides[d] : inner) * a.shape(d);
  }
  if (reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(item) != 0) {
    ThrowInvalid(absl::StrCat(what, " is not aligned to its element size"));
  }
  return strides;
}

}  // namespace

DType ArrayDType(const py::array& a, const char* what) {
  const py::dtype dt = a.dtype();
  if (dt.equal(py::dtype::of<float>())) return DType::kFloat32;
  if (dt.equal(py::dtype("float16"))) return DType::kFloat16;
  throw py::type_error(absl::StrCat(what, " must be a numpy array of float32 or float16, got ",
                                    dt.attr("name").cast<std::string>()));
}

Tensor3View AsTensor3(const py::array& a, const char* what, int64_t d0, int64_t d1, int64_t d2) {
  const DType dtype = ArrayDType(a, what);
  const std::vector<int64_t> strides = CheckLayout(a, what, {d0, d1, d2});
  Tensor3View view(a.data(), dtype, {a.shape(0), a.shape(1), a.shape(2)});
  // A stride of a length-1 axis is meaningless; keep the contiguous one there.
  if (a.shape(0) > 1) view.strides[0] = strides[0];
  if (a.shape(1) > 1) view.strides[1] = strides[1];
  return view;
}

ConstMatrixView AsMatrix(const py::array& a, const char* what, int64_t rows, int64_t cols) {
  const DType dtype = ArrayDType(a, what);
  const std::vector<int64_t> strides = CheckLayout(a, what, {rows, cols});
  return ConstMatrixView(a.data(), dtype, a.shape(0), a.shape(1),
                         a.shape(0) > 1 ? strides[0] : a.shape(1));
}

MatrixView AsOutput(py::array& a, const char* what, int64_t rows, int64_t cols) {
  if (ArrayDType(a, what) != DType::kFloat32) {
    throw py::type_error(absl::StrCat(what, " must be float32"));
  }
  if (!a.writeable()) ThrowInvalid(absl::StrCat(what, " is read-only"));
  const std::vector<int64_t> strides = CheckLayout(a, what, {rows, cols});
  return MatrixView(static_cast<float*>(a.mutable_data()), a.shape(0), a.shape(1),
                    a.shape(0) > 1 ? strides[0] : a.shape(1));
}

std::vector<int32_t> TokenIds(const py::handle& tokens, const char* what) {
  if (py::isinstance<py::str>(tokens) || py::isinstance<py::bytes>(tokens)) {
    throw py::type_error(absl::StrCat(what, " must be a sequence of ints, not a string"));
  }
  const py::array a = py::module_::import("numpy").attr("asarray")(tokens);
  const char kind = a.dtype().kind();
  // An empty list comes out as float64: no element has the wrong type.
  if (kind != 'i' && kind != 'u' && !(a.size() == 0 && kind == 'f')) {
    throw py::type_error(absl::StrCat(what, " must hold integers, got ",
                                      a.dtype().attr("name").cast<std::string>()));
  }
  if (a.ndim() != 1) {
    ThrowInvalid(absl::StrCat(what, " must be one-dimensional, got shape ", ShapeString(a)));
  }
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(a.size()));
  // Unsigned ids read as uint64 (a cast to int64 would wrap the largest into range).
  auto convert = [&](auto typed) {
    const auto view = typed.template unchecked<1>();
    for (py::ssize_t i = 0; i < view.shape(0); ++i) {
      const auto id = view(i);
      bool in_range;
      if constexpr (std::is_signed_v<decltype(id)>) {
        in_range = id >= INT32_MIN && id <= INT32_MAX;
      } else {
        in_range = id <= static_cast<uint64_t>(INT32_MAX);
      }
      if (!in_range) {
        ThrowInvalid(absl::StrCat(what, "[", i, "] = ", id, " is outside int32"));
      }
      ids.push_back(static_cast<int32_t>(id));
    }
  };
  if (kind == 'u') {
    convert(py::array_t<uint64_t, py::array::forcecast>(a));
  } else {
    convert(py::array_t<int64_t, py::array::forcecast>(a));
  }
  return ids;
}

}  // namespace clusterkv::python
