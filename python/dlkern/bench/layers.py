"""The layer kernels' benchmarks as rows: ``python -m dlkern bench norm | conv | pool |
attention`` (the row format is in :mod:`dlkern.bench.harness`).

Forward+backward rows chain the ``*_forward`` and ``*_backward`` kernels; the same
chain runs on ``dlkern.ops``, on the NumPy references in float32 (the NumPy peer) and
in float64 (the oracle), since the references share the kernels' signatures.
"""

from __future__ import annotations

import numpy as np

from dlkern import ops

from .harness import Bench, Case, _reference, f64, parse_list
from .kernels import rng_for, square_matmul_probe

EPS32 = float(np.finfo(np.float32).eps)
REFERENCE = object()  # stands for "the reference module" where a chain takes dlkern.ops


def kernel(module, name):
    return _reference(name) if module is REFERENCE else getattr(module, name)


def leaves(torch, *arrays):
    """Fresh leaf tensors that need gradients (no accumulation into .grad across calls)."""
    return [torch.from_numpy(a).detach().requires_grad_() for a in arrays]


# ----------------------------------------------------------------------------- normalisation

NORM_OPS = ("layer_norm", "rms_norm", "group_norm", "batch_norm")
GROUPS = 32


def norm_chain(module, op: str, x, w, b, dy, backward: bool):
    """(y,) or (y, dx, dweight) of one op through ``module`` (dlkern.ops or REFERENCE)."""
    size = {"layer_norm": (x.shape[-1],), "rms_norm": (x.shape[-1],), "group_norm": (GROUPS,), "batch_norm": ()}[op]
    c = w.shape[0]
    args = {"layer_norm": (x, *size, w, b), "rms_norm": (x, *size, w), "group_norm": (x, *size, w, b),
            "batch_norm": (x, np.zeros(c, x.dtype), np.ones(c, x.dtype), w, b, True)}[op]
    y, *stats = kernel(module, op + "_forward")(*args)
    if not backward:
        return (y,)
    extra = (True,) if op == "batch_norm" else ()
    return (y,) + tuple(kernel(module, op + "_backward")(dy, x, *size, w, *stats, *extra)[:2])


def norm_case(op: str, shape: tuple, backward: bool) -> Case:
    def make():
        rng = rng_for(7, *shape)
        c = shape[-1] if op in ("layer_norm", "rms_norm") else shape[1]
        return dict(x=rng.standard_normal(shape, dtype=np.float32) + np.float32(0.5),
                    w=(1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32),
                    b=(0.1 * rng.standard_normal(c)).astype(np.float32), dy=rng.standard_normal(shape, dtype=np.float32))

    def args(inp, cast=lambda *a: a):
        return cast(inp["x"], inp["w"], inp["b"], inp["dy"])

    def torch_call(inp, torch):
        F = torch.nn.functional
        c = inp["w"].shape[0]
        f = {"layer_norm": lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b),
             "rms_norm": lambda x, w, b: F.rms_norm(x, x.shape[-1:], w),
             "group_norm": lambda x, w, b: F.group_norm(x, GROUPS, w, b),
             "batch_norm": lambda x, w, b: F.batch_norm(x, torch.zeros(c), torch.ones(c), w, b, training=True)}[op]
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in args(inp))
        if not backward:
            def forward():
                with torch.no_grad():
                    return (f(tx, tw, tb),)
            return forward

        def forward_backward():
            x, w, b = leaves(torch, *args(inp)[:3])
            y = f(x, w, b)
            y.backward(tdy)
            return y.detach(), x.grad, w.grad
        return forward_backward

    return Case((op, "x".join(map(str, shape)), "fwd+bwd" if backward else "fwd"), make, {
        "dlkern": lambda inp, torch: lambda: norm_chain(ops, op, *args(inp), backward),
        "torch": torch_call,
        "numpy": lambda inp, torch: lambda: norm_chain(REFERENCE, op, *args(inp), backward),
    }, lambda inp: norm_chain(REFERENCE, op, *args(inp, f64), backward), (5 if backward else 2) * 4.0 * np.prod(shape),
        tol=2e-4, compare=lambda got, want, inp, i: float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)),
        outputs=("y", "dx", "dweight"), target=("torch", 1.2) if op in ("layer_norm", "rms_norm") else None)


