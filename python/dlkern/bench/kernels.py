"""The kernel benchmarks as rows: ``python -m dlkern bench matmul | softmax |
cross_entropy | gelu | norm | conv | pool | attention``.

Each benchmark is a ``harness.Bench`` whose ``cases(args)`` lists ``harness.Case`` rows:
inputs, how dlkern and each peer run the op, the float64 reference it must match
(``harness._reference(kernel name)``), the tolerance, and FLOPs or bytes per call.
Adding an op's benchmark is adding a Bench here (or rows to an existing one).
"""

from __future__ import annotations

import argparse

import numpy as np

from dlkern import ops

from .harness import Bench, Case, _reference, f64

EPS32 = float(np.finfo(np.float32).eps)


def rng_for(*seed):
    return np.random.default_rng([int(s) for s in seed])


def sampled_rows(rng, n: int, count: int) -> np.ndarray:
    """The first and last row plus ``count`` at random: a tile edge or tail is always crossed."""
    return np.unique(np.concatenate([[0, n - 1], rng.integers(0, n, count)]))


def parse_2d(text: str, label: str = "ROWSxCOLS"):
    try:
        rows, cols = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected {label}") from None
    return rows, cols


def shapes_arg(label: str, default: str):
    def add(parser):
        parser.add_argument("--shapes", type=lambda t: [parse_2d(p, label) for p in t.split(",") if p.strip()],
                            default=None, help=f"{label}, comma separated (default {default})")
    return add


def pick(args, default, quick):
    return args.shapes or (quick if args.quick else default)


def torch_out(torch, call, like):
    """A PyTorch call writing into its own preallocated output (no page faults per call)."""
    out = torch.empty_like(like)
    return lambda: call(out)


# ----------------------------------------------------------------------------- matmul

PEAK_GFLOPS_PER_CORE_F32 = 116.8  # MACHINE.md: 32 FLOP/cycle at 3.65 GHz
MATMUL_SHAPES = [(s, s, s, "square") for s in (64, 128, 256, 512, 1024, 2048)] + [
    (4096, 768, 3072, "BERT-base FFN up"), (4096, 3072, 768, "BERT-base FFN down"),
    (2048, 192, 768, "tiny GPT FFN up"), (128, 784, 256, "MLP 784-256, batch 128"), (1, 4096, 4096, "GEMV")]
MATMUL_QUICK = [(s, s, s, "square") for s in (64, 128, 256)] + [
    (128, 784, 256, "MLP 784-256, batch 128"), (1, 1024, 1024, "GEMV")]
# Products up to this many multiply-adds are checked whole; larger ones on sampled full
# rows and columns (every tile edge is still crossed).
FULL_CHECK_LIMIT = 1 << 24


def parse_matmul_shape(text: str):
    """"N" (square) or "MxKxN" -> (m, k, n, note)."""
    try:
        sizes = [int(p) for p in text.lower().split("x")]
    except ValueError:
        sizes = []
    sizes = sizes * 3 if len(sizes) == 1 else sizes
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected N (square) or MxKxN with positive sizes")
    m, k, n = sizes
    known = {s[:3]: s[3] for s in MATMUL_SHAPES}
    return m, k, n, known.get((m, k, n), "GEMV" if 1 in (m, n) else "square" if m == k == n else "")


