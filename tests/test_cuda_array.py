"""dlkern._C_cuda device arrays, elementwise ops and reductions, dlkern.cuda and the
'cuda' device namespace.

Host-side logic (broadcasting, loop coalescing, view bounds, the caching allocator's
bookkeeping, argument errors raised before any device work, the no-GPU failure path)
runs on every machine with the CUDA module built. Everything that needs a GPU is marked
requires_gpu and compares against NumPy references written here.
"""
import zlib

import numpy as np
import pytest

import dlkern
from dlkern.device import CUDADevice

from cuda_support import argument_error_test, C, HAS_GPU, no_gpu_only, requires_gpu, requires_module  # noqa: E402

DTYPES = [np.float32, np.float64]


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------
# Host-side logic: runs without a GPU
# ---------------------------------------------------------------------------

BROADCAST_CASES = [
    ((), ()), ((3,), ()), ((), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 5)), ((4, 1, 3), (2, 1)),
    ((1,), (7,)), ((0, 3), (1, 3)), ((0,), (1,)), ((2, 1, 1, 4), (3, 1, 4)), ((5, 1), (5, 0)),
]


@requires_module
@pytest.mark.parametrize("a, b", BROADCAST_CASES, ids=str)
def test_broadcast_shapes_matches_numpy(a, b):
    assert C._broadcast_shapes(a, b) == np.broadcast_shapes(a, b)
    assert C._broadcast_shapes(b, a) == np.broadcast_shapes(b, a)


@requires_module
@pytest.mark.parametrize("a, b", [((2, 3), (4,)), ((2, 1), (3, 4)), ((0,), (2,))], ids=str)
def test_broadcast_shapes_error_names_both(a, b):
    with pytest.raises(ValueError, match=r"cannot be broadcast together") as info:
        C._broadcast_shapes(a, b)
    assert str(a).replace(" ", "") in str(info.value).replace(" ", "")


@requires_module
@pytest.mark.parametrize("shape, strides, sizes, out_strides", [
    # contiguous operands collapse to one flat dimension
    ((2, 3, 4), [(12, 4, 1), (12, 4, 1)], (24,), [(1,), (1,)]),
    # a broadcast operand keeps the dimensions it does not step through
    ((2, 3, 4), [(12, 4, 1), (0, 1, 0)], (2, 3, 4), [(12, 4, 1), (0, 1, 0)]),
    # size-1 dimensions drop out whatever their stride
    ((1, 5, 1), [(5, 1, 1), (99, 2, 7)], (5,), [(1,), (2,)]),
    # a transposed operand stops the merge
    ((3, 4), [(4, 1), (1, 3)], (3, 4), [(4, 1), (1, 3)]),
    # the inner two of three merge when both are contiguous there
    ((2, 3, 4), [(12, 4, 1), (24, 4, 1)], (2, 12), [(12, 1), (24, 1)]),
    # a scalar: one element
    ((), [(), ()], (1,), [(0,), (0,)]),
], ids=lambda v: str(v))
def test_make_loop_coalesces(shape, strides, sizes, out_strides):
    got_sizes, got_strides = C._make_loop(shape, list(strides))
    assert got_sizes == sizes and got_strides == out_strides


@requires_module
def test_make_loop_rejects_too_many_dimensions():
    shape = (2,) * 9
    strides = tuple(3 ** (8 - i) for i in range(9))  # stride 3 x the inner extent 2: never merged
    with pytest.raises(ValueError, match=r"at most 8 are supported \(call \.contiguous\(\) first\)"):
        C._make_loop(shape, [strides])


@requires_module
@pytest.mark.parametrize("shape, strides, axis, keepdims, want", [
    # everything, contiguous: one flat reduce loop, one output
    ((2, 3, 4), (12, 4, 1), None, False, ((), ((1,), [(0,), (0,)]), ((24,), [(1,)]))),
    ((2, 3, 4), (12, 4, 1), None, True, ((1, 1, 1), ((1,), [(0,), (0,)]), ((24,), [(1,)]))),
    # the middle axis: outputs walk (2, 4), each reduces 3 elements 4 apart
    ((2, 3, 4), (12, 4, 1), 1, False, ((2, 4), ((2, 4), [(4, 1), (12, 1)]), ((3,), [(4,)]))),
    ((2, 3, 4), (12, 4, 1), -2, True, ((2, 1, 4), ((2, 4), [(4, 1), (12, 1)]), ((3,), [(4,)]))),
    # the last axis of a transposed (column-major) array
    ((3, 5), (1, 3), 1, False, ((3,), ((3,), [(1,), (1,)]), ((5,), [(3,)]))),
    # an empty reduced axis: no reduce elements, outputs still there
    ((0, 4), (4, 1), 0, False, ((4,), ((4,), [(1,), (1,)]), ((0,), [(4,)]))),
], ids=lambda v: str(v))
def test_reduce_layout(shape, strides, axis, keepdims, want):
    assert C._reduce_layout(shape, strides, axis, keepdims)[:3] == want