def norm_cases(args):
    rows = [(256, 1024)] if args.quick else [(4096, 1024), (32768, 768)]
    conv = (4, 64, 28, 28) if args.quick else (32, 64, 56, 56)
    unknown = [op for op in args.ops if op not in NORM_OPS]
    if unknown:
        raise SystemExit(f"error: unknown op(s) {unknown}")
    return [norm_case(op, shape, backward) for op in NORM_OPS if op in args.ops
            for shape in (rows if op in ("layer_norm", "rms_norm") else [conv]) for backward in (False, True)]


NORM = Bench(
    "norm", "layer/rms/group/batch norm, forward and forward+backward, against PyTorch and NumPy",
    "dlkern normalisation benchmark", ("op", "shape", "pass"), norm_cases, probe=square_matmul_probe,
    quick_repeats=2, extra_arguments=lambda p: p.add_argument(
        "--ops", type=parse_list, default=list(NORM_OPS), help="ops to run, comma separated (default all four)"),
    method=["- **method**: float32; every call allocates its outputs, as the public APIs do. PyTorch fwd+bwd is "
            "autograd; dlkern is *_forward + *_backward; NumPy is the reference in float32. group_norm uses "
            f"{GROUPS} groups; batch_norm is training mode.",
            "- **GB/s** = compulsory bytes / time: forward 2 x |x| (read x, write y), forward+backward 5 x |x| "
            "(+ read dy, x, write dx)."])


# ----------------------------------------------------------------------------- conv2d

CONV_SHAPES = [  # name, N, C, H=W, O, k, stride, padding, target vs PyTorch (forward+backward only: "fb")
    ("LeNet conv1", 64, 1, 28, 6, 5, 1, 0, ("fb", 2.0)),
    ("ResNet 3x3", 32, 64, 56, 64, 3, 1, 1, ("both", 1.0)),
    ("ResNet 3x3 s2", 32, 128, 28, 128, 3, 2, 1, ("both", 1.0)),
]


def conv_case(name, n, c, hw, o, k, s, p, target, backward: bool) -> Case:
    ho = (hw + 2 * p - k) // s + 1

    def make():
        rng = rng_for(n, c, hw, o, k)
        shapes = dict(x=(n, c, hw, hw), w=(o, c, k, k), b=(o,), gy=(n, o, ho, ho))
        return {key: rng.uniform(-1, 1, shape).astype(np.float32) for key, shape in shapes.items()}

    def chain(module, x, w, b, gy):
        y = (kernel(module, "conv2d")(x, w, b, s, p),)
        return y + tuple(kernel(module, "conv2d_backward")(gy, x, w, s, p)) if backward else y

    def expected(inp):
        x, w, b, gy = f64(inp["x"], inp["w"], inp["b"], inp["gy"])
        # Each output's rounding scale: its terms' size (the same sums over |inputs|) x sqrt(K) eps.
        inp["scale"] = [m * 8 * np.sqrt(terms) * EPS32 for m, terms in zip(
            chain(REFERENCE, abs(x), abs(w), abs(b), abs(gy)), (c * k * k + 1, o * k * k, n * ho * ho, n * ho * ho))]
        return chain(REFERENCE, x, w, b, gy)

    def torch_call(inp, torch):
        F = torch.nn.functional
        tx, tw, tb, tgy = (torch.from_numpy(inp[key]) for key in ("x", "w", "b", "gy"))
        if not backward:
            def forward():
                with torch.no_grad():
                    return F.conv2d(tx, tw, tb, s, p)
            return forward

        def both():
            x, w, b = leaves(torch, inp["x"], inp["w"], inp["b"])
            y = F.conv2d(x, w, b, s, p)
            y.backward(tgy)
            return y.detach(), x.grad, w.grad, b.grad
        return both

    label = f"N{n} C{c} {hw}x{hw}, {o}x{k}x{k}" + (f" s{s}" if s != 1 else "") + (f" p{p}" if p else "")
    keys = ("x", "w", "b", "gy")
    return Case((f"{name} ({label})", "forward+backward" if backward else "forward"), make, {
        "dlkern": lambda inp, torch: lambda: chain(ops, *(inp[key] for key in keys)),
        "torch": torch_call,
        "numpy": lambda inp, torch: lambda: chain(REFERENCE, *(inp[key] for key in keys)),
    }, expected, 2.0 * n * o * ho * ho * c * k * k * (3 if backward else 1), tol=1.0,
        compare=lambda got, want, inp, i: float((np.abs(got - want) / np.maximum(inp["scale"][i], 1e-30)).max()),
        target=("torch", target[1]) if backward or target[0] == "both" else None)


