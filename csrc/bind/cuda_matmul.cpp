// dlkern._C_cuda matrix products on device arrays: matmul (numpy.matmul semantics,
// broadcast batch axes) and the device-array form of gemm (BLAS-style, 2-D), float32
// and float64. Views with unit stride along either matrix axis are passed to the
// kernels as (transpose flag, leading dimension); other layouts are copied to a
// contiguous array first. float32 products use TF32 tensor cores when allowed
// (allow_tf32 argument, else the module-wide flag behind dlkern.cuda.matmul_allow_tf32)
// and the device is sm_80 or newer. Arguments are checked before any device work.
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "bind/cuda_common.h"
#include "cuda/check.h"
#include "cuda/gemm.h"
#include "cuda/matmul_plan.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

std::atomic<bool> g_allow_tf32{false};  // PyTorch's default: full float32 products

const DeviceArray& float_operand(const py::handle& obj, const char* op, const char* arg) {
  const DeviceArray& a = require_device_array(obj, op, arg);
  if (!cuda::is_float(a.dtype))
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(a.dtype), "; CUDA ", op, " supports float32 and float64");
  return a;
}

bool resolve_tf32(const py::object& allow) {
  return allow.is_none() ? g_allow_tf32.load() : allow.cast<bool>();
}

// One operand as the kernels address it.
struct Operand {
  const void* data = nullptr;
  bool trans = false;
  int64_t ld = 0;
};

// The product C[item] = alpha * op(A[item]) op(B[item]) + beta * C[item] over the batch
// axes (outermost first); the innermost is one strided-batched launch, the others an
// odometer on the host.
struct Product {
  int64_t m, n, k;
  double alpha, beta;
  Operand a, b;
  void* c;
  int64_t ldc;
  std::vector<cuda::BatchAxis> batch;
};

template <typename T>
cudaError_t launch_one(const Product& p, bool tf32, const T* a, const T* b, T* c, const cuda::BatchAxis& inner,
                       cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (tf32)
      return cuda::gemm_tf32_strided_batched(p.a.trans, p.b.trans, p.m, p.n, p.k, static_cast<float>(p.alpha), a,
                                             p.a.ld, inner.sa, b, p.b.ld, inner.sb, static_cast<float>(p.beta), c,
                                             p.ldc, inner.sc, inner.size, stream);
  }
  return cuda::gemm_strided_batched<T>(p.a.trans, p.b.trans, p.m, p.n, p.k, static_cast<T>(p.alpha), a, p.a.ld,
                                       inner.sa, b, p.b.ld, inner.sb, static_cast<T>(p.beta), c, p.ldc, inner.sc,
                                       inner.size, stream);
}

template <typename T>
void run_product(const Product& p, bool tf32, cudaStream_t stream, const char* op) {
  const T* a0 = static_cast<const T*>(p.a.data);
  const T* b0 = static_cast<const T*>(p.b.data);
  T* c0 = static_cast<T*>(p.c);
  if (p.batch.empty()) {
    cuda::check(launch_one<T>(p, tf32, a0, b0, c0, {1, 0, 0, 0}, stream), op, "launch the gemm kernel");
    return;
  }
  const cuda::BatchAxis& inner = p.batch.back();
  const size_t outer_n = p.batch.size() - 1;
  std::vector<int64_t> idx(outer_n, 0);
  for (;;) {
    const T* a = a0;
    const T* b = b0;
    T* c = c0;
    for (size_t d = 0; d < outer_n; ++d) {
      a += idx[d] * p.batch[d].sa;
      b += idx[d] * p.batch[d].sb;
      c += idx[d] * p.batch[d].sc;
    }
    cuda::check(launch_one<T>(p, tf32, a, b, c, inner, stream), op, "launch the gemm kernel");
    size_t d = outer_n;
    while (d > 0 && ++idx[d - 1] == p.batch[d - 1].size) idx[--d] = 0;
    if (d == 0) break;
  }
}

void dispatch_product(DType dt, const Product& p, bool tf32, cudaStream_t stream, const char* op) {
  if (p.m == 0 || p.n == 0) return;
  for (const cuda::BatchAxis& ax : p.batch)
    if (ax.size == 0) return;
  dispatch_cuda_float(dt, [&](auto zero) {
    using T = decltype(zero);
    run_product<T>(p, tf32, stream, op);
  });
}

