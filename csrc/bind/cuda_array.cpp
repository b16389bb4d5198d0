// dlkern._C_cuda device arrays: DeviceArray, Stream, allocator statistics, NumPy
// copies and DLPack export/import. Validation happens before any device call; CUDA
// failures arrive as cuda::Error and are translated in cuda_module.cpp.
#include <Python.h>

#include <stdexcept>

#include "bind/cuda_common.h"
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/dlpack.h"

namespace dlkern::bind {

cuda::DType parse_dtype(const py::handle& obj, const char* op) {
  const py::dtype dt = py::dtype::from_args(py::reinterpret_borrow<py::object>(obj));
  const char kind = dt.kind();
  const bool native = dt.byteorder() != '>' || dt.itemsize() == 1;
  if (native && kind == 'f' && dt.itemsize() == 4) return cuda::DType::f32;
  if (native && kind == 'f' && dt.itemsize() == 8) return cuda::DType::f64;
  if (native && kind == 'i' && dt.itemsize() == 8) return cuda::DType::i64;
  if (kind == 'b' && dt.itemsize() == 1) return cuda::DType::b8;
  type_error(op, ": dtype ", py::str(dt).cast<std::string>(),
             " is not supported on CUDA (float32, float64, int64 or bool)");
}

py::dtype numpy_dtype(cuda::DType dt) {
  switch (dt) {
    case cuda::DType::f32: return py::dtype::of<float>();
    case cuda::DType::f64: return py::dtype::of<double>();
    case cuda::DType::i64: return py::dtype::of<int64_t>();
    case cuda::DType::b8: return py::dtype::of<bool>();
  }
  return py::dtype::of<float>();
}

cudaStream_t parse_stream(const py::handle& obj, const char* op) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<CudaStream>(obj))
    type_error(op, ": stream must be a dlkern._C_cuda.Stream or None, got ",
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  return obj.cast<const CudaStream&>().handle;
}

cuda::DeviceArray& require_device_array(const py::handle& obj, const char* op, const char* arg) {
  if (py::isinstance<DeviceArray>(obj)) return obj.cast<DeviceArray&>();
  if (py::isinstance<py::array>(obj))
    type_error(op, ": ", arg, " is a numpy.ndarray (host memory) but the operation runs on a CUDA "
               "device; copy it over with dlkern._C_cuda.from_numpy() first");
  type_error(op, ": ", arg, " must be a dlkern._C_cuda.DeviceArray, got ",
             py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
}

const cuda::DeviceArray& require_float_device_array(const py::handle& obj, const char* op, const char* arg) {
  const cuda::DeviceArray& a = require_device_array(obj, op, arg);
  if (!cuda::is_float(a.dtype))
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(a.dtype), "; expected float32 or float64");
  return a;
}

py::tuple to_tuple(const Shape& v) {
  py::tuple t(v.size());
  for (size_t i = 0; i < v.size(); ++i) t[i] = py::int_(v[i]);
  return t;
}