@requires_module
@pytest.mark.parametrize("shape, strides, axis, plan", [
    # rows (contiguous elements): a block per output
    ((4096, 1000), (1000, 1), 1, dict(threads_per_output=False, splits=1, chunk=1000, scratch=0)),
    # a leading axis with many adjacent outputs: a thread per output
    ((8192, 1024), (1024, 1), 0, dict(threads_per_output=True, splits=1, chunk=8192, scratch=0)),
    # ... but not with too few outputs to fill the device
    ((8192, 64), (64, 1), 0, dict(threads_per_output=False, splits=1, chunk=8192, scratch=0)),
    # everything of a large array: split into parts of about 16K elements, combined after
    ((1 << 20,), (1,), None, dict(threads_per_output=False, splits=64, chunk=16384, scratch=64)),
    ((3, 100_001), (100_001, 1), 1, dict(threads_per_output=False, splits=7, chunk=14286, scratch=21)),
    # at most 1024 parts
    ((1 << 26,), (1,), None, dict(threads_per_output=False, splits=1024, chunk=65536, scratch=1024)),
    # not worth splitting
    ((32767,), (1,), None, dict(threads_per_output=False, splits=1, chunk=32767, scratch=0)),
    ((0, 5), (5, 1), 0, dict(threads_per_output=False, splits=1, chunk=0, scratch=0)),
], ids=lambda v: str(v))
def test_reduce_plan(shape, strides, axis, plan):
    assert C._reduce_layout(shape, strides, axis, False)[3] == plan


@requires_module
@pytest.mark.parametrize("shape, strides, offset, n", [
    ((2, 3), (3, 1), 0, 6), ((3,), (-1,), 2, 3), ((0, 5), (100, 100), 0, 0), ((4,), (0,), 5, 6),
])
def test_check_view_accepts(shape, strides, offset, n):
    C._check_view(shape, strides, offset, n)


@requires_module
@pytest.mark.parametrize("shape, strides, offset, n, exc, pattern", [
    ((2, 3), (3, 1), 1, 6, IndexError, r"reach elements \[1, 6\] outside the storage of 6"),
    ((3,), (-1,), 1, 3, IndexError, r"reach elements \[-1, 1\]"),
    ((2,), (1, 1), 0, 6, ValueError, r"differ in length"),
    ((-1,), (1,), 0, 6, ValueError, r"negative size"),
    ((1,), (1,), -1, 6, IndexError, r"negative offset"),
])
def test_check_view_rejects(shape, strides, offset, n, exc, pattern):
    with pytest.raises(exc, match=pattern):
        C._check_view(shape, strides, offset, n)


@requires_module
@pytest.mark.parametrize("nbytes, size", [
    (0, 0), (1, 512), (512, 512), (513, 1024), ((1 << 20) - 1, 1 << 20), (1 << 20, 2 << 20),
    ((2 << 20) + 1, 4 << 20),
])
def test_allocation_size_classes(nbytes, size):
    assert C._allocation_size(nbytes) == size


@requires_module
def test_caching_allocator_reuses_blocks_per_size_class_and_stream():
    alloc = C._HostCachingAllocator(1 << 30)
    p = alloc.allocate(100)
    assert alloc.stats() == dict(allocated_bytes=512, reserved_bytes=512, cached_blocks=0,
                                 device_allocations=1, held_bytes=512)
    alloc.release(p)
    assert alloc.stats()["allocated_bytes"] == 0 and alloc.stats()["cached_blocks"] == 1
    assert alloc.allocate(300) == p                # same size class: the cached block
    q = alloc.allocate(300, stream=7)              # another stream never takes it...
    alloc.release(p)
    r = alloc.allocate(300, stream=7)              # ...nor this one
    assert q != p and r not in (p, q)
    assert alloc.stats()["device_allocations"] == 3
    assert alloc.allocate(0) == 0
    for ptr in (q, r):
        alloc.release(ptr)
    alloc.release(12345)                           # unknown pointers are ignored
    stats = alloc.stats()
    assert stats["allocated_bytes"] == 0 and stats["cached_blocks"] == 3 and stats["reserved_bytes"] == 1536
    alloc.empty_cache()
    assert alloc.stats() == dict(allocated_bytes=0, reserved_bytes=0, cached_blocks=0,
                                 device_allocations=3, held_bytes=0)


