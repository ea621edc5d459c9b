// pybind11 module tpde._core: numpy buffers in and out without copies, the GIL released
// around every encode and decode, tpde::Error raised as tpde.errors.TPDEError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "format/scratch.hpp"
#include "tpde/predict.hpp"
#include "tpde/tpde.hpp"

namespace py = pybind11;

namespace {

struct DTypeName {
  tpde::DType dtype;
  const char* name;
  const char* numpy;  // numpy dtype the decoded array gets
};

constexpr DTypeName kDTypes[] = {
    {tpde::DType::kFloat32, "float32", "float32"}, {tpde::DType::kFloat64, "float64", "float64"},
    {tpde::DType::kFloat16, "float16", "float16"}, {tpde::DType::kBFloat16, "bfloat16", "uint16"},
    {tpde::DType::kInt8, "int8", "int8"},          {tpde::DType::kUInt8, "uint8", "uint8"},
    {tpde::DType::kInt16, "int16", "int16"},       {tpde::DType::kUInt16, "uint16", "uint16"},
    {tpde::DType::kInt32, "int32", "int32"},       {tpde::DType::kUInt32, "uint32", "uint32"},
    {tpde::DType::kInt64, "int64", "int64"},       {tpde::DType::kUInt64, "uint64", "uint64"},
    {tpde::DType::kBool, "bool", "bool"},
};

[[noreturn]] void raise_error(tpde::ErrorCode code, const std::string& message) {
  throw tpde::Error(code, message);
}

tpde::DType dtype_from_name(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dtype;
  raise_error(
      tpde::ErrorCode::kBadDtype,
      "unsupported dtype '" + name +
          "': tpde codes float32, float64, float16, bfloat16, int8..int64, uint8..uint64 and bool");
}

const DTypeName& dtype_entry(tpde::DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d;
  raise_error(tpde::ErrorCode::kBadDtype, "unknown dtype");
}

py::array contiguous(const py::object& obj) {
  // numpy.asarray(order="C") keeps 0-d arrays 0-d (ascontiguousarray would make them 1-d).
  // Leaked on purpose: a static py::object would be destroyed after the interpreter.
  static auto* asarray = new py::object(py::module_::import("numpy").attr("asarray"));
  return (*asarray)(obj, py::arg("order") = "C").cast<py::array>();
}

std::vector<uint64_t> shape_of(const py::array& a) {
  std::vector<uint64_t> shape;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) shape.push_back(static_cast<uint64_t>(a.shape(i)));
  return shape;
}

tpde::DType resolve_dtype(const py::array& data, const py::object& dtype) {
  tpde::DType d;
  if (dtype.is_none()) {
    const std::string kind = py::str(data.dtype().attr("name"));
    d = dtype_from_name(kind);
  } else {
    d = dtype_from_name(py::str(dtype));
  }
  if (tpde::dtype_size(d) != static_cast<size_t>(data.itemsize()))
    raise_error(tpde::ErrorCode::kBadDtype, std::string("dtype ") + tpde::dtype_name(d) +
                                                " needs " + std::to_string(tpde::dtype_size(d)) +
                                                "-byte items, array has " +
                                                std::to_string(data.itemsize()) + "-byte items (" +
                                                std::string(py::str(data.dtype())) + ")");
  return d;
}

const py::array* optional_array(const py::object& obj, py::array& holder) {
  if (obj.is_none()) return nullptr;
  holder = contiguous(obj);
  return &holder;
}

// A bytes object holding `data`: allocated with the GIL, filled without it (a chunk is
// megabytes; the copy would hold up every other thread's Python).
py::bytes bytes_without_gil(const std::vector<uint8_t>& data) {
  auto bytes = py::reinterpret_steal<py::bytes>(
      PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(data.size())));
  if (!bytes) throw py::error_already_set();
  {
    py::gil_scoped_release release;
    if (!data.empty()) std::memcpy(PyBytes_AS_STRING(bytes.ptr()), data.data(), data.size());
  }
  return bytes;
}

