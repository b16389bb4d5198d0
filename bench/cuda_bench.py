"""Times dlkern's CUDA kernels beside PyTorch CUDA (when torch is importable) and writes
a Markdown table. Each op is checked against PyTorch (or NumPy) before it is timed:
warm-up, then the median of repeats, each timed from synchronize to synchronize.

    python bench/cuda_bench.py --out results.md [--repeats 20]
"""
import argparse
import statistics
import time

import numpy as np

import dlkern._C_cuda as C

try:
    import torch
    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None


def median_seconds(fn, sync, repeats, inner=10):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def cases():
    """(name, bytes moved, dlkern fn of device arrays, torch fn of tensors, numpy reference, inputs)"""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((4096, 4096)).astype(np.float32)
    row = rng.standard_normal(4096).astype(np.float32)
    logits = rng.standard_normal((8192, 1024)).astype(np.float32)
    w = rng.standard_normal(1024).astype(np.float32)
    b = rng.standard_normal(1024).astype(np.float32)
    f = 4
    yield ("add (4096x4096 + row)", 2 * big.size * f, C.add, torch and torch.add, np.add, (big, row))
    yield ("exp (4096x4096)", 2 * big.size * f, C.exp, torch and torch.exp, np.exp, (big,))
    yield ("sum axis=-1 (4096x4096)", big.size * f, lambda x: C.sum(x, axis=-1),
           torch and (lambda x: torch.sum(x, dim=-1)), lambda x: x.sum(-1, dtype=np.float64), (big,))
    yield ("softmax (8192x1024)", 2 * logits.size * f, lambda x: C.softmax(x, -1),
           torch and (lambda x: torch.softmax(x, -1)), None, (logits,))
    yield ("layer_norm (8192x1024)", 2 * logits.size * f,
           lambda x, w, b: C.layer_norm_forward(x, (1024,), w, b, 1e-5)[0],
           torch and (lambda x, w, b: torch.nn.functional.layer_norm(x, (1024,), w, b, 1e-5)), None,
           (logits, w, b))
    # fused cross-entropy over a vocabulary-sized row
    vocab = rng.standard_normal((2048, 32000)).astype(np.float32)
    labels = rng.integers(0, 32000, 2048).astype(np.int64)
    yield ("cross_entropy fwd (2048x32000)", vocab.size * f, lambda x, t: C.cross_entropy_forward(x, t)[0],
           torch and (lambda x, t: torch.nn.functional.cross_entropy(x, t)), None, (vocab, labels))
    yield ("cross_entropy fwd+bwd (2048x32000)", 2 * vocab.size * f,
           lambda x, t: C.cross_entropy_backward(1.0, x, t, C.cross_entropy_forward(x, t)[1]),
           torch and (lambda x, t: torch.func.grad(lambda y: torch.nn.functional.cross_entropy(y, t))(x)), None,
           (vocab, labels))
    # rotary embedding of (heads, T, D)
    qk = rng.standard_normal((32, 4096, 128)).astype(np.float32)
    yield ("rope (32x4096x128)", 2 * qk.size * f, lambda x: C.rope(x, 0, 10000.0), None, rope_numpy, (qk,))
    # one decode step: 32 query heads sharing 8 KV heads, 8192 cached positions
    q = rng.standard_normal((1, 32, 1, 128)).astype(np.float32)
    kc = rng.standard_normal((1, 8, 8192, 128)).astype(np.float32)
    vc = rng.standard_normal((1, 8, 8192, 128)).astype(np.float32)
    yield ("decode_attention GQA 32/8 heads, 8192 keys (torch: SDPA on K/V repeated per call)",
           (kc.size + vc.size) * f, lambda q, k, v: C.decode_attention(q, k, v, 8192),
           torch and (lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
               q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1))), None, (q, kc, vc))


def rope_numpy(x, offset=0, base=10000.0):
    t_len, d = x.shape[-2], x.shape[-1]
    half = d // 2
    ang = (offset + np.arange(t_len)[:, None]) * base ** (-2.0 * np.arange(half) / d)
    c, s = np.cos(ang), np.sin(ang)
    lo, hi = x[..., :half].astype(np.float64), x[..., half:].astype(np.float64)
    return np.concatenate([lo * c - hi * s, hi * c + lo * s], axis=-1)