def conv_cases(args):
    shapes = CONV_SHAPES[:1] if args.quick else CONV_SHAPES
    wanted = parse_list(args.shapes or "")
    if wanted:
        shapes = [sh for sh in shapes if any(w in sh[0].lower() for w in wanted)]
        if not shapes:
            raise SystemExit(f"--shapes {args.shapes!r} matches none of: " + ", ".join(sh[0] for sh in CONV_SHAPES))
    if args.no_numpy and "numpy" in args.peers:
        args.peers.remove("numpy")
    return [conv_case(*shape, backward) for shape in shapes for backward in (False, True)]


def conv_arguments(parser):
    parser.add_argument("--no-numpy", action="store_true", help="leave out the (slow) NumPy reference")
    parser.add_argument("--shapes", default="", help="only shapes whose name contains one of these comma-separated "
                                                     "strings (case-insensitive), e.g. 's2' or 'ResNet 3x3 s2,LeNet'")


def conv_probe():
    x = rng_for(1).uniform(-1, 1, (8, 64, 56, 56)).astype(np.float32)
    w = rng_for(2).uniform(-1, 1, (64, 64, 3, 3)).astype(np.float32)
    return lambda: ops.conv2d(x, w, padding=1)


CONV = Bench(
    "conv", "conv2d forward and forward+backward against PyTorch and NumPy im2col",
    "dlkern conv2d benchmark", ("shape", "pass"), conv_cases, unit="GFLOP/s", probe=conv_probe, repeats=5,
    quick_repeats=2, extra_arguments=conv_arguments, labels={"dlkern": "dlkern", "torch": "PyTorch",
                                                             "numpy": "NumPy im2col"},
    method=["- **method**: float32 NCHW; each call allocates its outputs; forward+backward = y, then dx, dweight, "
            "dbias (PyTorch: autograd with x, weight, bias requiring grad). Checked against float64 im2col in "
            "units of each output's terms' size. FLOPs: forward 2*N*O*Ho*Wo*C*kH*kW, forward+backward 3x."])


# ----------------------------------------------------------------------------- pooling

POOL_CASES = [(op, k, p) for op in ("max", "avg") for k, p in ((2, 0), (3, 1))]


def pool_case(op: str, k: int, p: int, mode: str, shape: tuple) -> Case:
    s, backward = 2, mode == "fwd+bwd"
    n, c, h, w = shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def make():
        x = rng_for(0, *shape).uniform(-1.0, 1.0, shape).astype(np.float32)
        return dict(x=x, g=rng_for(1, *shape).uniform(-1.0, 1.0, (n, c, oh, ow)).astype(np.float32))

    def chain(module, x, g):
        if not backward:
            return kernel(module, f"{op}_pool2d")(x, k, s, p)
        if op == "max":
            _, idx = kernel(module, "max_pool2d")(x, k, s, p, return_indices=True)
            return kernel(module, "max_pool2d_backward")(g, idx, x.shape)
        kernel(module, "avg_pool2d")(x, k, s, p)
        return kernel(module, "avg_pool2d_backward")(g, x.shape, k, s, p)

    def torch_call(layout):
        def make_call(inp, torch):
            pool = getattr(torch.nn.functional, f"{op}_pool2d")
            fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
            tx, tg = (torch.from_numpy(inp[key]).contiguous(memory_format=fmt) for key in ("x", "g"))
            if not backward:
                def forward():
                    with torch.no_grad():
                        return pool(tx, k, s, p)
                return forward
            leaf = tx.detach().clone().requires_grad_()

            def both():
                leaf.grad = None
                pool(leaf, k, s, p).backward(tg)
                return leaf.grad
            return both
        return make_call

    traffic = n * c * (h * w + oh * ow) * 4 * (2 if backward else 1) + (16 * n * c * oh * ow if backward and op == "max"
                                                                        else 0)
    return Case((f"{op} {k}x{k} s{s}" + (f" p{p}" if p else ""), mode), make, {
        "dlkern": lambda inp, torch: lambda: chain(ops, inp["x"], inp["g"]),
        "torch_cl": torch_call("cl"), "torch": torch_call("nchw"),
        "numpy": lambda inp, torch: lambda: chain(REFERENCE, inp["x"], inp["g"]),
    }, lambda inp: (chain(REFERENCE, *f64(inp["x"], inp["g"])),), traffic, tol=1e-5,
        compare=lambda got, want, inp, i: float(np.abs(got - want).max()),
        target=("torch", 3.0) if backward else ("torch_cl", 1.0))