py::object encode(const py::object& data_obj, const py::object& reference_obj,
                  const py::object& prev_obj, const py::object& dtype, const py::object& abs_error,
                  const py::object& log_rel_error, bool return_reconstruction,
                  const py::object& contexts, bool extrapolate, const std::string& level,
                  const py::object& reference_fingerprint,
                  const py::object& prev_reference_fingerprint) {
  if (level != "default" && level != "fast")
    raise_error(tpde::ErrorCode::kInvalidArgument,
                "level must be 'default' or 'fast', not '" + level + "'");
  const py::array data = contiguous(data_obj);
  py::array ref_holder, prev_holder;
  const py::array* ref = optional_array(reference_obj, ref_holder);
  const py::array* prev = optional_array(prev_obj, prev_holder);
  tpde::EncodeInput in;
  in.dtype = resolve_dtype(data, dtype);
  in.shape = shape_of(data);
  in.data = data.data();
  const size_t nbytes = static_cast<size_t>(data.nbytes());
  for (const py::array* r : {ref, prev}) {
    if (r && (static_cast<size_t>(r->nbytes()) != nbytes || r->itemsize() != data.itemsize()))
      raise_error(tpde::ErrorCode::kSizeMismatch,
                  std::string(r == ref ? "reference" : "prev_reference") + " has " +
                      std::to_string(r->nbytes()) + " bytes of " + std::to_string(r->itemsize()) +
                      "-byte items, data has " + std::to_string(nbytes) + " bytes of " +
                      std::to_string(data.itemsize()) +
                      "-byte items (same shape and dtype required)");
  }
  if (prev && !ref)
    raise_error(tpde::ErrorCode::kInvalidArgument, "prev_reference given without reference");
  in.reference = ref ? ref->data() : nullptr;
  in.prev_reference = prev ? prev->data() : nullptr;
  if (!abs_error.is_none() && !log_rel_error.is_none())
    raise_error(tpde::ErrorCode::kInvalidArgument, "give abs_error or log_rel_error, not both");
  if (!abs_error.is_none()) {
    in.lossy = tpde::LossyKind::kAbsolute;
    in.error_bound = abs_error.cast<double>();
  } else if (!log_rel_error.is_none()) {
    in.lossy = tpde::LossyKind::kLogRelative;
    in.error_bound = log_rel_error.cast<double>();
  }
  in.extrapolate = extrapolate;
  in.fast = level == "fast";
  if (!reference_fingerprint.is_none()) {
    if (!ref)
      raise_error(tpde::ErrorCode::kInvalidArgument, "reference_fingerprint without reference");
    in.reference_fingerprint = reference_fingerprint.cast<uint32_t>();
  }
  if (!prev_reference_fingerprint.is_none()) {
    if (!prev)
      raise_error(tpde::ErrorCode::kInvalidArgument,
                  "prev_reference_fingerprint without prev_reference");
    in.prev_reference_fingerprint = prev_reference_fingerprint.cast<uint32_t>();
  }
  if (!contexts.is_none()) {
    static const char* kNames[] = {"none",      "ref_exponent",  "prev_residual",
                                   "neighbour", "prev_exponent", "ref_exponent_prev_residual"};
    in.context_mask = 1u;
    for (const auto& item : contexts) {
      const std::string name = py::str(item);
      bool found = false;
      for (uint32_t s = 0; s < 6; ++s)
        if (name == kNames[s]) {
          in.context_mask |= 1u << s;
          found = true;
        }
      if (!found)
        raise_error(tpde::ErrorCode::kInvalidArgument, "unknown context scheme '" + name + "'");
    }
  }
  py::array reconstruction;
  if (return_reconstruction) {
    reconstruction =
        py::array(data.dtype(), std::vector<py::ssize_t>(data.shape(), data.shape() + data.ndim()));
    in.reconstruction = reconstruction.mutable_data();
  }
  std::vector<uint8_t> chunk;
  {
    py::gil_scoped_release release;
    chunk = tpde::encode(in);
  }
  py::bytes bytes = bytes_without_gil(chunk);
  if (return_reconstruction) return py::make_tuple(bytes, reconstruction);
  return bytes;
}

