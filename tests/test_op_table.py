"""Runs every row of the op table (tests/op_table.py) on every device present: the CPU on
each ISA path with 1 and 2 threads, the CUDA host twin (tests/host_cuda.py, which proves
the Python device layer) and a real GPU when dlkern._C_cuda has one.

Per row and case, in float32 and float64: the forward's outputs and the backward's
gradients against dlkern.reference (float64 NumPy); the result dtype and shape; the
float64 gradients against central differences of the device's own forward with a random
cotangent; and the forward against PyTorch where it is installed.
"""

import contextlib

import ml_dtypes
import numpy as np
import pytest

import dlkern
from dlkern import reference as R
from dlkern.device import CUDADevice
from dlkern.dtypes import is_low_precision

import host_cuda
from cuda_support import HAS_GPU
from helpers import numeric_grad
from op_table import ROWS

C_TOL = 8.0  # rounding walk of a length-k reduction, as helpers.assert_close (plus the reference's own error)


class Device:
    """A device namespace with the two transfers a test needs."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "cpu":
            self.ns = dlkern.device("cpu")
        else:
            self.ns = CUDADevice(0, module=host_cuda) if kind == "twin" else dlkern.device("cuda")

    def put(self, a, noncontig=False):
        if self.kind == "cpu":
            a = np.array(a, copy=True)
            if noncontig and a.ndim >= 2:  # the same values through a transposed, non-contiguous view
                a = np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
            return a
        if noncontig and a.ndim >= 2:
            swap = tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2)
            return self.ns.from_host(np.ascontiguousarray(np.transpose(a, swap))).permute(swap)
        return self.ns.from_host(a)

    def get(self, x):
        if isinstance(x, tuple):
            return tuple(self.get(v) for v in x)
        if x is None or isinstance(x, (int, float, np.ndarray, np.generic)):
            return x
        return x.numpy()


ENVS = [pytest.param(("cpu", isa, n), id=f"cpu-{isa}-{n}thr") for isa in dlkern.supported_isas() for n in (1, 2)]
ENVS += [pytest.param(("twin", None, 1), id="host-twin")]
ENVS += [pytest.param(("cuda", None, 1), id="cuda")] if HAS_GPU else []


@contextlib.contextmanager
def environment(env):
    """The device, with the CPU kernels on `isa` and `n` threads (the previous settings
    restored after). At 2 threads the per-thread work thresholds are off, so small inputs
    take the parallel paths, as conftest's threads fixture does."""
    kind, isa, n = env
    prev = dlkern.get_isa(), dlkern.get_num_threads(), dlkern._C.get_min_work_scale()
    try:
        if isa is not None:
            dlkern.set_isa(isa)
        dlkern.set_num_threads(n)
        dlkern._C.set_min_work_scale(0.0 if n > 1 else prev[2])
        yield Device(kind)
    finally:
        dlkern.set_isa(prev[0])
        dlkern.set_num_threads(prev[1])
        dlkern._C.set_min_work_scale(prev[2])


def _cases(rows, envs=None, only_grad=False):
    """(env, row, case id, params) for every env that runs the case: rows without CUDA
    kernels and CPU-only forms run on the CPU only (test_cuda_refuses_rows_without_kernels
    checks that the CUDA namespace refuses the former)."""
    for env in envs or [pytest.param(None, id="")]:
        kind = env.values[0] and env.values[0][0]
        for row in rows:
            for case_id, params in row.cases:
                if only_grad and case_id != row.grad_case:
                    continue
                if kind not in (None, "cpu") and (not row.cuda or case_id in row.cpu_only):
                    continue
                values = (row, case_id, params) if env.values[0] is None else (env.values[0], row, case_id, params)
                yield pytest.param(*values, id="-".join(filter(None, (env.id, row.name, case_id))))


def _inputs(row, case_id, params, dtype, seed=0):
    rng = np.random.default_rng([seed, sum(map(ord, row.name + case_id))])
    return row.make(rng, dtype, **params)