def gemm_cases():
    """(name, flops, a shape, b shape): square, batched (broadcast-free) and skinny products."""
    yield ("matmul 4096x4096x4096", 2 * 4096 ** 3, (4096, 4096), (4096, 4096))
    yield ("matmul 16x(512x512x512)", 16 * 2 * 512 ** 3, (16, 512, 512), (16, 512, 512))
    yield ("matmul 8192x1024 @ 1024x4096", 2 * 8192 * 1024 * 4096, (8192, 1024), (1024, 4096))


def gemm_rows(repeats):
    """GEMM with TF32 off and on, beside torch.matmul with allow_tf32 False/True. Each
    result is checked first against a float64 reference: relative Frobenius error under
    1e-5 in float32, 5e-3 with TF32."""
    rows = ["| product | tf32 | dlkern ms | dlkern TFLOP/s | torch ms | torch TFLOP/s |",
            "|---|---|---|---|---|---|"]
    failures = 0
    rng = np.random.default_rng(1)
    for name, flops, a_shape, b_shape in gemm_cases():
        a = rng.uniform(-1, 1, a_shape).astype(np.float32)
        b = rng.uniform(-1, 1, b_shape).astype(np.float32)
        da, db = C.from_numpy(a), C.from_numpy(b)
        if torch is not None:
            ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            want = torch.matmul(ta.double(), tb.double()).cpu().numpy()
        else:
            want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        for tf32 in (False, True):
            got = C.matmul(da, db, allow_tf32=tf32).numpy()
            err = np.linalg.norm(got - want) / np.linalg.norm(want)
            if err > (5e-3 if tf32 else 1e-5):
                print(f"MISMATCH {name} tf32={tf32}: relative error {err:.3g}")
                failures += 1
                continue
            t = median_seconds(lambda: C.matmul(da, db, allow_tf32=tf32), C.synchronize, repeats, inner=3)
            cells = [f"{t * 1e3:.3f}", f"{flops / t / 1e12:.1f}"]
            if torch is not None:
                old = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                try:
                    tt = median_seconds(lambda: torch.matmul(ta, tb), torch.cuda.synchronize, repeats, inner=3)
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = old
                cells += [f"{tt * 1e3:.3f}", f"{flops / tt / 1e12:.1f}"]
            else:
                cells += ["-", "-"]
            rows.append(f"| {name} | {'on' if tf32 else 'off'} | " + " | ".join(cells) + " |")
    return rows, failures