// A read-only, C-contiguous byte view of any buffer-protocol object (copied if strided).
class InputBytes {
 public:
  explicit InputBytes(const py::object& obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) {
      PyErr_Clear();
      holder_ = py::module_::import("builtins").attr("bytes")(py::memoryview(obj));
      if (PyObject_GetBuffer(holder_.ptr(), &view_, PyBUF_SIMPLE) != 0)
        throw py::error_already_set();
    }
  }
  ~InputBytes() { PyBuffer_Release(&view_); }
  InputBytes(const InputBytes&) = delete;
  InputBytes& operator=(const InputBytes&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  py::object holder_;
  Py_buffer view_{};
};

py::dict header_dict(const tpde::Header& h) {
  py::dict d;
  d["version"] = h.version;
  d["dtype"] = tpde::dtype_name(h.dtype);
  py::tuple shape(h.shape.size());
  for (size_t i = 0; i < h.shape.size(); ++i) shape[i] = h.shape[i];
  d["shape"] = shape;
  d["mode"] = h.mode == tpde::Mode::kDelta ? "delta" : "standalone";
  d["uses_prev_reference"] = bool(h.flags & tpde::kFlagPrevReference);
  d["reference_fingerprint"] = h.reference_fingerprint;
  d["prev_reference_fingerprint"] = h.prev_reference_fingerprint;
  d["header_size"] = h.header_size;
  d["lossy"] = h.lossy == tpde::LossyKind::kNone
                   ? py::object(py::none())
                   : py::object(py::str(h.lossy == tpde::LossyKind::kAbsolute ? "absolute"
                                                                              : "log_relative"));
  d["error_bound"] = h.lossy == tpde::LossyKind::kNone ? py::object(py::none())
                                                       : py::object(py::float_(h.error_bound));
  d["payload_size"] = h.payload_size;
  return d;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

uint64_t physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
#endif
  return UINT64_MAX;
}

// What the caller expects of the chunk, checked against its header before anything is
// allocated: a hostile chunk of a few bytes may claim up to 64 GiB.
void check_expected(const tpde::Header& h, uint64_t nbytes, const py::object& max_bytes,
                    const py::object& shape, const py::object& dtype) {
  if (!dtype.is_none()) {
    const tpde::DType want = dtype_from_name(py::str(dtype));
    if (want != h.dtype)
      raise_error(tpde::ErrorCode::kBadDtype, std::string("chunk holds ") +
                                                  tpde::dtype_name(h.dtype) + " values, expected " +
                                                  tpde::dtype_name(want));
  }
  if (!shape.is_none()) {
    std::vector<uint64_t> want;
    for (const auto& d : shape) {
      const py::int_ value = py::reinterpret_borrow<py::object>(d);
      if (value < py::int_(0))
        raise_error(tpde::ErrorCode::kInvalidArgument, "expected shape has a negative extent");
      want.push_back(value.cast<uint64_t>());
    }
    if (want != h.shape)
      raise_error(tpde::ErrorCode::kBadShape,
                  "chunk has shape " + shape_text(h.shape) + ", expected " + shape_text(want));
  }
  if (!max_bytes.is_none()) {
    const py::int_ limit = max_bytes.cast<py::int_>();
    if (limit < py::int_(0))
      raise_error(tpde::ErrorCode::kInvalidArgument, "max_bytes must be >= 0");
    if (py::int_(nbytes) > limit)
      raise_error(tpde::ErrorCode::kTooLarge,
                  "chunk decodes to " + std::to_string(nbytes) +
                      " bytes, more than max_bytes=" + std::string(py::str(limit)));
  }
}

// The output array of a chunk; an allocation that fails is the chunk's fault (too_large),
// never a MemoryError.
py::array allocate_output(const tpde::Header& h, uint64_t nbytes) {
  const std::string what = "chunk of shape " + shape_text(h.shape) + " and dtype " +
                           tpde::dtype_name(h.dtype) + " decodes to " + std::to_string(nbytes) +
                           " bytes";
  if (nbytes > physical_memory())
    raise_error(tpde::ErrorCode::kTooLarge, what + ", more than this machine's memory");
  std::vector<py::ssize_t> shape(h.shape.begin(), h.shape.end());
  try {
    return py::array(py::dtype(dtype_entry(h.dtype).numpy), shape);
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_MemoryError) && !e.matches(PyExc_ValueError)) throw;
    raise_error(tpde::ErrorCode::kTooLarge,
                what + " that cannot be allocated; pass max_bytes or the expected shape");
  }
}