@requires_module
def test_caching_allocator_frees_cache_and_retries_when_out_of_memory():
    alloc = C._HostCachingAllocator(4 << 20)
    a = alloc.allocate(3 << 20)                    # 4 MiB class: all of the budget
    alloc.release(a)
    b = alloc.allocate(1000)                       # cache full: freed, then retried
    assert alloc.stats()["cached_blocks"] == 0 and alloc.stats()["held_bytes"] == 1024
    with pytest.raises(MemoryError, match=r"host_allocator: CUDA failed to allocate 8388608 bytes on device 0 "
                                          r"\(1024 bytes allocated, 1024 reserved\): cudaErrorMemoryAllocation"):
        alloc.allocate(8 << 20)
    alloc.release(b)
    assert alloc.allocate(1000) == b               # still consistent after the failure


test_argument_errors_before_device_work = argument_error_test([
    (lambda: C.empty((2, -1)), ValueError, r"^empty: negative size in shape \(2, -1\)"),
    (lambda: C.empty((2,), "int32"), TypeError, r"^empty: dtype int32 is not supported on CUDA"),
    (lambda: C.zeros((2,), np.float16), TypeError, r"^zeros: dtype float16"),
    (lambda: C.empty("ab"), TypeError, r"^empty: shape must be an int or a sequence of ints, got str"),
    (lambda: C.empty((2.0,)), TypeError, r"^empty: shape must contain only ints, got float"),
    (lambda: C.empty((2,), stream=0), TypeError, r"^empty: stream must be a dlkern._C_cuda.Stream or None, got int"),
    (lambda: C.from_numpy([1.0]), TypeError, r"^from_numpy: array must be a numpy.ndarray, got list"),
    (lambda: C.from_numpy(np.ones(2, np.int32)), TypeError, r"^from_numpy: dtype int32"),
    (lambda: C.from_numpy(np.ones(2, ">f8")), TypeError, r"^from_numpy: dtype >f8"),
    (lambda: C.exp(np.ones(3)), TypeError, r"^exp: x is a numpy.ndarray \(host memory\).*from_numpy"),
    (lambda: C.add(np.ones(3), 1.0), TypeError, r"^add: a is a numpy.ndarray"),
    (lambda: C.add(1.0, 2), TypeError, r"^add: at least one operand must be a dlkern._C_cuda.DeviceArray"),
    (lambda: C.sum([1.0]), TypeError, r"^sum: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.from_dlpack(3), TypeError, r"^from_dlpack: expected an object with __dlpack__"),
    (lambda: C.from_dlpack(np.ones(2)), TypeError, r"^from_dlpack: the object lives on DLPack device type 1 \(CPU\)"),
], ids=lambda v: v if isinstance(v, str) else None)


@no_gpu_only
@pytest.mark.parametrize("call, op", [
    (lambda: C.empty((2, 3)), "empty"),
    (lambda: C.zeros(4, np.float64), "zeros"),
    (lambda: C.from_numpy(np.ones((2, 2), np.float32)), "from_numpy"),
    (lambda: C.Stream(), "Stream"),
])
def test_device_work_without_gpu_raises_runtime_error_naming_op(call, op):
    with pytest.raises(RuntimeError, match=rf"^{op}: CUDA failed to find a usable device: cudaError"):
        call()
    assert C.is_available() is False  # still answering after the failure


@requires_module
def test_allocator_counters_and_empty_cache_answer_without_a_gpu():
    stats = C.memory_stats()
    assert set(stats) == {"allocated_bytes", "reserved_bytes", "cached_blocks", "device_allocations"}
    assert C.memory_allocated() == stats["allocated_bytes"] >= 0
    assert C.memory_reserved() >= C.memory_allocated()
    C.empty_cache()
    assert C.default_stream().handle == 0


def test_dlkern_cuda_answers_on_any_build():
    assert dlkern.cuda.is_available() is HAS_GPU
    assert dlkern.cuda.device_count() == (C.device_count() if C else 0)
    assert dlkern.cuda.memory_allocated() >= 0 and dlkern.cuda.memory_reserved() >= 0
    dlkern.cuda.empty_cache()
    if not HAS_GPU:
        with pytest.raises(RuntimeError, match=r"^dlkern.cuda.synchronize: (dlkern was built without CUDA|"
                                               r"dlkern._C_cuda is built but no CUDA device)"):
            dlkern.cuda.synchronize()


@pytest.mark.skipif(HAS_GPU, reason="checks the error of a machine without a usable GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_device_cuda_without_gpu_says_why(spec):
    with pytest.raises(RuntimeError, match=rf"device '{spec}' requested but (dlkern was built without CUDA|"
                                           r"dlkern._C_cuda is built but no CUDA device is available)"):
        dlkern.device(spec)


def test_device_cuda_bad_index():
    with pytest.raises(ValueError, match=r"bad CUDA device 'cuda:x'"):
        dlkern.device("cuda:x")


@requires_module
def test_cuda_namespace_names_missing_op_and_device():
    dev = CUDADevice(0)
    assert str(dev) == "cuda:0" and dev == "cuda" and dev == "cuda:0" and dev != "cpu"
    assert dev == CUDADevice(0) and dev != CUDADevice(1) and hash(dev) == hash(CUDADevice(0))
    with pytest.raises(NotImplementedError, match=r"op 'conv2d_forward' is not implemented on device 'cuda'"):
        dev.conv2d_forward
    with pytest.raises(NotImplementedError, match=r"op 'batch_norm_forward' is not implemented on device 'cuda'"):
        dev.batch_norm_forward


@requires_module
def test_cuda_namespace_refuses_host_arrays():
    dev = CUDADevice(0)
    with pytest.raises(TypeError, match=r"add on cuda:0: got a numpy.ndarray \(cpu\); devices cannot be mixed"):
        dev.add(np.ones(2), np.ones(2))


# ---------------------------------------------------------------------------
# On a device
# ---------------------------------------------------------------------------

def strided_input(shape, dtype, kind, seed=0, low=-2.0, high=2.0):
    """(host array, device array) with the same values: contiguous, transposed (a
    permuted view) or sliced (every other element of a larger array)."""
    rng = rng_for("input", shape, kind, seed)
    if kind == "contiguous":
        host = np.asarray(rng.uniform(low, high, size=shape), dtype=dtype)
        return host, C.from_numpy(host)
    if kind == "transposed":
        base = rng.uniform(low, high, size=shape[::-1]).astype(dtype)
        dims = tuple(range(len(shape)))[::-1]
        return base.transpose(dims), C.from_numpy(base).permute(dims)
    big = rng.uniform(low, high, size=tuple(2 * d for d in shape)).astype(dtype)
    sl = tuple(slice(None, None, 2) for _ in shape)
    dev = C.from_numpy(big)
    view = dev.as_strided(shape, tuple(2 * s for s in dev.strides), 0)
    return big[sl], view


KINDS = ["contiguous", "transposed", "sliced"]


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 5), (2, 0, 4), (4, 3, 2, 5)], ids=str)
def test_numpy_round_trip(shape, dtype):
    host = (rng_for("rt", shape).standard_normal(shape) * 100).astype(dtype)
    dev = C.from_numpy(host)
    assert dev.shape == shape and dev.dtype == np.dtype(dtype) and dev.is_contiguous()
    assert dev.strides == tuple(s // host.itemsize for s in host.strides) or host.size == 0
    assert dev.nbytes == host.nbytes and dev.size == host.size and dev.ndim == len(shape)
    back = dev.numpy()
    assert back.dtype == host.dtype and back.shape == shape
    np.testing.assert_array_equal(back, host)


@requires_gpu
def test_from_numpy_non_contiguous_and_zeros():
    host = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(C.from_numpy(host).numpy(), host)
    np.testing.assert_array_equal(C.zeros((3, 2), np.float32).numpy(), np.zeros((3, 2), np.float32))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_views_contiguous_copy_(dtype):
    host = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    dev = C.from_numpy(host)
    t = dev.transpose(0, 2)
    assert t.shape == (4, 3, 2) and t.strides == (1, 4, 12) and not t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), host.transpose(2, 1, 0))
    c = t.contiguous()
    assert c.is_contiguous() and c.data_ptr != dev.data_ptr
    np.testing.assert_array_equal(c.numpy(), host.transpose(2, 1, 0))
    assert dev.contiguous().data_ptr == dev.data_ptr
    np.testing.assert_array_equal(dev.reshape(6, -1).numpy(), host.reshape(6, 4))
    np.testing.assert_array_equal(dev.T.numpy(), host.T)
    with pytest.raises(ValueError, match=r"reshape: .* is not contiguous"):
        t.reshape(24)
    with pytest.raises(IndexError, match=r"as_strided: .*outside the storage of 24 elements"):
        dev.as_strided((5, 5), (5, 1))
    # copy_ broadcasts the source into a strided destination
    dst = C.zeros((3, 4), dtype)
    dst.copy_(C.from_numpy(np.arange(4, dtype=dtype)))
    np.testing.assert_array_equal(dst.numpy(), np.broadcast_to(np.arange(4, dtype=dtype), (3, 4)))
    assert dst.copy_(dst) is dst
    dst.T.copy_(C.from_numpy(np.ones((4, 3), dtype) * 5))
    np.testing.assert_array_equal(dst.numpy(), np.full((3, 4), 5, dtype))
    dst.copy_(dst.T.T)  # overlapping source: goes through a temporary
    np.testing.assert_array_equal(dst.numpy(), np.full((3, 4), 5, dtype))
    with pytest.raises(ValueError, match=r"copy_: source of shape \(2,\) cannot be broadcast to \(3, 4\)"):
        dst.copy_(C.zeros(2, dtype))
    with pytest.raises(ValueError, match=r"copy_: dtype"):
        dst.copy_(C.zeros((3, 4), np.float64 if dtype == np.float32 else np.float32))