Shape to_shape(const py::handle& obj, const char* op, const char* arg) {
  if (py::isinstance<py::int_>(obj)) return {obj.cast<int64_t>()};
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    type_error(op, ": ", arg, " must be an int or a sequence of ints, got ",
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  Shape out;
  for (const py::handle& item : obj) {
    if (!py::isinstance<py::int_>(item))
      type_error(op, ": ", arg, " must contain only ints, got ",
                 py::str(py::type::of(item).attr("__name__")).cast<std::string>());
    out.push_back(item.cast<int64_t>());
  }
  if (out.size() > 64) value_error(op, ": ", arg, " has ", out.size(), " dimensions (at most 64)");
  return out;
}

namespace {

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";

int device_arg(const py::object& device) { return device.is_none() ? -1 : device.cast<int>(); }

// ---------------------------------------------------------------------------
// NumPy
// ---------------------------------------------------------------------------

DeviceArray from_numpy(const py::object& obj, const py::object& stream, const py::object& device) {
  const char* op = "from_numpy";
  py::array a = require_array(obj, op, "array");
  const cuda::DType dt = parse_dtype(a.dtype(), op);
  const cudaStream_t s = parse_stream(stream, op);
  // The copy to the device needs one compact block; a strided view is packed on the host.
  if (!(a.flags() & py::array::c_style))
    a = py::module_::import("numpy").attr("ascontiguousarray")(a);
  Shape shape(a.shape(), a.shape() + a.ndim());
  const void* host = a.data();
  const int dev = device_arg(device);
  py::gil_scoped_release nogil;
  return cuda::from_host(host, shape, dt, dev, s, op);
}

py::array to_numpy(const DeviceArray& x) {
  py::array out(numpy_dtype(x.dtype), std::vector<py::ssize_t>(x.shape.begin(), x.shape.end()));
  void* host = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    cuda::to_host(x, host, "numpy");
  }
  return out;
}

// ---------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------

DeviceArray as_strided(const DeviceArray& x, const py::object& shape_obj, const py::object& strides_obj,
                       const py::object& offset_obj) {
  const char* op = "as_strided";
  DeviceArray v = x;
  v.shape = to_shape(shape_obj, op, "shape");
  v.strides = to_shape(strides_obj, op, "strides");
  v.offset = offset_obj.is_none() ? x.offset : offset_obj.cast<int64_t>();
  cuda::check_view(v.shape, v.strides, v.offset, x.storage_numel());
  return v;
}

DeviceArray permute(const DeviceArray& x, const py::object& dims_obj) {
  const char* op = "permute";
  const Shape dims = to_shape(dims_obj, op, "dims");
  if (static_cast<int>(dims.size()) != x.ndim())
    value_error(op, ": got ", dims.size(), " dimensions for an array of ", x.ndim());
  DeviceArray v = x;
  std::vector<bool> seen(x.ndim(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int d = cuda::normalize_axis(dims[i], x.ndim(), op);
    if (seen[d]) value_error(op, ": dimension ", dims[i], " is repeated in ", cuda::shape_str(dims));
    seen[d] = true;
    v.shape[i] = x.shape[d];
    v.strides[i] = x.strides[d];
  }
  return v;
}

DeviceArray reshape(const DeviceArray& x, const py::object& shape_obj) {
  const char* op = "reshape";
  Shape shape = to_shape(shape_obj, op, "shape");
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) value_error(op, ": only one dimension can be -1");
      infer = static_cast<int>(i);
    } else if (shape[i] < 0) {
      value_error(op, ": negative size in shape ", cuda::shape_str(shape));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0 && known > 0 && x.numel() % known == 0) shape[infer] = x.numel() / known;
  if (cuda::numel(shape) != x.numel() || (infer >= 0 && known == 0))
    value_error(op, ": cannot reshape an array of shape ", cuda::shape_str(x.shape), " (",
                x.numel(), " elements) into ", cuda::shape_str(to_shape(shape_obj, op, "shape")));
  // Only compact arrays are reshaped in place; others need an explicit .contiguous().
  if (!x.is_contiguous())
    value_error(op, ": array of shape ", cuda::shape_str(x.shape), " with strides ",
                cuda::shape_str(x.strides), " is not contiguous; call .contiguous() first");
  DeviceArray v = x;
  v.shape = shape;
  v.strides = cuda::contiguous_strides(shape);
  return v;
}

std::string repr(const DeviceArray& x) {
  return cat("DeviceArray(shape=", cuda::shape_str(x.shape), ", strides=", cuda::shape_str(x.strides),
             ", dtype=", cuda::dtype_name(x.dtype), ", device=cuda:", x.device, ")");
}

// ---------------------------------------------------------------------------
// DLPack
// ---------------------------------------------------------------------------

struct ExportContext {
  DeviceArray array;  // keeps the storage alive while the consumer holds the tensor
  Shape shape, strides;
  DLManagedTensor managed{};
};

