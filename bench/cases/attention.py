"""``python -m dlkern bench attention``: dlkern's tiled attention beside PyTorch's
``scaled_dot_product_attention``: self-attention forward and forward+backward (GFLOP/s)
and the KV-cache decode step (GB/s of K and V read)."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench.harness import Bench, Case, f64, parse_list, rng_for


SDPA_SHAPES, QUICK_SDPA = [(8, 12, 512, 64), (1, 12, 2048, 64)], [(1, 2, 80, 16)]
DECODE_CASES = [(b, 12, hkv, length) for length in (1024, 4096) for hkv in (12, 4) for b in (1, 2, 4, 8)]
QUICK_DECODE = [(1, 4, 2, 100)]


def attention_check(got, inp):
    """The first batch entry and kv-head group (the float64 oracle is computed on it; the
    slices keep the batch axis, as dlkern.reference takes (B, H, T, D))."""
    g = inp["g"]
    return tuple(a[:1, :g] if i in (0, 1) else a[:1, :1] for i, a in enumerate(got))


def sdpa_case(shape, causal: bool, backward: bool) -> Case:
    b, h, t, d = shape

    def make():
        rng = rng_for(*shape)
        return dict(zip("qkvo", (rng.standard_normal(shape).astype(np.float32) for _ in range(4))), g=1)

    def expected(inp):
        q, k, v, go = f64(*(inp[key][:1, :1] for key in "qkvo"))
        out, lse = reference.attention_forward(q, k, v, is_causal=causal)
        return (out,) + (reference.attention_backward(go, q, k, v, out, lse, is_causal=causal) if backward else ())

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
    label = f"sdpa {'causal' if causal else 'full'} {'fwd+bwd' if backward else 'fwd'}"
    return Case((label, "x".join(map(str, shape))),
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
    }, lambda inp: (reference.decode_attention(*f64(inp["q"][:1, :inp["g"]], inp["k"][:1, :1], inp["v"][:1, :1]),
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


BENCH = Bench(
    "attention", "tiled attention (SDPA fwd/bwd, KV-cache decode) against PyTorch SDPA",
    "dlkern attention benchmark", ("case", "shape"), attention_cases, probe=attention_probe, repeats=5,
    quick_repeats=2, extra_arguments=lambda p: p.add_argument("--only", default="sdpa,decode",
                                                              help="groups to run: sdpa, decode (default both)"),
    method=["- **method**: float32, standard-normal inputs; checked against float64 attention on the first batch "
            "entry and kv-head group. PyTorch: `F.scaled_dot_product_attention` (fwd under no_grad; fwd+bwd via "
            "`out.backward(g)`); decode: `SDPA(q, k[:, :, :L], v[:, :, :L], enable_gqa=True)` on a cache of "
            "capacity L + 64. SDPA GFLOP/s counts 4*B*H*Tq*Tk*D (halved when causal, 2.5x for fwd+bwd); decode "
            "GB/s = bytes of K and V read / time (MACHINE.md: DRAM reads 26 GB/s at 1 thread, 33 at 2)."])
