"""``python -m dlkern bench matmul``: dlkern's matmul beside NumPy and PyTorch, one row per
shape. Every library writes into its own preallocated output (a fresh output over ~32 MiB
would add page faults to every call, see MACHINE.md); results are checked against a
float64 product in units of |A|@|B| before timing."""

from __future__ import annotations

import argparse
import os

import numpy as np

from dlkern import ops, reference
from dlkern.bench.harness import LABELS, Bench, Case, f64, matmul_probe, pick, rng_for, sampled_rows


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

    def product(a, b, inp):  # the checked rows and columns of a @ b, as sample() lays them out
        matmul = reference.matmul
        return np.concatenate([matmul(a[inp["rows"]], b).ravel(), matmul(a, b[:, inp["cols"]]).ravel()])

    def expected(inp):
        a, b = f64(inp["a"], inp["b"])
        # Rounding of a K-term dot product grows like sqrt(K) eps relative to sum |a_ik b_kj|.
        inp["magnitude"] = product(abs(a), abs(b), inp)
        return (product(a, b, inp),)

    def compare(got, want, inp, index):
        return float((np.abs(got - want) / np.maximum(inp["magnitude"], 1e-300)).max(initial=0.0))

    def preallocated(call):
        def make_call(inp, torch):
            out = np.empty((m, n), dtype)
            return lambda: call(inp["a"], inp["b"], out)
        return make_call

    def torch_mm(inp, torch):
        ta, tb = torch.from_numpy(inp["a"]), torch.from_numpy(inp["b"])  # the very same buffers
        out = torch.empty((m, n), dtype=ta.dtype)
        # torch.mm is the 2-D path torch.matmul ends in, minus its dispatch overhead.
        return lambda: torch.mm(ta, tb, out=out)

    return Case((f"{m}x{k}x{n}", note or "-"), make, {
        "dlkern": preallocated(lambda a, b, out: ops.matmul(a, b, out=out)),
        "numpy": preallocated(lambda a, b, out: np.matmul(a, b, out=out)),
        "torch": torch_mm,
    }, expected, 2.0 * m * k * n, tol=8 * np.sqrt(k) * float(np.finfo(dtype).eps), compare=compare,
        check=lambda got, inp: (sample(got[0], inp),))


# ---- 16-bit operands (issue 16) -------------------------------------------------------
# --dtype bf16 / fp16: dlkern's 16-bit matmul (float32 accumulation, one rounding to the
# input dtype) beside PyTorch's torch.mm on the same dtype and dlkern's own float32 matmul
# of the same values. NumPy is left out (its float16 matmul has no BLAS: ~100x slower).
LOWP_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}
# Keyed under "numpy_" only so the harness runs it with the default peers (wanted():
# "<peer>_..." rows follow --peers); the report labels it as what it is.
F32_LIB = "numpy_f32"
LOWP_LABELS = {F32_LIB: "dlkern float32"}


class _AsFloat32:
    """A 16-bit torch tensor handed to the harness's check as float32 (NumPy has no
    bfloat16 view of it); made once per case, so the timed call only returns it."""

    def __init__(self, tensor):
        self.tensor = tensor

    def numpy(self):
        return self.tensor.float().numpy()