void export_deleter(DLManagedTensor* self) { delete static_cast<ExportContext*>(self->manager_ctx); }

void capsule_destructor(PyObject* capsule) {
  // A consumer that took the tensor renamed the capsule and now owns it.
  if (PyCapsule_IsValid(capsule, kUsedCapsuleName)) return;
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (managed && managed->deleter) managed->deleter(managed);
  PyErr_Clear();
  PyErr_Restore(type, value, traceback);
}

DLDataType dl_dtype(cuda::DType dt) {
  switch (dt) {
    case cuda::DType::f32: return {kDLFloat, 32, 1};
    case cuda::DType::f64: return {kDLFloat, 64, 1};
    case cuda::DType::i64: return {kDLInt, 64, 1};
    // DLPack's bool code (PyTorch >= 2.0 reads it as torch.bool; kDLUInt 8 would be uint8).
    case cuda::DType::b8: return {kDLBool, 8, 1};
  }
  return {kDLFloat, 32, 1};
}

// The consumer's stream per the DLPack protocol for CUDA: None or 1 is the legacy
// default stream, 2 the per-thread default stream, -1 asks for no synchronisation,
// 0 is disallowed (ambiguous), any other value is a cudaStream_t.
bool consumer_stream(const py::object& stream, cudaStream_t* out) {
  if (stream.is_none()) {
    *out = cudaStreamLegacy;
    return true;
  }
  const int64_t v = stream.cast<int64_t>();
  if (v == -1) return false;
  if (v == 0) value_error("__dlpack__: stream=0 is ambiguous for CUDA; pass 1 (legacy default) or 2 (per-thread default)");
  *out = v == 1 ? cudaStreamLegacy : v == 2 ? cudaStreamPerThread : reinterpret_cast<cudaStream_t>(v);
  return true;
}