py::array decode(const py::object& chunk_obj, const py::object& reference_obj,
                 const py::object& prev_obj, const py::object& out_obj, const py::object& max_bytes,
                 const py::object& shape, const py::object& dtype) {
  const InputBytes src(chunk_obj);
  const tpde::Header h = tpde::read_header(src.data(), src.size());
  const uint64_t nbytes = h.count() * tpde::dtype_size(h.dtype);  // at most 64 GiB (read_header)
  check_expected(h, nbytes, max_bytes, shape, dtype);
  py::array out;
  if (out_obj.is_none()) {
    out = allocate_output(h, nbytes);
  } else {
    out = out_obj.cast<py::array>();
    if (!(out.flags() & py::array::c_style) || !out.writeable())
      raise_error(tpde::ErrorCode::kInvalidArgument, "out must be a writeable C-contiguous array");
  }
  py::array ref_holder, prev_holder;
  const py::array* ref = optional_array(reference_obj, ref_holder);
  const py::array* prev = optional_array(prev_obj, prev_holder);
  void* out_ptr = out.mutable_data();
  const size_t out_size = static_cast<size_t>(out.nbytes());
  for (const py::array* r : {ref, prev})
    if (r && r->data() == out_ptr)
      raise_error(tpde::ErrorCode::kInvalidArgument, "out must not be the reference buffer");
  {
    py::gil_scoped_release release;
    tpde::decode(src.data(), src.size(), out_ptr, out_size, ref ? ref->data() : nullptr,
                 ref ? static_cast<size_t>(ref->nbytes()) : 0, prev ? prev->data() : nullptr,
                 prev ? static_cast<size_t>(prev->nbytes()) : 0);
  }
  return out;
}

py::dict read_header(const py::object& chunk_obj) {
  const InputBytes src(chunk_obj);
  return header_dict(tpde::read_header(src.data(), src.size()));
}

uint32_t fingerprint(const py::object& obj) {
  const py::array a = contiguous(obj);
  const void* p = a.data();
  const size_t n = static_cast<size_t>(a.nbytes());
  py::gil_scoped_release release;
  return tpde::crc32c(p, n);
}

// Items of `data` whose bits differ from `reference` (same byte size), counted without a
// temporary mask: what the store records per chunk beside the coded bytes.
template <typename Word>
size_t count_differing(const Word* a, const Word* b, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) count += a[i] != b[i];
  return count;
}

size_t count_changed(const py::object& data_obj, const py::object& reference_obj) {
  const py::array data = contiguous(data_obj);
  const py::array reference = contiguous(reference_obj);
  const size_t item = static_cast<size_t>(data.itemsize());
  const size_t nbytes = static_cast<size_t>(data.nbytes());
  if (static_cast<size_t>(reference.nbytes()) != nbytes ||
      static_cast<size_t>(reference.itemsize()) != item)
    raise_error(tpde::ErrorCode::kInvalidArgument,
                "count_changed: data and reference differ in size");
  const void* a = data.data();
  const void* b = reference.data();
  py::gil_scoped_release release;
  switch (item) {
    case 1:
      return count_differing(static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(b),
                             nbytes);
    case 2:
      return count_differing(static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b),
                             nbytes / 2);
    case 4:
      return count_differing(static_cast<const uint32_t*>(a), static_cast<const uint32_t*>(b),
                             nbytes / 4);
    case 8:
      return count_differing(static_cast<const uint64_t*>(a), static_cast<const uint64_t*>(b),
                             nbytes / 8);
    default: {
      size_t count = 0;
      const auto* x = static_cast<const uint8_t*>(a);
      const auto* y = static_cast<const uint8_t*>(b);
      for (size_t i = 0; i < nbytes; i += item) count += std::memcmp(x + i, y + i, item) != 0;
      return count;
    }
  }
}