def matmul_case(m: int, k: int, n: int, note: str = "", dtype=np.float32) -> Case:
    def make():
        rng = rng_for(0, m, k, n)
        a = rng.uniform(-1.0, 1.0, (m, k)).astype(dtype)
        b = rng.uniform(-1.0, 1.0, (k, n)).astype(dtype)
        full = m * k * n <= FULL_CHECK_LIMIT
        return dict(a=a, b=b, rows=slice(None) if full else sampled_rows(rng, m, 24),
                    cols=slice(0) if full else sampled_rows(rng, n, 24))

    def sample(c, inp):  # the checked rows, then the checked columns, flattened
        return np.concatenate([c[inp["rows"], :].ravel(), c[:, inp["cols"]].ravel()])

    def expected(inp):
        a, b = f64(inp["a"], inp["b"])
        want = np.concatenate([(a[inp["rows"]] @ b).ravel(), (a @ b[:, inp["cols"]]).ravel()])
        # Rounding of a K-term dot product grows like sqrt(K) eps relative to sum |a_ik b_kj|.
        inp["magnitude"] = np.concatenate([(abs(a[inp["rows"]]) @ abs(b)).ravel(),
                                           (abs(a) @ abs(b[:, inp["cols"]])).ravel()])
        return (want,)

    def compare(got, want, inp, index):
        return float((np.abs(got - want) / np.maximum(inp["magnitude"], 1e-300)).max(initial=0.0))

    def preallocated(call):
        def make_call(inp, torch):
            out = np.empty((m, n), dtype)
            return lambda: call(inp["a"], inp["b"], out)
        return make_call

    def torch_mm(inp, torch):
        ta, tb = torch.from_numpy(inp["a"]), torch.from_numpy(inp["b"])  # the very same buffers
        return torch_out(torch, lambda out: torch.mm(ta, tb, out=out), torch.empty((m, n), dtype=ta.dtype))

    return Case((f"{m}x{k}x{n}", note or "-"), make, {
        "dlkern": preallocated(lambda a, b, out: ops.matmul(a, b, out=out)),
        "numpy": preallocated(lambda a, b, out: np.matmul(a, b, out=out)),
        "torch": torch_mm,
    }, expected, 2.0 * m * k * n, tol=8 * np.sqrt(k) * float(np.finfo(dtype).eps), compare=compare,
        check=lambda got, inp: (sample(got[0], inp),))


def matmul_arguments(parser):
    parser.add_argument("--shapes", type=lambda t: [parse_matmul_shape(p) for p in t.split(",") if p.strip()],
                        default=None, help="N (square) or MxKxN, comma separated (default: the standard set)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--peak", type=float, default=PEAK_GFLOPS_PER_CORE_F32,
                        help="float32 peak GFLOP/s per core (float64: half); default from MACHINE.md")


def square_matmul_probe(size: int = 512):
    a = rng_for(1).standard_normal((size, size)).astype(np.float32)
    out = np.empty_like(a)
    return lambda: ops.matmul(a, a, out=out)


MATMUL = Bench(
    "matmul", "matrix product (A @ B) against NumPy and PyTorch", "dlkern matmul benchmark",
    ("shape MxKxN", "what"),
    lambda args: [matmul_case(*s, dtype=np.dtype(args.dtype)) for s in pick(args, MATMUL_SHAPES, MATMUL_QUICK)],
    unit="GFLOP/s", extra_arguments=matmul_arguments, probe=square_matmul_probe, chart=True,
    peak=lambda args, threads: args.peak * threads * 4 / np.dtype(args.dtype).itemsize,
    method=["- **method**: every library writes into its own preallocated output (a fresh output over ~32 MiB "
            "adds page faults to every call); PyTorch is `torch.mm(a, b, out=)` on the same buffers. Checked "
            "against a float64 product (sampled full rows and columns above 2^24 multiply-adds) in units of "
            "|A|@|B|."],
    footer=["NumPy ran OpenBLAS's own choice of kernels; MACHINE.md: `OPENBLAS_CORETYPE=Haswell` is about 5% "
            "faster at 1 thread on this CPU (rerun with it set and another `--out` to report both).", ""])


# ----------------------------------------------------------------------------- softmax


def numpy_softmax(x, out, log):
    """The float32 NumPy a NumPy user would write, into a preallocated output."""
    np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    if log:
        out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
    else:
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
    return out


def softmax_case(op: str, rows: int, cols: int) -> Case:
    log = op == "log_softmax"

    def make():
        rng = rng_for(rows, cols)
        return dict(x=(rng.standard_normal((rows, cols)) * 4).astype(np.float32), rows=sampled_rows(rng, rows, 64))

    def compare(got, want, inp, index):  # relative, but log-probabilities near 0 in absolute terms
        return float((np.abs(got - want) / (np.maximum(abs(want), 1.0) if log else abs(want) + 1e-30)).max())

    def torch_softmax(inp, torch):
        tx, fn = torch.from_numpy(inp["x"]), torch._log_softmax if log else torch._softmax
        return torch_out(torch, lambda out: fn(tx, -1, False, out=out), tx)

    def preallocated(call):
        def make_call(inp, torch):
            out = np.empty_like(inp["x"])
            return lambda: call(inp["x"], out)
        return make_call

    return Case((op, f"{rows}x{cols}"), make, {
        "dlkern": preallocated(lambda x, out: getattr(ops, op)(x, -1, out=out)),
        "torch": torch_softmax,
        "numpy": preallocated(lambda x, out: numpy_softmax(x, out, log)),
    }, lambda inp: (_reference(op)(f64(inp["x"][inp["rows"]])[0]),), 2.0 * rows * cols * 4,
        tol=8 * np.sqrt(cols) * EPS32, compare=compare, check=lambda got, inp: (got[0][inp["rows"]],),
        target=("torch", 1.2))