py::object to_dlpack(const DeviceArray& x, const py::object& stream, const py::object& max_version,
                     const py::object& dl_device, const py::object& copy) {
  const char* op = "__dlpack__";
  (void)max_version;  // only the unversioned capsule is produced, which the protocol allows
  if (!dl_device.is_none()) {
    const auto dev = dl_device.cast<std::pair<int, int>>();
    if (dev.first != kDLCUDA || dev.second != x.device)
      throw py::buffer_error(cat(op, ": can only export to the array's own device (", int(kDLCUDA),
                                 ", ", x.device, "), not (", dev.first, ", ", dev.second, ")"));
  }
  if (!copy.is_none() && copy.cast<bool>())
    throw py::buffer_error(cat(op, ": copy=True is not supported; export and copy on the consumer side"));
  cudaStream_t consumer;
  if (consumer_stream(stream, &consumer)) {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    // The consumer's later work must see everything queued on the producing stream.
    cuda::stream_wait(consumer, x.stream == nullptr ? cudaStreamLegacy : x.stream, op);
  }
  auto* ctx = new ExportContext{x, x.shape, x.strides, {}};
  DLTensor& t = ctx->managed.dl_tensor;
  t.data = x.data();
  t.device = {kDLCUDA, x.device};
  t.ndim = x.ndim();
  t.dtype = dl_dtype(x.dtype);
  t.shape = ctx->shape.data();
  t.strides = ctx->strides.data();
  t.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = export_deleter;
  PyObject* capsule = PyCapsule_New(&ctx->managed, kCapsuleName, capsule_destructor);
  if (!capsule) {
    delete ctx;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(capsule);
}

// cuda::DType of a DLPack tensor, or TypeError.
cuda::DType from_dl_dtype(const DLDataType& d) {
  if (d.lanes == 1 && d.code == kDLFloat && d.bits == 32) return cuda::DType::f32;
  if (d.lanes == 1 && d.code == kDLFloat && d.bits == 64) return cuda::DType::f64;
  if (d.lanes == 1 && d.code == kDLInt && d.bits == 64) return cuda::DType::i64;
  if (d.lanes == 1 && d.code == kDLBool && d.bits == 8) return cuda::DType::b8;
  type_error("from_dlpack: DLPack dtype (code ", int(d.code), ", bits ", int(d.bits), ", lanes ",
             d.lanes, ") is not supported on CUDA (float32, float64, int64 or bool)");
}

DeviceArray from_dlpack(const py::object& obj) {
  const char* op = "from_dlpack";
  if (py::isinstance<DeviceArray>(obj)) return obj.cast<DeviceArray>();
  py::object capsule = obj;
  if (!PyCapsule_CheckExact(obj.ptr())) {
    if (!py::hasattr(obj, "__dlpack__") || !py::hasattr(obj, "__dlpack_device__"))
      type_error(op, ": expected an object with __dlpack__ and __dlpack_device__ (a PyTorch or "
                 "CuPy CUDA tensor) or a DLPack capsule, got ",
                 py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    const auto dev = obj.attr("__dlpack_device__")().cast<std::pair<int, int>>();
    if (dev.first != kDLCUDA)
      type_error(op, ": the object lives on DLPack device type ", dev.first,
                 dev.first == kDLCPU ? " (CPU); copy host data with from_numpy()" : " (not CUDA)");
    // Our kernels run on the legacy default stream unless told otherwise.
    capsule = obj.attr("__dlpack__")(py::arg("stream") = 1);
  }
  if (!PyCapsule_IsValid(capsule.ptr(), kCapsuleName))
    type_error(op, ": expected an unused \"dltensor\" capsule (a capsule can be consumed once)");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kCapsuleName));
  const DLTensor& t = managed->dl_tensor;
  if (t.device.device_type != kDLCUDA)
    type_error(op, ": the tensor lives on DLPack device type ", t.device.device_type, ", not CUDA (2)");
  const cuda::DType dt = from_dl_dtype(t.dtype);
  if (t.ndim < 0 || t.ndim > 64) value_error(op, ": bad ndim ", t.ndim);

  DeviceArray a;
  a.dtype = dt;
  a.device = t.device.device_id;
  a.shape.assign(t.shape, t.shape + t.ndim);
  a.strides = t.strides ? Shape(t.strides, t.strides + t.ndim) : cuda::contiguous_strides(a.shape);
  // The storage spans every element the view reaches (strides may be negative).
  const int64_t item = static_cast<int64_t>(cuda::itemsize(dt));
  int64_t lo = 0, hi = 0;
  if (cuda::numel(a.shape) > 0)
    for (int i = 0; i < t.ndim; ++i) {
      const int64_t reach = (a.shape[i] - 1) * a.strides[i];
      (reach < 0 ? lo : hi) += reach;
    }
  char* first = static_cast<char*>(t.data) + t.byte_offset;
  auto storage = std::make_shared<cuda::Storage>();
  storage->data = first + lo * item;
  storage->bytes = cuda::numel(a.shape) > 0 ? static_cast<size_t>((hi - lo + 1) * item) : 0;
  storage->device = a.device;
  // The producer's deleter may touch Python objects: call it with the GIL held.
  storage->release = [managed] {
    if (!managed->deleter) return;
    if (Py_IsInitialized()) {
      py::gil_scoped_acquire gil;
      managed->deleter(managed);
    }
  };
  a.offset = -lo;
  a.storage = std::move(storage);
  a.stream = nullptr;
  // Taken: from here on the storage (not the capsule) releases the tensor.
  PyCapsule_SetName(capsule.ptr(), kUsedCapsuleName);
  return a;
}

py::dict stats_dict(const cuda::AllocatorStats& st) {
  py::dict d;
  d["allocated_bytes"] = st.allocated;
  d["reserved_bytes"] = st.reserved;
  d["cached_blocks"] = st.cached_blocks;
  d["device_allocations"] = st.backend_allocs;
  return d;
}

py::dict memory_stats(const py::object& device) {
  return stats_dict(cuda::CachingAllocator::device_allocator().stats(device.is_none() ? 0 : device.cast<int>()));
}