UNARY = {
    "negative": np.negative, "neg": np.negative, "exp": np.exp, "sqrt": lambda x: np.sqrt(np.abs(x)),
    "log": lambda x: np.log(np.abs(x) + 0.1), "abs": np.abs, "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0),
}
# sqrt and log get inputs where they are defined
UNARY_INPUT = {"sqrt": np.abs, "log": lambda x: np.abs(x) + 0.1}


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_numpy(name, kind, dtype):
    host, dev = strided_input((5, 7, 3), dtype, kind, seed=1)
    prep = UNARY_INPUT.get(name)
    if prep is not None:
        host = prep(host).astype(dtype)
        dev = C.from_numpy(np.ascontiguousarray(host))
    got = getattr(C, name)(dev)
    assert got.shape == host.shape and got.dtype == np.dtype(dtype) and got.is_contiguous()
    want = {"sqrt": np.sqrt, "log": np.log}.get(name, UNARY[name])(host.astype(np.float64))
    np.testing.assert_allclose(got.numpy(), want, **tol(dtype))


BINARY = {
    "add": np.add, "subtract": np.subtract, "sub": np.subtract, "multiply": np.multiply,
    "mul": np.multiply, "divide": np.divide, "div": np.divide, "maximum": np.maximum,
    "minimum": np.minimum, "power": np.power, "pow": np.power,
}


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shapes", [((4, 5), (4, 5)), ((4, 1), (1, 5)), ((3, 4, 5), (5,)), ((1,), (6, 1)),
                                    ((), (3,)), ((0, 5), (1, 5))], ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcasts_like_numpy(name, shapes, dtype):
    sa, sb = shapes
    ha, da = strided_input(sa, dtype, "transposed" if len(sa) > 1 else "contiguous", seed=2, low=0.5)
    hb, db = strided_input(sb, dtype, "sliced" if sb else "contiguous", seed=3, low=0.5)
    got = getattr(C, name)(da, db)
    want = BINARY[name](ha.astype(np.float64), hb.astype(np.float64))
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got.numpy(), want, **tol(dtype))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_scalars(name, dtype):
    host, dev = strided_input((3, 4), dtype, "transposed", seed=4, low=0.5)
    for scalar in (2, 0.75):
        left = getattr(C, name)(scalar, dev)
        right = getattr(C, name)(dev, scalar)
        assert left.dtype == np.dtype(dtype)
        np.testing.assert_allclose(left.numpy(), BINARY[name](dtype(scalar), host), **tol(dtype))
        np.testing.assert_allclose(right.numpy(), BINARY[name](host, dtype(scalar)), **tol(dtype))