def softmax_probe():
    x = rng_for(1).standard_normal((4096, 1024)).astype(np.float32)
    out = np.empty_like(x)
    return lambda: ops.softmax(x, -1, out=out)


SOFTMAX = Bench(
    "softmax", "softmax / log_softmax over the last axis against PyTorch and NumPy",
    "dlkern softmax benchmark", ("op", "shape"),
    lambda args: [softmax_case(op, *s) for s in pick(args, [(4096, 1024), (32768, 768)], [(256, 1024)])
                  for op in ("softmax", "log_softmax")],
    extra_arguments=shapes_arg("ROWSxCOLS", "4096x1024,32768x768"), probe=softmax_probe, chart=True,
    method=["- **method**: float32, standard-normal * 4 input, over the last axis into a preallocated output "
            "(PyTorch: `torch._softmax(x, -1, False, out=)`); NumPy is the float32 max, subtract, exp, sum, "
            "divide. GB/s = (input read + output written) / time; checked on sampled rows."])


# ----------------------------------------------------------------------------- cross-entropy


def cross_entropy_case(n: int, c: int) -> Case:
    def make():
        rng = rng_for(n, c)
        return dict(x=rng.standard_normal((n, c)).astype(np.float32), t=rng.integers(0, c, n),
                    rows=sampled_rows(rng, n, 32))

    def expected(inp):
        x, t, rows = inp["x"], inp["t"], inp["rows"]
        fwd, bwd = _reference("cross_entropy_forward"), _reference("cross_entropy_backward")
        # The mean needs every row: float64 in chunks of 256 rows, so no N x C float64 copy.
        loss = sum(fwd(*f64(x[i:i + 256]), t[i:i + 256])[0] * len(t[i:i + 256]) for i in range(0, n, 256)) / n
        x64 = f64(x[rows])[0]
        return np.float64(loss), bwd(1.0, x64, t[rows], fwd(x64, t[rows])[1]) * len(rows) / n

    def compare(got, want, inp, index):  # the loss to 1e-4 relative, the gradient to 64 eps / N
        return float(abs(got - want) / (1e-4 * max(1.0, abs(want))) if index == 0
                     else np.abs(got - want).max() / (64 * EPS32 / n))

    def dlkern_step(out):
        def make_call(inp, torch):
            x, t, dx, one = inp["x"], inp["t"], np.empty_like(inp["x"]) if out else None, np.float32(1.0)

            def step():
                loss, lse = ops.cross_entropy_forward(x, t)
                return loss, ops.cross_entropy_backward(one, x, t, lse, out=dx)
            return step
        return make_call

    def torch_step(inp, torch):
        tx, tt = torch.from_numpy(inp["x"]), torch.from_numpy(inp["t"])

        def step():
            leaf = tx.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(leaf, tt)
            loss.backward()
            return loss.detach(), leaf.grad
        return step

    def numpy_step(inp, torch):
        fwd, bwd = _reference("cross_entropy_forward"), _reference("cross_entropy_backward")

        def step():
            loss, lse = fwd(inp["x"], inp["t"])
            return loss, bwd(np.float32(1.0), inp["x"], inp["t"], lse)
        return step

    return Case((f"{n}x{c}",), make, {"dlkern": dlkern_step(False), "dlkern_out": dlkern_step(True),
                                      "torch": torch_step, "numpy": numpy_step},
                expected, 3.0 * n * c * 4, tol=1.0, compare=compare, outputs=("loss", "gradient"),
                check=lambda got, inp: (got[0], got[1][inp["rows"]]), target=("torch", 1.2))