def _on(dev, arrays, case_id):
    """The arrays on dev; the first is a non-contiguous view in the 'noncontig' case."""
    return {name: dev.put(a, noncontig=case_id == "noncontig" and i == 0) for i, (name, a) in enumerate(arrays.items())}


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def close(got, expected, dtype, k, factor, what):
    """got (from the device, in dtype) against the float64 reference: same shape, dtype,
    NaN/inf pattern, and |err| <= C_TOL * factor * eps * sqrt(k + 1) * (1 + |expected|)."""
    if expected is None:
        assert got is None, f"{what}: expected None, got an array"
        return
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    if expected.dtype.kind in "iub":
        np.testing.assert_array_equal(got, expected, err_msg=what)
        return
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    got = got.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{what}: NaN pattern differs"
    finite = np.isfinite(expected)
    assert np.array_equal(got[~finite], expected[~finite], equal_nan=True), f"{what}: infinities differ"
    tol = C_TOL * factor * np.finfo(dtype).eps * np.sqrt(k + 1.0) * (1.0 + np.abs(expected))
    err = np.abs(np.where(finite, got - expected, 0.0))
    bad = err > tol
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / tol, 0.0)), bad.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements out of tolerance; worst at {i}: "
                             f"got {got[i]!r}, expected {expected[i]!r}, |err| {err[i]:.3g} > tol {tol[i]:.3g}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("env, row, case_id, params", list(_cases(ROWS, ENVS)))
def test_row_against_reference(env, row, case_id, params, dtype):
    arrays, static = _inputs(row, case_id, params, dtype)
    k = row.k(arrays, static)
    with environment(env) as dev:
        out = _tuple(row.fwd(dev.ns, _on(dev, arrays, case_id), static))
        expected = _tuple(row.fwd(R, {n: a.copy() for n, a in arrays.items()}, static))
        got = dev.get(out)
        assert len(got) == len(expected), f"{row.name}: {len(got)} outputs, expected {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            close(g, e, dtype, k, row.tol, f"{row.name}[{case_id}] output {i}")
        if row.bwd is None:
            return
        rng = np.random.default_rng(1)
        cot = rng.standard_normal(np.shape(expected[0])).astype(dtype)
        grads = dev.get(_tuple(row.bwd(dev.ns, dev.put(cot), out, _on(dev, arrays, case_id), static)))
        expected_grads = _tuple(row.bwd(R, cot, expected, arrays, static))
        present = [n for n in row.diff if n in arrays]
        assert len(grads) == len(present), f"{row.name}: {len(grads)} gradients for {present}"
        for name, g, e in zip(present, grads, expected_grads):
            close(g, e, dtype, max(k, cot.size), row.tol, f"{row.name}[{case_id}] d{name}")


REFUSE_16_BITS = ("kv_cache_append",)  # the cache is written in place; too large to widen per call


def _wide(x):
    """A float64 copy of a 16-bit output (None, ints and tuples as they are)."""
    if isinstance(x, tuple):
        return tuple(_wide(v) for v in x)
    return x.astype(np.float64) if isinstance(x, np.ndarray) and is_low_precision(x.dtype) else x


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("row, case_id, params", list(_cases(ROWS)))
def test_row_in_16_bits(row, case_id, params, dtype):
    """bfloat16 / float16 on the CPU (dlkern.ops' 16-bit paths: gemm/matmul's own, float32
    inside for the rest): the first output in the inputs' dtype, other outputs in it or in
    float32 (the state a *_forward keeps, as PyTorch); every output and gradient within the
    16-bit tolerance of the float64 reference of the same (16-bit) inputs."""
    arrays, static = _inputs(row, case_id, params, dtype)
    ns = dlkern.device("cpu")
    if row.name in REFUSE_16_BITS:
        with pytest.raises(TypeError, match=f"^{row.name}: .* has dtype {np.dtype(dtype)}"):
            row.fwd(ns, arrays, static)
        return
    k = row.k(arrays, static)
    wide = {n: a.astype(np.float64) if a.dtype == dtype else a for n, a in arrays.items()}
    out = _tuple(row.fwd(ns, {n: a.copy() for n, a in arrays.items()}, static))
    expected = _tuple(row.fwd(R, {n: a.copy() for n, a in wide.items()}, static))
    assert len(out) == len(expected), f"{row.name}: {len(out)} outputs, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(out, expected)):
        got_dtype = np.asarray(g).dtype if g is not None else None
        want = dtype if i == 0 or got_dtype != np.float32 else np.float32
        close(g, e, want, k, row.tol, f"{row.name}[{case_id}] output {i}")
    if row.bwd is None:
        return
    cot = np.random.default_rng(1).standard_normal(np.shape(expected[0])).astype(dtype)
    grads = _tuple(row.bwd(ns, cot.copy(), out, {n: a.copy() for n, a in arrays.items()}, static))
    expected_grads = _tuple(row.bwd(R, cot.astype(np.float64), _wide(out), wide, static))
    present = [n for n in row.diff if n in arrays]
    for name, g, e in zip(present, grads, expected_grads):
        close(g, e, dtype, max(k, cot.size), row.tol, f"{row.name}[{case_id}] d{name}")