def pool_cases(args):
    shape = (2, 4, 20, 20) if args.quick else tuple(int(v) for v in args.shape.split(","))
    if len(shape) != 4 or min(shape) < 1:
        raise SystemExit("error: --shape needs N,C,H,W >= 1")
    return [pool_case(op, k, p, mode, shape) for mode in ("fwd", "fwd+bwd") for op, k, p in POOL_CASES]


def pool_probe():
    x = rng_for(0).uniform(-1.0, 1.0, (32, 64, 56, 56)).astype(np.float32)
    return lambda: ops.max_pool2d(x, 3, 2, 1)


POOL = Bench(
    "pool", "max/avg pooling forward and forward+backward against PyTorch and NumPy",
    "dlkern pooling benchmark", ("case", "mode"), pool_cases, probe=pool_probe, repeats=5, quick_repeats=1,
    chart=True, extra_arguments=lambda p: p.add_argument("--shape", default="32,64,56,56",
                                                         help="N,C,H,W (default 32,64,56,56)"),
    labels={"dlkern": "dlkern", "torch_cl": "PyTorch channels_last", "torch": "PyTorch NCHW", "numpy": "NumPy"},
    method=["- **method**: float32; dlkern reads NCHW; 'PyTorch channels_last' runs on a channels_last copy, "
            "'PyTorch NCHW' on x itself (fwd under no_grad, fwd+bwd autograd); NumPy is the strided-slice "
            "reference. Every library allocates its outputs on every call.",
            "- **GB/s** = minimum traffic / time: fwd reads x and writes y; fwd+bwd adds reading grad_out and "
            "writing dx, and for max writing and reading the int64 indices. Targets: fwd >= 1.0x PyTorch "
            "channels_last; fwd+bwd >= 3x PyTorch NCHW."])


# ----------------------------------------------------------------------------- attention

SDPA_SHAPES, QUICK_SDPA = [(8, 12, 512, 64), (1, 12, 2048, 64)], [(1, 2, 80, 16)]
DECODE_CASES = [(b, 12, hkv, length) for length in (1024, 4096) for hkv in (12, 4) for b in (1, 2, 4, 8)]
QUICK_DECODE = [(1, 4, 2, 100)]


def attention_check(got, inp):
    """The first batch entry and kv-head group (the float64 oracle is computed on it)."""
    g = inp["g"]
    return tuple(a[0, :g] if i in (0, 1) else a[0, :1] for i, a in enumerate(got))