@requires_gpu
def test_binary_errors_and_nan():
    a = C.from_numpy(np.array([1.0, np.nan, 3.0]))
    b = C.from_numpy(np.array([np.nan, 2.0, 1.0]))
    np.testing.assert_array_equal(C.maximum(a, b).numpy(), np.maximum(a.numpy(), b.numpy()))
    np.testing.assert_array_equal(C.minimum(a, b).numpy(), np.minimum(a.numpy(), b.numpy()))
    with pytest.raises(ValueError, match=r"add: shapes \(3,\) and \(2,\) cannot be broadcast together"):
        C.add(a, C.zeros(2, np.float64))
    with pytest.raises(TypeError, match=r"add: a has dtype float64 but b has dtype float32"):
        C.add(a, C.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"exp: x has dtype int64"):
        C.exp(C.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"cannot be converted to a NumPy array implicitly.*call \.numpy\(\)"):
        np.asarray(a)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin"])
def test_reductions_match_numpy(name, keepdims, axis, kind, dtype):
    host, dev = strided_input((6, 33, 5), dtype, kind, seed=5)
    got = getattr(C, name)(dev, axis=axis, keepdims=keepdims)
    want = getattr(np, name)(host.astype(np.float64), axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(want) and got.dtype == np.dtype(dtype)
    scale = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.numpy(), want, rtol=scale, atol=scale * 200)