// The allocator's bookkeeping over malloc, so tests run it without a GPU. limit_bytes
// makes the backend report out-of-memory once that much is held.
class HostCachingAllocator {
 public:
  explicit HostCachingAllocator(size_t limit)
      : alloc_(cuda::CachingAllocator::Backend{
            [this](void** ptr, size_t bytes, int) {
              if (held_ + bytes > limit_) return cudaErrorMemoryAllocation;
              *ptr = std::malloc(bytes);
              if (!*ptr) return cudaErrorMemoryAllocation;
              held_ += bytes;
              sizes_[*ptr] = bytes;
              return cudaSuccess;
            },
            [this](void* ptr, int) {
              held_ -= sizes_[ptr];
              sizes_.erase(ptr);
              std::free(ptr);
              return cudaSuccess;
            }}),
        limit_(limit) {}
  ~HostCachingAllocator() { alloc_.empty_cache(); }
  uintptr_t allocate(size_t bytes, uintptr_t stream) {
    return reinterpret_cast<uintptr_t>(
        alloc_.allocate(bytes, 0, reinterpret_cast<cudaStream_t>(stream), "host_allocator"));
  }
  void release(uintptr_t ptr) { alloc_.release(reinterpret_cast<void*>(ptr)); }
  void empty_cache() { alloc_.empty_cache(); }
  py::dict stats() const {
    py::dict d = stats_dict(alloc_.stats(0));
    d["held_bytes"] = held_;
    return d;
  }