def sdpa_case(shape, causal: bool, backward: bool) -> Case:
    b, h, t, d = shape

    def make():
        rng = rng_for(*shape)
        return dict(zip("qkvo", (rng.standard_normal(shape).astype(np.float32) for _ in range(4))), g=1)

    def expected(inp):
        q, k, v, go = f64(*(inp[key][0, :1] for key in "qkvo"))
        out, probabilities = _reference("attention_forward")(q, k, v, causal)
        return (out,) + (_reference("attention_backward")(go, q, k, v, out, probabilities, causal) if backward else ())

    def dlkern_call(inp, torch):
        def run():
            out, lse = ops.attention_forward(*(inp[key] for key in "qkv"), is_causal=causal)
            return (out,) + (tuple(ops.attention_backward(inp["o"], *(inp[key] for key in "qkv"), out, lse,
                                                          is_causal=causal)) if backward else ())
        return run

    def torch_call(inp, torch):
        sdpa = torch.nn.functional.scaled_dot_product_attention
        tq, tk, tv = (torch.from_numpy(inp[key].copy()).requires_grad_(backward) for key in "qkv")
        tgo = torch.from_numpy(inp["o"])

        def run():
            if not backward:
                with torch.no_grad():
                    return sdpa(tq, tk, tv, is_causal=causal)
            for leaf in (tq, tk, tv):
                leaf.grad = None
            out = sdpa(tq, tk, tv, is_causal=causal)
            out.backward(tgo)
            return out, tq.grad, tk.grad, tv.grad
        return run

    flops = 4.0 * b * h * t * t * d / (2 if causal else 1) * (2.5 if backward else 1)
    return Case((f"sdpa {'causal' if causal else 'full'} {'fwd+bwd' if backward else 'fwd'}", "x".join(map(str, shape))),
                make, {"dlkern": dlkern_call, "torch": torch_call}, expected, flops, tol=2e-4,
                check=attention_check, outputs=("out", "dq", "dk", "dv"), target=("torch", 1.2),
                section="SDPA (self-attention, T x T)", unit="GFLOP/s")


def decode_case(b, hq, hkv, length) -> Case:
    d, capacity = 64, length + 64

    def make():
        rng = rng_for(b, hq, hkv, length)
        kc, vc = (rng.standard_normal((b, hkv, capacity, d)).astype(np.float32) for _ in range(2))
        return dict(k=kc, v=vc, q=rng.standard_normal((b, hq, 1, d)).astype(np.float32), g=hq // hkv)

    def torch_call(inp, torch):
        tq, tk, tv = (torch.from_numpy(inp[key]) for key in "qkv")

        def run():
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(
                    tq, tk[:, :, :length], tv[:, :, :length], enable_gqa=hq != hkv)
        return run

    return Case(("decode", f"B{b} Hq{hq}/Hkv{hkv} L{length}"), make, {
        "dlkern": lambda inp, torch: lambda: ops.decode_attention(inp["q"], inp["k"], inp["v"], length),
        "torch": torch_call,
    }, lambda inp: (_reference("decode_attention")(*f64(inp["q"][0, :inp["g"]], inp["k"][0, :1], inp["v"][0, :1]),
                                                   length),),
        2.0 * b * hkv * length * d * 4, tol=2e-4, check=attention_check, outputs=("out",), target=("torch", 1.5),
        section="Decode step (1 query token, KV cache)", unit="GB/s")


def attention_cases(args):
    groups = set(parse_list(args.only))
    cases = [sdpa_case(shape, causal, backward) for shape in (QUICK_SDPA if args.quick else SDPA_SHAPES)
             for causal in (False, True) for backward in (False, True)] if "sdpa" in groups else []
    return cases + ([decode_case(*c) for c in (QUICK_DECODE if args.quick else DECODE_CASES)]
                    if "decode" in groups else [])


def attention_probe():
    q, k, v = (rng_for(i).standard_normal((2, 4, 256, 64)).astype(np.float32) for i in range(3))
    return lambda: ops.attention_forward(q, k, v)


ATTENTION = Bench(
    "attention", "tiled attention (SDPA fwd/bwd, KV-cache decode) against PyTorch SDPA",
    "dlkern attention benchmark", ("case", "shape"), attention_cases, probe=attention_probe, repeats=5,
    quick_repeats=2, extra_arguments=lambda p: p.add_argument("--only", default="sdpa,decode",
                                                              help="groups to run: sdpa, decode (default both)"),
    method=["- **method**: float32, standard-normal inputs; checked against float64 attention on the first batch "
            "entry and kv-head group. PyTorch: `F.scaled_dot_product_attention` (fwd under no_grad; fwd+bwd via "
            "`out.backward(g)`); decode: `SDPA(q, k[:, :, :L], v[:, :, :L], enable_gqa=True)` on a cache of "
            "capacity L + 64. SDPA GFLOP/s counts 4*B*H*Tq*Tk*D (halved when causal, 2.5x for fwd+bwd); decode "
            "GB/s = bytes of K and V read / time (MACHINE.md: DRAM reads 26 GB/s at 1 thread, 33 at 2)."])