def attention_cases(repeats, rows):
    """Flash attention forward and forward+backward, float32, causal and full, beside
    torch's scaled_dot_product_attention on CUDA (TF32 off, so both run FP32 math). Each
    result (out; dq, dk, dv) is checked against torch first. Appends a section to rows;
    returns the number of mismatches."""
    rows += ["", "## Attention (float32; TFLOP/s counts the causal half only)", "",
             "| op | dlkern ms | dlkern TFLOP/s | torch ms | torch TFLOP/s |", "|---|---|---|---|---|"]
    failures = 0
    rng = np.random.default_rng(2)
    for (B, H, T, D) in ((8, 12, 512, 64), (1, 12, 2048, 64)):
        q, k, v, g = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
        dq_, dk_, dv_, dg = (C.from_numpy(a) for a in (q, k, v, g))
        if torch is not None:
            tq, tk, tv, tg = (torch.from_numpy(a).cuda() for a in (q, k, v, g))
        for causal in (False, True):
            fwd_flops = 4 * B * H * T * T * D * (0.5 if causal else 1.0)
            # forward + backward: 2 + 5 tile products of the same size (FlashAttention-2 count)
            for label, flops in (("fwd", fwd_flops), ("fwd+bwd", 3.5 * fwd_flops)):
                name = f"attention {label} (B,H,T,D)=({B},{H},{T},{D}) {'causal' if causal else 'full'}"

                def ours():
                    out, lse = C.attention_forward(dq_, dk_, dv_, is_causal=causal)
                    if label == "fwd":
                        return (out,)
                    return (out,) + tuple(C.attention_backward(dg, dq_, dk_, dv_, out, lse, is_causal=causal))

                def torch_fn():
                    with torch.enable_grad():
                        xs = [t.detach().requires_grad_(label != "fwd") for t in (tq, tk, tv)]
                        out = torch.nn.functional.scaled_dot_product_attention(*xs, is_causal=causal)
                        if label == "fwd":
                            return (out,)
                        return (out,) + torch.autograd.grad(out, xs, tg)
                theirs = torch_fn if torch is not None else None
                old = torch.backends.cuda.matmul.allow_tf32 if torch is not None else None
                if torch is not None:
                    torch.backends.cuda.matmul.allow_tf32 = False
                try:
                    got = [a.numpy() for a in ours()]
                    if theirs is not None:
                        want = [t.detach().cpu().numpy() for t in theirs()]
                    else:  # without torch: the CPU op as the reference
                        import dlkern.ops as ops
                        o, l = ops.attention_forward(q, k, v, is_causal=causal)
                        want = [o] if label == "fwd" else [o] + list(ops.attention_backward(g, q, k, v, o, l,
                                                                                              is_causal=causal))
                    bad = [i for i, (a, b) in enumerate(zip(got, want)) if not np.allclose(a, b, rtol=1e-3, atol=1e-3)]
                    if bad:
                        err = max(np.abs(got[i] - want[i]).max() for i in bad)
                        print(f"MISMATCH {name}: max error {err:.3g}")
                        failures += 1
                        continue
                    t = median_seconds(ours, C.synchronize, repeats, inner=3)
                    cells = [f"{t * 1e3:.3f}", f"{flops / t / 1e12:.1f}"]
                    if theirs is not None:
                        tt = median_seconds(theirs, torch.cuda.synchronize, repeats, inner=3)
                        cells += [f"{tt * 1e3:.3f}", f"{flops / tt / 1e12:.1f}"]
                    else:
                        cells += ["-", "-"]
                finally:
                    if torch is not None:
                        torch.backends.cuda.matmul.allow_tf32 = old
                rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not C.is_available():
        print("cuda_bench: no usable CUDA device (dlkern._C_cuda.is_available() is False)")
        return 1
    rows = ["| op | dlkern ms | dlkern GB/s | torch ms | torch GB/s |", "|---|---|---|---|---|"]
    failures = 0
    print("\n".join(rows), flush=True)
    for name, nbytes, ours, theirs, ref_fn, host in cases():
        try:
            row = case_row(name, nbytes, ours, theirs, ref_fn, host, args.repeats)
        except Exception as exc:  # a failing kernel must not hide the other measurements
            row = f"| {name} | ERROR: {type(exc).__name__}: {exc} | | | |"
            failures += 1
        if row is None:
            failures += 1
            continue
        rows.append(row)
        print(row, flush=True)
    for section in (lambda: gemm_section(args.repeats), lambda: attention_rows(args.repeats)):
        try:
            s_rows, s_failures = section()
        except Exception as exc:
            s_rows, s_failures = [f"ERROR: {type(exc).__name__}: {exc}"], 1
        failures += s_failures
        rows += [""] + s_rows
        print("\n".join(s_rows), flush=True)
    note = "" if torch is not None else "\ntorch with CUDA is not importable here: dlkern only.\n"
    with open(args.out, "w") as f:
        f.write("# dlkern CUDA kernels\n\n" + "\n".join(rows) + "\n" + note)
    return 1 if failures else 0


def attention_rows(repeats):
    rows = []
    failures = attention_cases(repeats, rows)
    return rows, failures


def gemm_section(repeats):
    rows, failures = gemm_rows(repeats)
    return ["## GEMM (float32)", ""] + rows, failures


def case_row(name, nbytes, ours, theirs, ref_fn, host, repeats):
    """One bandwidth row, or None (printed as a mismatch) when the result is wrong."""
    dev = [C.from_numpy(h) for h in host]
    got = ours(*dev).numpy()
    if theirs is not None:
        want = theirs(*[torch.from_numpy(h).cuda() for h in host]).cpu().numpy()
    elif ref_fn is not None:
        want = ref_fn(*host)
    else:
        want = None
    if want is not None and not np.allclose(got, want, rtol=1e-4, atol=1e-4):
        print(f"MISMATCH {name}: max error {np.abs(got - want).max():.3g}")
        return None
    t_ours = median_seconds(lambda: ours(*dev), C.synchronize, repeats)
    cells = [f"{t_ours * 1e3:.3f}", f"{nbytes / t_ours / 1e9:.0f}"]
    if theirs is not None:
        tdev = [torch.from_numpy(h).cuda() for h in host]
        t_theirs = median_seconds(lambda: theirs(*tdev), torch.cuda.synchronize, repeats)
        cells += [f"{t_theirs * 1e3:.3f}", f"{nbytes / t_theirs / 1e9:.0f}"]
    else:
        cells += ["-", "-"]
    return f"| {name} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    raise SystemExit(main())