// Prediction terms from Python: [("adam_direction", m, v) | ("scaled_delta", w, w_ref, v), ...];
// `holders` keeps the contiguous arrays alive while the GIL is released.
std::vector<tpde::Term> prediction_terms(const py::object& terms_obj, const py::array& reference,
                                         std::vector<py::array>& holders) {
  std::vector<tpde::Term> terms;
  for (const auto& item : terms_obj) {
    if (!py::isinstance<py::sequence>(item) || py::isinstance<py::str>(item))
      raise_error(tpde::ErrorCode::kInvalidArgument,
                  "each prediction term is a tuple (name, arrays...), not " +
                      std::string(py::str(py::type::of(item).attr("__name__"))));
    const py::tuple tup = py::tuple(py::reinterpret_borrow<py::sequence>(item));
    if (tup.size() < 1) raise_error(tpde::ErrorCode::kInvalidArgument, "empty prediction term");
    const std::string name = py::str(tup[0]);
    tpde::Term t;
    size_t arity;
    if (name == "adam_direction") {
      t.kind = tpde::TermKind::kAdamDirection;
      arity = 2;
    } else if (name == "scaled_delta") {
      t.kind = tpde::TermKind::kScaledDelta;
      arity = 3;
    } else {
      raise_error(tpde::ErrorCode::kInvalidArgument,
                  "unknown prediction term '" + name + "' (adam_direction, scaled_delta)");
    }
    if (tup.size() != arity + 1)
      raise_error(tpde::ErrorCode::kInvalidArgument,
                  "prediction term '" + name + "' takes " + std::to_string(arity) + " arrays");
    const void* ptrs[3] = {nullptr, nullptr, nullptr};
    for (size_t j = 0; j < arity; ++j) {
      holders.push_back(contiguous(tup[j + 1]));
      const py::array& a = holders.back();
      if (a.nbytes() != reference.nbytes() || a.itemsize() != reference.itemsize())
        raise_error(tpde::ErrorCode::kSizeMismatch,
                    "prediction term '" + name + "' array " + std::to_string(j) +
                        " does not match the reference's shape and dtype");
      ptrs[j] = a.data();
    }
    t.a = ptrs[0];
    t.b = ptrs[1];
    t.c = ptrs[2];
    terms.push_back(t);
  }
  return terms;
}

py::object fit_prediction(const py::object& data_obj, const py::object& reference_obj,
                          const py::object& terms_obj, double eps, const py::object& dtype) {
  const py::array data = contiguous(data_obj);
  const py::array reference = contiguous(reference_obj);
  const tpde::DType d = resolve_dtype(data, dtype);
  if (reference.nbytes() != data.nbytes() || reference.itemsize() != data.itemsize())
    raise_error(tpde::ErrorCode::kSizeMismatch,
                "reference does not match the data's shape and dtype");
  std::vector<py::array> holders;
  const std::vector<tpde::Term> terms = prediction_terms(terms_obj, reference, holders);
  const size_t n = static_cast<size_t>(data.size());
  tpde::PredictionFit fit;
  {
    py::gil_scoped_release release;
    fit = tpde::fit_prediction(d, n, data.data(), reference.data(), terms, eps);
  }
  if (fit.coefs.empty()) return py::none();
  return py::make_tuple(py::cast(fit.coefs), fit.explained);
}