@requires_gpu
def test_reduction_edges():
    big = rng_for("big").standard_normal(300_001)
    np.testing.assert_allclose(C.sum(C.from_numpy(big)).numpy(), big.sum(), rtol=1e-10)  # split in parts
    np.testing.assert_allclose(C.mean(C.from_numpy(big)).numpy(), big.mean(), rtol=1e-10)
    np.testing.assert_array_equal(C.amax(C.from_numpy(big)).numpy(), big.max())
    rows = big[:300_000].reshape(3, 100_000)
    np.testing.assert_allclose(C.mean(C.from_numpy(rows).T, axis=0, keepdims=True).numpy(),
                               rows.mean(axis=1)[None], rtol=1e-10)
    cols = rng_for("cols").standard_normal((300, 2048))  # a thread per output
    for name in ("sum", "mean", "amax", "amin"):
        np.testing.assert_allclose(getattr(C, name)(C.from_numpy(cols), axis=0).numpy(),
                                   getattr(np, name)(cols, axis=0), rtol=1e-12)
    empty = C.zeros((0, 4), np.float64)
    np.testing.assert_array_equal(C.sum(empty, axis=0).numpy(), np.zeros(4))
    assert np.isnan(C.mean(empty, axis=0).numpy()).all()
    with pytest.raises(ValueError, match=r"amax: zero-size reduction has no identity"):
        C.amax(empty, axis=0)
    with pytest.raises(IndexError, match=r"sum: axis 2 is out of range for an array of 2 dimensions"):
        C.sum(empty, axis=2)
    with pytest.raises(TypeError, match=r"sum: axis must be an int or None"):
        C.sum(empty, axis=(0, 1))
    nan = C.from_numpy(np.array([[1.0, np.nan], [2.0, 3.0]]))
    np.testing.assert_array_equal(C.amax(nan, axis=1).numpy(), [np.nan, 3.0])


@requires_gpu
def test_allocator_on_device_and_out_of_memory():
    C.empty_cache()
    before = C.memory_allocated()
    x = C.empty((1000,), np.float32)
    assert C.memory_allocated() == before + 4096
    ptr = x.data_ptr
    del x
    assert C.memory_allocated() == before and C.memory_reserved() >= 4096
    assert C.empty((1000,), np.float32).data_ptr == ptr  # the cached block again
    with pytest.raises(MemoryError, match=r"^empty: CUDA failed to allocate .*cudaErrorMemoryAllocation"):
        C.empty((1 << 50,), np.float32)
    np.testing.assert_array_equal(C.from_numpy(np.ones(3)).numpy(), np.ones(3))  # usable afterwards
    C.empty_cache()
    assert C.memory_reserved() == C.memory_allocated()


@requires_gpu
def test_streams():
    s = C.Stream()
    assert s.handle != 0 and s != C.default_stream()
    host = np.arange(10.0)
    x = C.from_numpy(host, stream=s)
    assert x.stream == s
    y = C.add(x, C.from_numpy(host))  # runs on x's stream, after the default stream's copy
    s.synchronize()
    np.testing.assert_array_equal(y.numpy(), 2 * host)
    C.synchronize()
    dlkern.cuda.synchronize()