// Whether TF32 is used for this call: float32, allowed, and the device has it.
bool use_tf32(DType dt, bool allowed, int device) {
  return dt == DType::f32 && allowed && cuda::tf32_supported(device);
}

py::object matmul(const py::object& a_obj, const py::object& b_obj, const py::object& out_obj,
                  const py::object& allow_obj) {
  const char* op = "matmul";
  const DeviceArray& a = float_operand(a_obj, op, "a");
  const DeviceArray& b = float_operand(b_obj, op, "b");
  require_like(a, "a", b, "b", op, nullptr, "; both must be the same float type");
  cuda::MatmulPlan plan;
  try {
    plan = cuda::plan_matmul(a.shape, a.strides, b.shape, b.strides);
  } catch (const std::invalid_argument& e) {
    value_error(op, ": ", e.what());
  }
  DeviceArray* out = nullptr;
  if (!out_obj.is_none()) {
    out = &require_device_array(out_obj, op, "out");
    require_match(*out, "out", a.dtype, plan.out_shape, a.device, {"the inputs have", nullptr, "a is"}, op);
  }
  const bool allowed = resolve_tf32(allow_obj);
  DeviceArray result;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(a.device, op);
    const DeviceArray ac = plan.a.addressable ? a : cuda::contiguous(a, op);
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray bc = plan.b.addressable ? b : contiguous_on(b, ac.stream, op);
    // Written into a fresh contiguous array, copied into `out` afterwards: out may alias
    // an input or have any strides.
    result = cuda::empty(plan.out_shape, a.dtype, a.device, ac.stream, op);
    cuda::stream_wait(result.stream, bc.stream, op);
    Product p{plan.m, plan.n, plan.k, 1.0, 0.0, {}, {}, result.data(), plan.n, plan.batch};
    p.a = {ac.data(), plan.a.addressable ? plan.a.trans : false, plan.a.addressable ? plan.a.ld : plan.k};
    p.b = {bc.data(), plan.b.addressable ? plan.b.trans : false, plan.b.addressable ? plan.b.ld : plan.n};
    dispatch_product(a.dtype, p, use_tf32(a.dtype, allowed, a.device), result.stream, op);
    if (out) {
      cuda::copy_into(*out, result, op);
    }
  }
  return out ? out_obj : py::cast(std::move(result));
}

// op(X) of a 2-D array as the kernels address it; `copy` receives a contiguous copy
// when X's layout cannot be addressed (it must outlive the launch).
Operand gemm_operand(const DeviceArray& x, bool trans, DeviceArray& copy, cudaStream_t consumer, const char* op) {
  auto layout_of = [&](const DeviceArray& v) {
    const int64_t rows = v.shape[trans ? 1 : 0], cols = v.shape[trans ? 0 : 1];
    const int64_t rs = v.strides[trans ? 1 : 0], cs = v.strides[trans ? 0 : 1];
    return cuda::matrix_layout(rows, cols, rs, cs);
  };
  cuda::MatrixLayout l = layout_of(x);
  if (l.addressable) return {x.data(), l.trans, l.ld};
  copy = contiguous_on(x, consumer, op);  // made on the GEMM's stream (see cuda_common.h)
  l = layout_of(copy);
  return {copy.data(), l.trans, l.ld};
}

}  // namespace