def cross_entropy_probe():
    rng = rng_for(1)
    x, t = rng.standard_normal((512, 32000)).astype(np.float32), rng.integers(0, 32000, 512)
    return lambda: ops.cross_entropy_forward(x, t)


CROSS_ENTROPY = Bench(
    "cross_entropy", "fused cross-entropy forward+backward against PyTorch and NumPy",
    "dlkern cross-entropy benchmark", ("shape NxC",),
    lambda args: [cross_entropy_case(*s) for s in pick(args, [(4096, 32000)], [(256, 4000)])],
    extra_arguments=shapes_arg("NxC", "4096x32000"), probe=cross_entropy_probe, repeats=5,
    method=["- **method**: float32 standard-normal logits, int64 targets, reduction='mean'; one step = loss + "
            "d loss / d logits. dlkern: `cross_entropy_forward` + `cross_entropy_backward` (gradient allocated "
            "fresh, or into a preallocated `out=`); PyTorch: `F.cross_entropy(x, t).backward()` on a leaf "
            "sharing the NumPy buffer; NumPy: the float32 reference (log-softmax, NLL, softmax - one-hot).",
            "- **GB/s** = 3 x N x C x 4 bytes (logits read by forward and backward, gradient written) / time."])


# ----------------------------------------------------------------------------- GELU

_C, _K = float(np.sqrt(2 / np.pi)), 0.044715


def numpy_gelu(x, g=None):
    """The in-place float32 passes a NumPy user would write (backward when g is given)."""
    t = x * x
    t *= _K * _C
    t += _C
    t *= x
    np.tanh(t, out=t)
    if g is None:
        t += 1
        t *= x
        t *= 0.5
        return t
    u = x * x
    u *= 1.5 * _K * _C
    u += 0.5 * _C
    s = t * t
    s -= 1
    s *= x
    s *= u
    t *= 0.5
    t += 0.5
    t -= s
    t *= g
    return t


def gelu_case(op: str, rows: int, cols: int) -> Case:
    forward = op == "forward"

    def make():
        rng = rng_for(rows, cols)
        return dict(x=(rng.standard_normal((rows, cols)) * 3).astype(np.float32),
                    g=rng.standard_normal((rows, cols)).astype(np.float32))

    def expected(inp):
        x, g = f64(inp["x"], inp["g"])
        return (_reference("gelu_tanh")(x) if forward else _reference("gelu_tanh_backward")(g, x),)

    def torch_gelu(inp, torch):
        tx, tg = torch.from_numpy(inp["x"]), torch.from_numpy(inp["g"])
        if forward:
            return lambda: torch.nn.functional.gelu(tx, approximate="tanh")
        return lambda: torch.ops.aten.gelu_backward(tg, tx, approximate="tanh")

    # Relative to |x| + 1: the 0.5 x (1 + tanh) form (PyTorch's, NumPy's) cancels for negative x.
    return Case((op, f"{rows}x{cols}"), make, {
        "dlkern": lambda inp, torch: ((lambda: ops.gelu_tanh(inp["x"])) if forward
                                      else (lambda: ops.gelu_tanh_backward(inp["g"], inp["x"]))),
        "torch": torch_gelu,
        "numpy": lambda inp, torch: lambda: numpy_gelu(inp["x"], None if forward else inp["g"]),
    }, expected, (2 if forward else 3) * rows * cols * 4.0, tol=1e-5,
        compare=lambda got, want, inp, i: float((np.abs(got - want) / (np.abs(inp["x"]) + 1)).max()))


GELU = Bench(
    "gelu", "fused tanh-approximation GELU, forward and backward, against PyTorch and NumPy",
    "dlkern GELU (tanh approximation) benchmark", ("op", "shape"),
    lambda args: [gelu_case(op, *s) for s in pick(args, [(2048, 768), (16384, 3072)], [(256, 768)])
                  for op in ("forward", "backward")],
    extra_arguments=shapes_arg("ROWSxCOLS", "2048x768,16384x3072"),
    method=["- **method**: float32, standard-normal * 3 input, fresh outputs (as in training). PyTorch: "
            "`F.gelu(x, approximate='tanh')` and `aten.gelu_backward`; NumPy: in-place float32 passes. GB/s "
            "counts x in, y out (forward) and grad, x in, dx out (backward)."])