py::array predict(const py::object& reference_obj, const py::object& terms_obj,
                  const std::vector<double>& coefs, double eps, const py::object& dtype) {
  const py::array reference = contiguous(reference_obj);
  const tpde::DType d = resolve_dtype(reference, dtype);
  std::vector<py::array> holders;
  const std::vector<tpde::Term> terms = prediction_terms(terms_obj, reference, holders);
  py::array out(reference.dtype(),
                std::vector<py::ssize_t>(reference.shape(), reference.shape() + reference.ndim()));
  const size_t n = static_cast<size_t>(reference.size());
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    tpde::predict(d, n, reference.data(), terms, coefs, eps, dst);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tpde C++ core: chunk encode/decode";
  m.attr("__version__") = TPDE_VERSION;
  m.attr("FORMAT_VERSION") = tpde::kFormatVersion;
  m.attr("FAST_FORMAT_VERSION") = tpde::kFastFormatVersion;
  py::dict dtypes;  // name -> (header code, numpy dtype of decoded arrays, item bytes, is float)
  for (const auto& d : kDTypes)
    dtypes[d.name] = py::make_tuple(static_cast<int>(d.dtype), d.numpy, tpde::dtype_size(d.dtype),
                                    tpde::is_float(d.dtype));
  m.attr("DTYPES") = dtypes;

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tpde::Error& e) {
      py::object cls = py::module_::import("tpde.errors").attr("TPDEError");
      py::object err = cls(e.what(), tpde::error_name(e.code()));
      PyErr_SetObject(cls.ptr(), err.ptr());
    }
  });

  m.def("encode", &encode, py::arg("data"), py::kw_only(), py::arg("reference") = py::none(),
        py::arg("prev_reference") = py::none(), py::arg("dtype") = py::none(),
        py::arg("abs_error") = py::none(), py::arg("log_rel_error") = py::none(),
        py::arg("return_reconstruction") = false, py::arg("contexts") = py::none(),
        py::arg("extrapolate") = true, py::arg("level") = "default",
        py::arg("reference_fingerprint") = py::none(),
        py::arg("prev_reference_fingerprint") = py::none(),
        "Encode one array as a tpde chunk: standalone, or a delta against reference.\n"
        "Lossless unless abs_error (|decoded - x| <= abs_error) or log_rel_error\n"
        "(|decoded - x| <= log_rel_error * |x|) is given; with return_reconstruction=True\n"
        "returns (chunk, decoded values), the reference for the next step (error feedback).\n"
        "contexts: restrict the context schemes the encoder may choose (benchmarks), e.g. []\n"
        "or ['ref_exponent']; 'none' is always allowed.\n"
        "extrapolate=False: no prediction from the references (lossless: no linear\n"
        "extrapolation from prev_reference and no scaled rows; lossy absolute: quantize\n"
        "around the reference itself); benchmarks measure what it buys.\n"
        "level='fast': byte planes and static rANS (format 6): several times faster, a few\n"
        "percent larger; lossless only, prev_reference unused.");
  m.def("decode", &decode, py::arg("chunk"), py::kw_only(), py::arg("reference") = py::none(),
        py::arg("prev_reference") = py::none(), py::arg("out") = py::none(),
        py::arg("max_bytes") = py::none(), py::arg("shape") = py::none(),
        py::arg("dtype") = py::none(),
        "Decode a tpde chunk; delta chunks need the reference they were coded against.\n"
        "max_bytes, shape and dtype (a codec dtype name such as 'bfloat16') are checked against\n"
        "the header before anything is allocated: TPDEError too_large, bad_shape, bad_dtype.\n"
        "A chunk that claims more memory than can be allocated is too_large too.");
  m.def("read_header", &read_header, py::arg("chunk"), "Parse and validate a chunk header.");
  m.def("fit_prediction", &fit_prediction, py::arg("data"), py::arg("reference"), py::arg("terms"),
        py::kw_only(), py::arg("eps") = 1e-8, py::arg("dtype") = py::none(),
        "(coefficients, fraction of the squared change explained) of a cross-state prediction of "
        "data; None if unusable.");
  m.def("predict", &predict, py::arg("reference"), py::arg("terms"), py::arg("coefs"),
        py::kw_only(), py::arg("eps") = 1e-8, py::arg("dtype") = py::none(),
        "A cross-state prediction: reference + sum of coefficient x term, rounded to the dtype.");
  m.def("fingerprint", &fingerprint, py::arg("array"), "CRC32C of an array's raw bytes.");
  m.def("count_changed", &count_changed, py::arg("data"), py::arg("reference"),
        "Items of data whose bits differ from reference's (same dtype size and byte size).");
  m.def("trim_scratch", &tpde::trim_scratch,
        "Free the coder's work buffers kept for reuse between chunks; the bytes freed.");
  m.def("scratch_bytes", &tpde::scratch_cached_bytes,
        "Bytes of coder work buffers kept for reuse between chunks now.");
}