@requires_gpu
def test_dlpack_self_round_trip_shares_memory():
    x = C.from_numpy(np.arange(12.0).reshape(3, 4)).T
    assert x.__dlpack_device__() == (2, x.device)
    y = C.from_dlpack(x.__dlpack__())
    assert y.data_ptr == x.data_ptr and y.shape == x.shape and y.strides == x.strides
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    cap = x.__dlpack__()
    C.from_dlpack(cap)
    with pytest.raises(TypeError, match=r"capsule can be consumed once"):
        C.from_dlpack(cap)
    del x
    np.testing.assert_array_equal(y.numpy(), np.arange(12.0).reshape(3, 4).T)  # y keeps it alive


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dlpack_with_torch(dtype):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA support here")
    host = rng_for("torch").standard_normal((4, 6)).astype(dtype)
    x = C.from_numpy(host)
    t = torch.from_dlpack(x)
    assert t.device.type == "cuda" and t.data_ptr() == x.data_ptr
    np.testing.assert_array_equal(t.cpu().numpy(), host)
    t2 = torch.arange(20, dtype=torch.float64, device="cuda").reshape(4, 5).t()
    back = C.from_dlpack(t2)
    assert back.data_ptr == t2.data_ptr() and back.strides == tuple(t2.stride())
    np.testing.assert_array_equal(C.mul(back, 2.0).numpy(), (t2 * 2).cpu().numpy())


@requires_gpu
def test_cuda_device_namespace():
    dev = dlkern.device("cuda")
    assert dev is dlkern.device("cuda:0") and dev.type == "cuda"
    a = dev.from_host(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(dev.sum(dev.exp(a), axis=1).numpy(), np.exp(np.arange(6.0).reshape(2, 3)).sum(1))
    with pytest.raises(NotImplementedError, match=r"op 'softmax_forward' is not implemented on device 'cuda'"):
        dev.softmax_forward


# ---------------------------------------------------------------------------
# softmax / log_softmax, layer_norm (on a device)
# ---------------------------------------------------------------------------

def softmax_ref(x, dim, log):
    x = x.astype(np.float64)
    m = np.max(x, axis=dim, keepdims=True)
    z = x - m
    lse = np.log(np.sum(np.exp(z), axis=dim, keepdims=True))
    return z - lse if log else np.exp(z - lse)


SOFTMAX_SHAPES = [((1, 1), -1), ((3, 7), -1), ((5, 128), -1), ((4, 1000), 1), ((2, 3, 33), 0),
                  ((6, 4, 5), 1), ((257,), 0)]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, dim", SOFTMAX_SHAPES, ids=str)
def test_softmax_forward_backward_match_numpy(shape, dim, log, dtype):
    rng = rng_for("softmax", shape, dim)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    name = "log_softmax" if log else "softmax"
    y = getattr(C, name)(C.from_numpy(x), dim)
    want = softmax_ref(x, dim, log)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-13)
    dx = getattr(C, name + "_backward")(C.from_numpy(g), y, dim)
    g64 = g.astype(np.float64)
    if log:
        want_dx = g64 - np.exp(want) * g64.sum(axis=dim, keepdims=True)
    else:
        want_dx = want * (g64 - (g64 * want).sum(axis=dim, keepdims=True))
    np.testing.assert_allclose(dx.numpy(), want_dx, rtol=1e-4 if dtype == np.float32 else 1e-11,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@requires_gpu
def test_softmax_edges_and_out():
    x = C.from_numpy(np.array([[-np.inf, -np.inf], [0.0, -np.inf], [np.nan, 1.0]]))
    np.testing.assert_array_equal(C.softmax(x).numpy(), [[0, 0], [1, 0], [np.nan, np.nan]])
    np.testing.assert_array_equal(C.log_softmax(x).numpy()[:2], [[-np.inf, -np.inf], [0, -np.inf]])
    host = rng_for("out").standard_normal((4, 6)).astype(np.float32)
    out = C.zeros((4, 6), np.float32)
    assert C.softmax(C.from_numpy(host).T, 0, out=out.T) is not None
    np.testing.assert_allclose(out.numpy(), softmax_ref(host, 1, False), rtol=1e-5, atol=1e-7)
    with pytest.raises(IndexError, match=r"softmax: axis 2 is out of range"):
        C.softmax(x, 2)
    with pytest.raises(ValueError, match=r"softmax_backward: y has shape \(2, 3\), expected \(3, 2\)"):
        C.softmax_backward(x, C.zeros((2, 3), np.float64))


def layer_norm_ref(x, k, w, b, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    x = x.astype(np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    y = (x - mean) * rstd
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y, mean.reshape(x.shape[:x.ndim - k]), rstd.reshape(x.shape[:x.ndim - k])


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape, k", [((1, 1), 1), ((3, 8), 1), ((7, 33), 1), ((2, 5, 64), 1), ((4, 3, 6), 2),
                                      ((300, 17), 1)], ids=str)
def test_layer_norm_matches_numpy(shape, k, affine, dtype):
    rng = rng_for("ln", shape, k)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    ns = shape[len(shape) - k:]
    w = rng.standard_normal(ns).astype(dtype) if affine else None
    b = rng.standard_normal(ns).astype(dtype) if affine else None
    dev = lambda a: None if a is None else C.from_numpy(a)  # noqa: E731
    y, mean, rstd = C.layer_norm_forward(dev(x), ns, dev(w), dev(b), 1e-5)
    want_y, want_mean, want_rstd = layer_norm_ref(x, k, w, b, 1e-5)
    t = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), want_y, **t)
    np.testing.assert_allclose(mean.numpy(), want_mean, **t)
    np.testing.assert_allclose(rstd.numpy(), want_rstd, **t)
    dx, dw, db = C.layer_norm_backward(dev(g), dev(x), ns, dev(w), mean, rstd)
    # reference gradients in float64
    axes = tuple(range(x.ndim - k, x.ndim))
    n = int(np.prod(ns))
    m64, r64 = want_mean.reshape(shape[:x.ndim - k] + (1,) * k), want_rstd.reshape(shape[:x.ndim - k] + (1,) * k)
    xhat = (x.astype(np.float64) - m64) * r64
    gw = g.astype(np.float64) * (w if affine else 1.0)
    want_dx = r64 * (gw - gw.sum(axis=axes, keepdims=True) / n - xhat * (gw * xhat).sum(axis=axes, keepdims=True) / n)
    lead = tuple(range(x.ndim - k))
    np.testing.assert_allclose(dx.numpy(), want_dx, **t)
    np.testing.assert_allclose(db.numpy(), g.astype(np.float64).sum(axis=lead), **t)
    if affine:
        np.testing.assert_allclose(dw.numpy(), (g * xhat).sum(axis=lead), **t)
    else:
        assert dw is None