@pytest.mark.parametrize("env, row, case_id, params", list(_cases([r for r in ROWS if r.bwd], ENVS, only_grad=True)))
def test_row_gradients_by_finite_differences(env, row, case_id, params):
    """Float64: the device's backward against central differences of its own forward,
    for sum(forward * w) with a random cotangent w."""
    arrays, static = _inputs(row, case_id, params, np.float64, seed=2)
    with environment(env) as dev:
        def forward():
            return dev.get(_tuple(row.fwd(dev.ns, _on(dev, arrays, case_id), static)))

        out = _tuple(row.fwd(dev.ns, _on(dev, arrays, case_id), static))
        w = np.random.default_rng(3).standard_normal(np.shape(dev.get(out[0])))
        grads = dev.get(_tuple(row.bwd(dev.ns, dev.put(w), out, _on(dev, arrays, case_id), static)))
        present = [n for n in row.diff if n in arrays]
        for name, g in zip(present, grads):
            expected = numeric_grad(lambda: float(np.sum(forward()[0] * w)), arrays[name])
            np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7,
                                       err_msg=f"{row.name}: d{name} disagrees with finite differences")


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # PyTorch's note on its own copy for even kernels
@pytest.mark.parametrize("row, case_id, params", [p for p in _cases([r for r in ROWS if r.torch])
                                                  if p.values[1] not in p.values[0].no_torch])
def test_row_matches_pytorch(row, case_id, params):
    """Float64 on the CPU: the forward's first output against PyTorch's."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    arrays, static = _inputs(row, case_id, params, np.float64)
    got = _tuple(row.fwd(dlkern.device("cpu"), {n: a.copy() for n, a in arrays.items()}, static))[0]
    expected = row.torch(F, torch, {n: torch.from_numpy(a.copy()) for n, a in arrays.items()}, static)
    close(got, expected.numpy(), np.float64, row.k(arrays, static), row.tol, f"{row.name}[{case_id}] vs torch")


@pytest.mark.parametrize("row", [r for r in ROWS if not r.cuda], ids=lambda r: r.name)
def test_cuda_refuses_rows_without_kernels(row):
    """A row marked cuda=False must fail loudly on the CUDA namespace (NotImplementedError
    naming the op), so a new CUDA kernel cannot go untested: flip the row when it lands."""
    case_id, params = row.cases[0]
    arrays, static = _inputs(row, case_id, params, np.float32)
    dev = Device("twin")
    with pytest.raises(NotImplementedError, match="cuda"):
        row.fwd(dev.ns, _on(dev, arrays, case_id), static)


def test_reference_has_every_cpu_op():
    """dlkern.reference offers every kernel of the ops API (the CPU namespace's kernels)."""
    import inspect

    ops = {n for n, f in vars(dlkern.ops).items() if callable(f) and not n.startswith("_") and not inspect.isclass(f)
           and not inspect.ismodule(f)}
    assert ops, "dlkern.ops lists no kernels"
    assert ops <= set(R.KERNELS), f"dlkern.reference lacks {sorted(ops - set(R.KERNELS))}"
    for name in R.KERNELS:
        assert callable(getattr(R, name)), name


class _Recorder:
    """A namespace that forwards to dlkern.reference and notes each name asked for."""

    def __init__(self):
        self.names = set()

    def __getattr__(self, name):
        self.names.add(name)
        return getattr(R, name)


def test_every_cpu_op_has_a_row():
    """Each kernel of the ops API is called by some row (a plain name such as layer_norm
    counts through its layer_norm_forward), so a new op without a row fails here."""
    import inspect

    ns = _Recorder()
    for row in ROWS:
        case_id, params = row.cases[0]
        arrays, static = _inputs(row, case_id, params, np.float64)
        out = _tuple(row.fwd(ns, arrays, static))
        if row.bwd is not None:
            row.bwd(ns, np.ones(np.shape(out[0])), out, arrays, static)
    ops = {n for n, f in vars(dlkern.ops).items() if callable(f) and not n.startswith("_") and not inspect.isclass(f)
           and not inspect.ismodule(f)}
    missing = sorted(n for n in ops if n not in ns.names and n + "_forward" not in ns.names
                     and n not in TABLES_ELSEWHERE)
    assert not missing, f"ops without a row in tests/op_table.py: {missing}"


# Ops whose table lives in their own test file, with the reason a row here cannot hold them.
TABLES_ELSEWHERE = {
    # In-place steps over an optimizer's state, float32/float64 only (16-bit refused): the
    # rows' out-of-place outputs and 16-bit rerun do not fit; the same sweep (every ISA, 1
    # and 2 threads, sizes, dlkern.reference, PyTorch) is tests/test_optim_kernels.py's.
    "adam_step": "tests/test_optim_kernels.py",
    "sgd_step": "tests/test_optim_kernels.py",
}