 private:
  cuda::CachingAllocator alloc_;
  size_t limit_;
  size_t held_ = 0;
  std::unordered_map<void*, size_t> sizes_;
};

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_array) {
  py::class_<CudaStream>(m, "Stream", "A CUDA stream. Stream() makes a new one on the current "
                                      "device; default_stream() is the legacy default stream.")
      .def(py::init([](const py::object& device) {
             const char* op = "Stream";
             cuda::require_device(op);
             CudaStream s;
             s.device = device_arg(device);
             if (s.device < 0) cuda::check(cudaGetDevice(&s.device), op, "query the current device");
             cuda::DeviceGuard guard(s.device, op);
             cuda::check(cudaStreamCreate(&s.handle), op, "create a stream");
             return s;
           }),
           py::arg("device") = py::none())
      .def("synchronize", [](const CudaStream& s) {
             py::gil_scoped_release nogil;
             cuda::DeviceGuard guard(s.device, "Stream.synchronize");
             cuda::check(cudaStreamSynchronize(s.handle), "Stream.synchronize", "wait for the stream");
           }, "Wait for all work queued on this stream.")
      .def_property_readonly("handle", [](const CudaStream& s) { return reinterpret_cast<uintptr_t>(s.handle); },
                             "The cudaStream_t as an int (0: the legacy default stream).")
      .def_readonly("device", &CudaStream::device)
      .def("__eq__", [](const CudaStream& a, const CudaStream& b) { return a.handle == b.handle; })
      .def("__hash__", [](const CudaStream& s) { return std::hash<void*>()(s.handle); })
      .def("__repr__", [](const CudaStream& s) {
        return cat("Stream(handle=0x", std::hex, reinterpret_cast<uintptr_t>(s.handle), std::dec,
                   ", device=", s.device, ")");
      });
  m.def("default_stream", [](const py::object& device) {
          CudaStream s;
          s.device = device.is_none() ? 0 : device.cast<int>();
          return s;
        }, py::arg("device") = py::none(), "The legacy default stream (handle 0).");

  py::class_<DeviceArray>(m, "DeviceArray",
                          "A strided float32/float64/int64/bool array in CUDA device memory. Make one "
                          "with empty(), zeros(), from_numpy() or from_dlpack().")
      .def_property_readonly("shape", [](const DeviceArray& x) { return to_tuple(x.shape); })
      .def_property_readonly("strides", [](const DeviceArray& x) { return to_tuple(x.strides); },
                             "Strides in elements (NumPy's are in bytes).")
      .def_property_readonly("dtype", [](const DeviceArray& x) { return numpy_dtype(x.dtype); })
      .def_readonly("device", &DeviceArray::device)
      .def_readonly("offset", &DeviceArray::offset, "Offset of element 0 in the storage, in elements.")
      .def_property_readonly("ndim", &DeviceArray::ndim)
      .def_property_readonly("size", &DeviceArray::numel)
      .def_property_readonly("itemsize", [](const DeviceArray& x) { return cuda::itemsize(x.dtype); })
      .def_property_readonly("nbytes", [](const DeviceArray& x) { return x.numel() * int64_t(cuda::itemsize(x.dtype)); })
      .def_property_readonly("data_ptr", [](const DeviceArray& x) { return reinterpret_cast<uintptr_t>(x.data()); })
      .def_property_readonly("stream", [](const DeviceArray& x) { return CudaStream{x.stream, x.device}; })
      .def_property_readonly("base", [](const py::object& self) -> py::object {
             // Autograd keeps an array as a gradient without copying it only when no other
             // array can see its memory, so any sharing (views, DLPack exports) says "shared".
             const DeviceArray& x = self.cast<const DeviceArray&>();
             return !x.storage || x.storage.use_count() == 1 ? py::none() : self;
           }, "None when no other array shares this one's memory; otherwise the array itself.")
      .def("is_contiguous", &DeviceArray::is_contiguous)
      .def("__len__", [](const DeviceArray& x) {
        if (x.shape.empty()) throw py::type_error("len() of a 0-d DeviceArray");
        return x.shape[0];
      })
      .def("__repr__", &repr)
      .def("__array__", [](const DeviceArray& x, const py::args&, const py::kwargs&) -> py::object {
             type_error("DeviceArray on cuda:", x.device, " cannot be converted to a NumPy array "
                        "implicitly (that would be a hidden device-to-host copy); call .numpy()");
           })
      .def("numpy", &to_numpy, "Copy to a new C-contiguous numpy.ndarray (waits for the copy).")
      .def("contiguous", [](const DeviceArray& x) {
             py::gil_scoped_release nogil;
             return cuda::contiguous(x, "contiguous");
           }, "self when already contiguous, else a contiguous copy.")
      .def("clone", [](const DeviceArray& x) {
             py::gil_scoped_release nogil;
             DeviceArray out = cuda::empty(x.shape, x.dtype, x.device, x.stream, "clone");
             cuda::copy_into(out, x, "clone");
             return out;
           }, "A contiguous copy.")
      .def("copy_", [](const py::object& self_obj, const py::object& src_obj) {
             DeviceArray& self = self_obj.cast<DeviceArray&>();
             const DeviceArray& src = require_device_array(src_obj, "copy_", "src");
             {
               py::gil_scoped_release nogil;
               cuda::copy_into(self, src, "copy_");
             }
             return self_obj;
           }, py::arg("src"), "Copy src (same dtype and device, broadcast to self's shape) into self.")
      .def("as_strided", &as_strided, py::arg("shape"), py::arg("strides"), py::arg("offset") = py::none(),
           "A view with the given shape, strides and offset (in elements) over the same storage.")
      .def("permute", [](const DeviceArray& x, py::args dims) {
             return permute(x, dims.size() == 1 && !py::isinstance<py::int_>(dims[0]) ? py::object(dims[0]) : py::object(dims));
           }, "A view with the dimensions reordered.")
      .def("transpose", [](const DeviceArray& x, int64_t a, int64_t b) {
             py::list dims;
             for (int i = 0; i < x.ndim(); ++i) dims.append(i);
             const int ia = cuda::normalize_axis(a, x.ndim(), "transpose");
             const int ib = cuda::normalize_axis(b, x.ndim(), "transpose");
             dims[ia] = ib;
             dims[ib] = ia;
             return permute(x, dims);
           }, py::arg("dim0"), py::arg("dim1"), "A view with two dimensions swapped.")
      .def_property_readonly("T", [](const DeviceArray& x) {
             py::list dims;
             for (int i = x.ndim() - 1; i >= 0; --i) dims.append(i);
             return permute(x, dims);
           })
      .def("reshape", [](const DeviceArray& x, py::args shape) {
             return reshape(x, shape.size() == 1 && !py::isinstance<py::int_>(shape[0]) ? py::object(shape[0]) : py::object(shape));
           }, "A view with a new shape (contiguous arrays only; one dimension may be -1).")
      .def("__dlpack__", &to_dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none(),
           "DLPack export (unversioned \"dltensor\" capsule) without a copy; the consumer's "
           "stream is ordered after this array's stream.")
      .def("__dlpack_device__", [](const DeviceArray& x) { return py::make_tuple(int(kDLCUDA), x.device); });

  // empty() and zeros(): same arguments, checked before any device work.
  using Factory = DeviceArray (*)(const Shape&, cuda::DType, int, cudaStream_t, const char*);
  const std::pair<const char*, Factory> factories[] = {{"empty", &cuda::empty}, {"zeros", &cuda::zeros}};
  for (const auto& [name, make] : factories) {
    m.def(name, [name = name, make = make](const py::object& shape, const py::object& dtype,
                                           const py::object& device, const py::object& stream) {
          const Shape s = to_shape(shape, name, "shape");
          const cuda::DType dt = parse_dtype(dtype, name);
          const cudaStream_t st = parse_stream(stream, name);
          py::gil_scoped_release nogil;
          return make(s, dt, device_arg(device), st, name);
        }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = py::none(),
        py::arg("stream") = py::none(),
        std::string(name) == "empty" ? "Uninitialised contiguous device array." : "Zero-filled contiguous device array.");
  }
  m.def("from_numpy", &from_numpy, py::arg("array"), py::arg("stream") = py::none(),
        py::arg("device") = py::none(),
        "Copy a float32/float64/int64/bool numpy.ndarray to a new contiguous device array "
        "(waits for the copy, so the host array may change afterwards).");
  m.def("from_dlpack", &from_dlpack, py::arg("obj"),
        "A DeviceArray sharing memory with a CUDA tensor from another library (any object "
        "with __dlpack__/__dlpack_device__, or a \"dltensor\" capsule); no copy.");
  m.def("memory_stats", &memory_stats, py::arg("device") = py::none(),
        "Caching-allocator counters of a device: allocated_bytes, reserved_bytes, cached_blocks, device_allocations.");
  m.def("memory_allocated", [](const py::object& d) { return memory_stats(d)["allocated_bytes"]; },
        py::arg("device") = py::none(), "Bytes held by live device arrays (rounded to size classes).");
  m.def("memory_reserved", [](const py::object& d) { return memory_stats(d)["reserved_bytes"]; },
        py::arg("device") = py::none(), "Bytes obtained from the driver: live arrays plus the cache.");
  m.def("empty_cache", [] {
          cudaError_t err;
          {
            py::gil_scoped_release nogil;
            err = cuda::CachingAllocator::device_allocator().empty_cache();
          }
          cuda::check(err, "empty_cache", "free cached device memory");
        }, "Return cached, unused device memory to the driver.");

  py::class_<HostCachingAllocator>(m, "_HostCachingAllocator",
                                   "Testing aid: the caching allocator's bookkeeping over malloc.")
      .def(py::init<size_t>(), py::arg("limit_bytes"))
      .def("allocate", &HostCachingAllocator::allocate, py::arg("nbytes"), py::arg("stream") = 0)
      .def("release", &HostCachingAllocator::release, py::arg("ptr"))
      .def("empty_cache", &HostCachingAllocator::empty_cache)
      .def("stats", &HostCachingAllocator::stats);
  m.def("_allocation_size", &cuda::allocation_size, py::arg("nbytes"),
        "Testing aid: the size class a request of nbytes is rounded to.");
}

}  // namespace dlkern::bind