@requires_gpu
def test_layer_norm_argument_errors():
    x = C.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"layer_norm_forward: normalized_shape \(4,\) does not match the trailing"):
        C.layer_norm_forward(x, (4,))
    with pytest.raises(ValueError, match=r"layer_norm_forward: weight has shape \(2,\), expected \(3,\)"):
        C.layer_norm_forward(x, (3,), C.zeros(2, np.float32))
    with pytest.raises(TypeError, match=r"layer_norm_forward: weight has dtype float64 but x has dtype float32"):
        C.layer_norm_forward(x, (3,), C.zeros(3, np.float64))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape, k", [((1, 1), 1), ((7, 33), 1), ((2, 5, 64), 1), ((4, 3, 6), 2)], ids=str)
def test_rms_norm_matches_numpy(shape, k, affine, dtype):
    rng = rng_for("rms", shape, k)
    x = (rng.standard_normal(shape) + 0.5).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    ns = shape[len(shape) - k:]
    w = rng.standard_normal(ns).astype(dtype) if affine else None
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    eps = float(np.finfo(dtype).eps)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    r64 = 1 / np.sqrt((x64 ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = x64 * r64
    want_y = xhat * (w if affine else 1.0)
    y, rstd = C.rms_norm_forward(C.from_numpy(x), ns, C.from_numpy(w) if affine else None)
    t = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), want_y, **t)
    np.testing.assert_allclose(rstd.numpy(), r64.reshape(rstd.shape), **t)
    dx, dw = C.rms_norm_backward(C.from_numpy(g), C.from_numpy(x), ns, C.from_numpy(w) if affine else None, rstd)
    gw = g64 * (w if affine else 1.0)
    n = int(np.prod(ns))
    np.testing.assert_allclose(dx.numpy(), r64 * (gw - xhat * (gw * xhat).sum(axis=axes, keepdims=True) / n), **t)
    if affine:
        np.testing.assert_allclose(dw.numpy(), (g64 * xhat).sum(axis=lead), **t)
    else:
        assert dw is None