py::object gemm_device_arrays(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
                              double alpha, double beta, bool trans_a, bool trans_b, const py::object& allow_obj) {
  const char* op = "gemm";
  const DeviceArray& a = float_operand(a_obj, op, "a");
  const DeviceArray& b = float_operand(b_obj, op, "b");
  if (a.ndim() != 2) value_error(op, ": a must be 2-D, got shape ", cuda::shape_str(a.shape));
  if (b.ndim() != 2) value_error(op, ": b must be 2-D, got shape ", cuda::shape_str(b.shape));
  require_like(a, "a", b, "b", op, nullptr, "; both must be the same float type");
  const int64_t m = a.shape[trans_a ? 1 : 0], k = a.shape[trans_a ? 0 : 1];
  const int64_t kb = b.shape[trans_b ? 1 : 0], n = b.shape[trans_b ? 0 : 1];
  if (k != kb)
    value_error(op, ": inner dimensions differ: op(a) is (", m, ", ", k, ") from a of shape ",
                cuda::shape_str(a.shape), (trans_a ? " transposed" : ""), ", op(b) is (", kb, ", ", n,
                ") from b of shape ", cuda::shape_str(b.shape), (trans_b ? " transposed" : ""));
  DeviceArray* c = nullptr;
  if (c_obj.is_none()) {
    if (beta != 0.0) value_error(op, ": beta=", beta, " needs an input c, but c is None");
  } else {
    c = &require_device_array(c_obj, op, "c");
    require_match(*c, "c", a.dtype, Shape{m, n}, a.device, {"a and b have", nullptr, "a is"}, op);
    if (n > 1 && c->strides[1] != 1)
      value_error(op, ": c must have unit stride along its last axis (got ", c->strides[1], " elements)");
    if (m > 1 && c->strides[0] < std::max<int64_t>(n, 1))
      value_error(op, ": the rows of c overlap or run backwards (row stride ", c->strides[0], " for ", n, " columns)");
    if ((a.storage && c->storage == a.storage) || (b.storage && c->storage == b.storage))
      value_error(op, ": c shares memory with an input; pass a separate output array");
  }
  const bool allowed = resolve_tf32(allow_obj);
  DeviceArray fresh;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(a.device, op);
    DeviceArray a_copy, b_copy;
    cudaStream_t s = c ? c->stream : a.stream;
    const Operand A = gemm_operand(a, trans_a, a_copy, s, op);
    const Operand B = gemm_operand(b, trans_b, b_copy, s, op);
    if (!c) fresh = cuda::empty({m, n}, a.dtype, a.device, s, op);
    DeviceArray& target = c ? *c : fresh;
    cuda::stream_wait(s, a.stream, op);
    cuda::stream_wait(s, b.stream, op);
    const int64_t ldc = m > 1 ? target.strides[0] : std::max<int64_t>(n, 1);
    Product p{m, n, k, alpha, beta, A, B, target.data(), ldc, {}};
    dispatch_product(a.dtype, p, use_tf32(a.dtype, allowed, a.device), s, op);
  }
  return c ? c_obj : py::cast(std::move(fresh));
}

DLKERN_REGISTER_BINDINGS(cuda_matmul) {
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        py::arg("allow_tf32") = py::none(),
        "matmul(a, b, out=None, allow_tf32=None): numpy.matmul of DeviceArrays (1-D promotion, broadcast "
        "batch axes), float32/float64. allow_tf32=None follows set_matmul_allow_tf32 (default False).");
  m.def("set_matmul_allow_tf32", [](bool on) { g_allow_tf32.store(on); }, py::arg("allow"),
        "Let float32 matmul/gemm use TF32 tensor cores (sm_80+) when allow_tf32 is not given.");
  m.def("get_matmul_allow_tf32", []() { return g_allow_tf32.load(); });
  m.def("_tf32_supported", [](int device) { return cuda::tf32_supported(device); }, py::arg("device") = 0,
        "Testing aid: whether the device has TF32 tensor cores (False without a GPU).");
  m.def("_matmul_plan", [](const py::object& as, const py::object& ast, const py::object& bs, const py::object& bst) {
    cuda::MatmulPlan p;
    try {
      p = cuda::plan_matmul(to_shape(as, "_matmul_plan", "a_shape"), to_shape(ast, "_matmul_plan", "a_strides"),
                            to_shape(bs, "_matmul_plan", "b_shape"), to_shape(bst, "_matmul_plan", "b_strides"));
    } catch (const std::invalid_argument& e) {
      value_error("matmul: ", e.what());
    }
    auto layout = [](const cuda::MatrixLayout& l) {
      return l.addressable ? py::object(py::make_tuple(l.trans, l.ld)) : py::object(py::str("copy"));
    };
    py::list batch;
    for (const cuda::BatchAxis& ax : p.batch) batch.append(py::make_tuple(ax.size, ax.sa, ax.sb, ax.sc));
    py::dict d;
    d["out_shape"] = to_tuple(p.out_shape);
    d["mnk"] = py::make_tuple(p.m, p.n, p.k);
    d["a"] = layout(p.a);
    d["b"] = layout(p.b);
    d["batch"] = batch;
    return d;
  }, py::arg("a_shape"), py::arg("a_strides"), py::arg("b_shape"), py::arg("b_strides"),
  "Testing aid: how matmul addresses its operands ((trans, ld) or 'copy') and its merged batch axes "
  "(size, stride_a, stride_b, stride_c), all in elements.");
}

}  // namespace dlkern::bind