def lowp_matmul_case(m: int, k: int, n: int, note: str, dtype) -> Case:
    import ml_dtypes

    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)

    def make():
        rng = rng_for(0, m, k, n)
        a = rng.uniform(-1.0, 1.0, (m, k)).astype(np.float32).astype(np_dtype)
        b = rng.uniform(-1.0, 1.0, (k, n)).astype(np.float32).astype(np_dtype)
        full = m * k * n <= FULL_CHECK_LIMIT
        return dict(a=a, b=b, a32=a.astype(np.float32), b32=b.astype(np.float32),
                    rows=slice(None) if full else sampled_rows(rng, m, 24),
                    cols=slice(0) if full else sampled_rows(rng, n, 24))

    base = matmul_case(m, k, n, note)  # the float64 reference of the (16-bit) inputs and its check

    def dlkern_mm(inp, torch):
        out = np.empty((m, n), np_dtype)
        return lambda: ops.matmul(inp["a"], inp["b"], out=out)

    def f32_mm(inp, torch):
        out = np.empty((m, n), np.float32)
        return lambda: ops.matmul(inp["a32"], inp["b32"], out=out)

    def torch_mm(inp, torch):
        tdt = getattr(torch, dtype)
        ta, tb = torch.from_numpy(inp["a32"]).to(tdt), torch.from_numpy(inp["b32"]).to(tdt)
        out = torch.empty((m, n), dtype=tdt)
        view = _AsFloat32(out)
        return lambda: (torch.mm(ta, tb, out=out), view)[1]

    # Error bound in units of |A|@|B|: float32 accumulation over k exact products (plus a
    # few depth-block merges), then the one rounding to 8 (bf16) or 11 (fp16) bits.
    s = k + (k + 767) // 768 + 2
    tol = s * 2.0**-24 / (1 - s * 2.0**-24) + (2.0**-8 if dtype == "bfloat16" else 2.0**-11)
    return Case(base.cells, make, {"dlkern": dlkern_mm, "torch": torch_mm, F32_LIB: f32_mm}, base.expected,
                base.work, tol=tol, compare=base.compare, check=base.check)


def matmul_cases(args):
    shapes = pick(args, MATMUL_SHAPES, MATMUL_QUICK)
    if args.dtype in LOWP_DTYPES:
        return [lowp_matmul_case(*s, dtype=LOWP_DTYPES[args.dtype]) for s in shapes]
    return [matmul_case(*s, dtype=np.dtype(args.dtype)) for s in shapes]


def matmul_peak(args, threads):
    """bf16 runs vdpbf16ps (twice the float32 FMA rate), fp16 the float32 micro-kernel."""
    if LOWP_DTYPES.get(args.dtype) == "bfloat16":
        return 2 * args.peak * threads
    if LOWP_DTYPES.get(args.dtype) == "float16":
        return args.peak * threads
    return args.peak * threads * 4 / np.dtype(args.dtype).itemsize
# ---- end 16-bit


def matmul_arguments(parser):
    parser.add_argument("--shapes", type=lambda t: [parse_matmul_shape(p) for p in t.split(",") if p.strip()],
                        default=None, help="N (square) or MxKxN, comma separated (default: the standard set)")
    parser.add_argument("--dtype", choices=("float32", "float64", *LOWP_DTYPES), default="float32",
                        help="bf16/fp16: 16-bit operands against torch on that dtype and dlkern float32")
    parser.add_argument("--peak", type=float, default=PEAK_GFLOPS_PER_CORE_F32,
                        help="float32 peak GFLOP/s per core (float64: half); default from MACHINE.md")


BENCH = Bench(
    "matmul", "matrix product (A @ B) against NumPy and PyTorch", "dlkern matmul benchmark",
    ("shape MxKxN", "what"),
    matmul_cases, unit="GFLOP/s", extra_arguments=matmul_arguments, probe=matmul_probe, chart=True,
    peak=matmul_peak, labels={**LABELS, **LOWP_LABELS},
    method=["- **method**: every library writes into its own preallocated output (a fresh output over ~32 MiB "
            "adds page faults to every call); PyTorch is `torch.mm(a, b, out=)` on the same buffers. Checked "
            "against a float64 product (sampled full rows and columns above 2^24 multiply-adds) in units of "
            "|A|@|B|."],
    footer=[] if "OPENBLAS_CORETYPE" in os.environ else [
        "NumPy ran OpenBLAS's own choice of kernels; MACHINE.md: `OPENBLAS_CORETYPE=Haswell` is about 5% faster at "
        "1 thread on this CPU (rerun with it set and another `--out` to report both).", ""])
