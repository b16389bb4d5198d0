"""One list of kernel names, one signature each (csrc/bind/kernels.h).

Every shared kernel is a function of dlkern._C listed in _C.KERNELS; dlkern.ops.<name>
(the thin layer over it) takes the same arguments; the CUDA host twin (tests/host_cuda.py,
whose hot ops bind their arguments with dlkern.ops' signatures) and, when built, the real
dlkern._C_cuda take the same arguments too. Signatures of compiled functions come from
the first line of their pybind11 docstring.
"""
import inspect
import re

import pytest

import dlkern
import dlkern.ops as ops

import host_cuda
from cuda_support import C as C_CUDA

SHARED = (
    "matmul", "gemm",
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d", "causal_conv1d_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
    "group_norm_forward", "group_norm_backward", "batch_norm_forward", "batch_norm_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "attention_forward", "attention_backward", "kv_cache_append", "decode_attention", "rope", "rope_backward",
    # The activations come from one list (csrc/cpu/activation.h), which the module exports.
    *(n for a in dlkern._C.ACTIVATIONS for n in (a, f"{a}_backward")),
    *dlkern._C.UNARY_KERNELS,  # erf: the CUDA module's array primitive of that name, bound on the CPU too
    "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward",
    "lstm_layer_forward", "lstm_layer_backward", "gru_layer_forward", "gru_layer_backward",
    "rnn_layer_forward", "rnn_layer_backward",
    "adam_step", "sgd_step",
)

# Keywords only the CUDA kernels take (a CPU run has nothing to choose there).
CUDA_ONLY_KEYWORDS = {"matmul": ("allow_tf32",), "gemm": ("allow_tf32",)}
# Keywords only the CPU kernels take: out_dtype of the bfloat16/float16 products, which
# have no CUDA kernel (the CUDA module refuses those dtypes).
CPU_ONLY_KEYWORDS = {"matmul": ("out_dtype",), "gemm": ("out_dtype",)}
# Keyword-only aliases that dlkern.ops adds in Python (NumPy's spelling axis= for dim=).
OPS_ALIASES = {n: ("axis",) for n in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")}


def _split_top_level(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def compiled_params(fn, name):
    """[(name, default repr or None)] from a pybind11 docstring's signature line."""
    first = (fn.__doc__ or "").splitlines()[0] if fn.__doc__ else ""
    m = re.match(rf"{name}\((.*)\) -> ", first)
    assert m, f"{name}: no signature line in its docstring: {first!r}"
    out = []
    for p in _split_top_level(m.group(1)):
        if p in ("*", "/"):
            continue
        head, _, default = p.partition(" = ")
        out.append((head.split(":")[0].strip(), _norm(default) if default else None))
    return out


def python_params(fn):
    fn = inspect.unwrap(fn)  # the ops' bfloat16/float16 wrapper (ops/lowp.py) has fn's signature
    if not inspect.isfunction(fn):  # the compiled function itself (dlkern.ops.matmul is _C.matmul)
        return compiled_params(fn, fn.__name__)
    out = []
    for p in inspect.signature(fn).parameters.values():
        out.append((p.name, None if p.default is inspect.Parameter.empty else _norm(repr(p.default))))
    return out


def _norm(default):
    # pybind11 prints a float default as Python does, and bools/None/ints/tuples alike.
    try:
        return repr(float(default)) if "." in default or "e" in default.lower() else default
    except ValueError:
        return default


def _without(params, name):
    drop = CUDA_ONLY_KEYWORDS.get(name, ()) + CPU_ONLY_KEYWORDS.get(name, ())
    return [p for p in params if p[0] not in drop]


def twin_params(name):
    fn = getattr(host_cuda, name)
    params = python_params(fn)
    if [p[0] for p in params] == ["args", "kwargs"]:  # a hot op: bound with dlkern.ops' signature
        params = [p for p in python_params(getattr(ops, name)) if p[0] not in OPS_ALIASES.get(name, ())]
    return params


def test_the_list_is_the_modules_list():
    assert set(SHARED) <= set(dlkern._C.KERNELS)
    assert [k for k in dlkern._C.KERNELS if k in SHARED] == list(SHARED)


@pytest.mark.parametrize("name", SHARED)
def test_cpu_module_has_the_kernel_with_the_ops_signature(name):
    fn = getattr(dlkern._C, name)
    wrapper = python_params(getattr(ops, name))
    assert [p for p in wrapper if p[0] not in OPS_ALIASES.get(name, ())] == compiled_params(fn, name)
    aliases = OPS_ALIASES.get(name, ())
    assert [p for p in wrapper if p[0] in aliases] == [(a, "None") for a in aliases]


@pytest.mark.parametrize("name", [n for n in SHARED if hasattr(host_cuda, n)])
def test_host_twin_has_the_cpu_signature(name):
    assert _without(twin_params(name), name) == _without(compiled_params(getattr(dlkern._C, name), name), name)


@pytest.mark.skipif(C_CUDA is None, reason="dlkern._C_cuda is not built")
@pytest.mark.parametrize("name", SHARED)
def test_cuda_module_has_the_cpu_signature(name):
    if name not in C_CUDA.KERNELS:
        assert not hasattr(C_CUDA, name)
        assert not hasattr(host_cuda, name), f"the twin stands in for {name}, which _C_cuda lacks"
        pytest.skip(f"no CUDA kernel {name}")
    cuda = compiled_params(getattr(C_CUDA, name), name)
    assert _without(cuda, name) == _without(compiled_params(getattr(dlkern._C, name), name), name)
    if hasattr(host_cuda, name):
        assert cuda == twin_params(name) or _without(cuda, name) == _without(twin_params(name), name)


def test_twin_lists_the_kernels_it_defines():
    assert set(host_cuda.KERNELS) <= set(dlkern._C.KERNEL_NAMES)
    for name in dlkern._C.KERNEL_NAMES:
        assert (name in host_cuda.KERNELS) == callable(getattr(host_cuda, name, None)), name


@pytest.mark.skipif(C_CUDA is None, reason="dlkern._C_cuda is not built")
def test_twin_stands_in_for_exactly_the_cuda_kernels():
    assert C_CUDA.KERNEL_NAMES == dlkern._C.KERNEL_NAMES
    assert host_cuda.KERNELS == C_CUDA.KERNELS
