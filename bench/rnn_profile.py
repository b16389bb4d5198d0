"""Where nn.LSTM's time goes (issue 14's analysis, bench/results/issue14_rnn_analysis.md):
the whole module beside PyTorch, each piece of the layer loop timed alone with the same
buffers, cProfile of the module, and dlkern's GEMM at exactly the per-step and the
whole-sequence shapes beside torch.matmul and NumPy. One thread unless --threads.

    PYTHONPATH=python python bench/rnn_profile.py [--threads 1] [--shape 32x128x128x256x2]

Every figure is the minimum over --repeats samples of >= 20 ms each (the least disturbed
by other tenants of the host); the module rows also give the median."""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

import numpy as np

import dlkern
from dlkern import ops
from dlkern.bench import common

PEAK_1T = 117.0  # GFLOP/s per core, MACHINE.md


def sample(fn, repeats, min_s=0.02):
    """(min, median) seconds per call over `repeats` samples each lasting >= min_s."""
    fn()
    t0 = time.perf_counter()
    fn()
    calls = max(1, int(min_s / max(time.perf_counter() - t0, 1e-7)) + 1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return min(times), statistics.median(times)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def module_rows(torch, shape, repeats, model="LSTM"):
    b, t, n_in, h, layers = shape
    rng = np.random.default_rng(0)
    m = getattr(dlkern.nn, model)(n_in, h, num_layers=layers)
    tm = getattr(torch.nn, model)(n_in, h, num_layers=layers)
    tm.load_state_dict({k: torch.from_numpy(np.asarray(v.numpy()).copy()) for k, v in m.state_dict().items()})
    x, dy = rand(rng, t, b, n_in), rand(rng, t, b, h)
    dx_, ddy = dlkern.from_numpy(x), dlkern.from_numpy(dy)
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)

    def d_fwd():
        with dlkern.no_grad():
            return m(dx_)

    def t_fwd():
        with torch.no_grad():
            return tm(tx)

    def d_train():
        m.zero_grad()
        xl = dx_.detach().requires_grad_()
        m(xl)[0].backward(ddy)

    def t_train():
        tm.zero_grad(set_to_none=True)
        xl = tx.detach().requires_grad_()
        tm(xl)[0].backward(tdy)

    def d_fwd_train():  # the training forward alone: saves for backward, builds the graph
        return m(dx_.detach().requires_grad_())

    def t_fwd_train():
        return tm(tx.detach().requires_grad_())

    flops = sum(2 * t * b * _GATES[model] * h * ((n_in if k == 0 else h) + h) for k in range(layers))
    # alternating sample by sample (common.measure_interleaved), so drifting host load
    # lands on both libraries
    named = [("dlkern forward", d_fwd), ("PyTorch forward", t_fwd), ("dlkern forward+backward", d_train),
             ("PyTorch forward+backward", t_train), ("dlkern training forward (no backward)", d_fwd_train),
             ("PyTorch training forward (no backward)", t_fwd_train)]
    timings = common.measure_interleaved([common.Contender(n, f) for n, f in named], repeats, 1)
    for name, _ in named:
        lo, med = min(timings[name].samples), timings[name].median
        work = flops * (3 if name.endswith("forward+backward") else 1)
        print(f"| {name} | {lo * 1e3:.1f} | {med * 1e3:.1f} | {work / lo / 1e9:.1f} |", flush=True)
    return m, d_fwd, d_train, flops


def profile(fn, calls=3, top=14):
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("```")
    print("\n".join(lines[start - 1:start + top + 1]))
    print("```", flush=True)


def pieces(shape, repeats):
    """Each piece of one layer's forward and backward loop (functions/rnn.py), timed over
    all T steps with the layer's own buffers; ms per layer."""
    b, t, n_in, h, layers = shape
    rng = np.random.default_rng(1)
    rows = []
    for k in range(layers):
        k_in = n_in if k == 0 else h
        x, w_ih, w_hh = rand(rng, t * b, k_in), rand(rng, 4 * h, k_in) * 0.05, rand(rng, 4 * h, h) * 0.05
        bias = rand(rng, 4 * h)
        gates = np.empty((t * b, 4 * h), np.float32)
        w_hh_t = np.ascontiguousarray(w_hh.T)
        hs, cs = rand(rng, b, h) * 0.1, rand(rng, b, h) * 0.1
        act_all, c_all = np.empty((t * b, 4 * h), np.float32), np.empty((t * b, h), np.float32)
        out = np.empty((t * b, h), np.float32)

        def inproj():
            gates[...] = bias
            ops.gemm(x, w_ih, c=gates, beta=1.0, trans_b=True)

        def steps_gemm():
            for s in range(0, t * b, b):
                ops.gemm(hs, w_hh_t, c=gates[s:s + b], beta=1.0)

        def steps_gemm_tb():
            for s in range(0, t * b, b):
                ops.gemm(hs, w_hh, c=gates[s:s + b], beta=1.0, trans_b=True)

        def steps_cell():
            for s in range(0, t * b, b):
                ops.lstm_cell_forward(gates[s:s + b], cs)

        def steps_copies():  # the per-step stores of the training forward
            for s in range(0, t * b, b):
                e = s + b
                out[s:e] = hs
                hs[...] = hs
                cs[...] = cs
                act_all[s:e] = gates[s:e]
                c_all[s:e] = cs

        dgates = rand(rng, t * b, 4 * h) * 0.01
        dh, dc = rand(rng, b, h), rand(rng, b, h)

        def steps_cell_bwd():
            for s in range(0, t * b, b):
                ops.lstm_cell_backward(dh, dc, act_all[s:s + b], cs, c_all[s:s + b])

        def steps_gemm_bwd():
            for s in range(0, t * b, b):
                ops.gemm(dgates[s:s + b], w_hh, c=dh)

        def grad_x():
            ops.gemm(dgates, w_ih)

        def grad_w_ih():
            ops.gemm(dgates, x, trans_a=True)

        def grad_w_hh():
            ops.gemm(dgates, out, trans_a=True)

        def bias_sums():
            dgates.sum(axis=0)

        step_flops = 2 * b * h * 4 * h * t
        for name, fn, flops in (
                (f"L{k} input projection GEMM ({t * b}x{k_in} @ {k_in}x{4 * h}, bias prefill)", inproj,
                 2 * t * b * k_in * 4 * h),
                (f"L{k} {t} recurrent GEMMs ({b}x{h} @ {h}x{4 * h}, plain B, beta=1)", steps_gemm, step_flops),
                (f"L{k} same with trans_b (W_hh read in place)", steps_gemm_tb, step_flops),
                (f"L{k} {t} lstm_cell_forward ({b}x{h})", steps_cell, 0),
                (f"L{k} {t} x the training forward's 5 row copies", steps_copies, 0),
                (f"L{k} {t} lstm_cell_backward", steps_cell_bwd, 0),
                (f"L{k} {t} backward recurrent GEMMs ({b}x{4 * h} @ {4 * h}x{h})", steps_gemm_bwd, step_flops),
                (f"L{k} dx GEMM ({t * b}x{4 * h} @ {4 * h}x{k_in})", grad_x, 2 * t * b * 4 * h * k_in),
                (f"L{k} dW_ih GEMM ({4 * h}x{t * b} @ {t * b}x{k_in}, A transposed)", grad_w_ih,
                 2 * t * b * 4 * h * k_in),
                (f"L{k} dW_hh GEMM ({4 * h}x{t * b} @ {t * b}x{h}, A transposed)", grad_w_hh, 2 * t * b * 4 * h * h),
                (f"L{k} one bias sum (NumPy, {t * b}x{4 * h} over axis 0)", bias_sums, 0)):
            lo, _ = sample(fn, repeats)
            rate = f"{flops / lo / 1e9:.1f}" if flops else "-"
            rows.append((name, lo))
            print(f"| {name} | {lo * 1e3:.2f} | {rate} |", flush=True)
    return rows


def call_overhead(repeats):
    a = np.ones((1, 1), np.float32)
    g, c = np.ones((1, 4), np.float32), np.ones((1, 1), np.float32)
    for name, fn in (("ops.gemm 1x1x1 (c=, beta=1)", lambda: ops.gemm(a, a, c=c, beta=1.0)),
                     ("ops.lstm_cell_forward 1x1", lambda: ops.lstm_cell_forward(g, c)),
                     ("NumPy row-slice view x[s:e]", lambda: g[0:1]),
                     ("NumPy slice assignment out[s:e] = h (1 float)", lambda: c.__setitem__(slice(0, 1), c))):
        lo, _ = sample(fn, repeats)
        print(f"| {name} | {lo * 1e6:.2f} |", flush=True)


def gemm_sweep(torch, repeats):
    """dlkern vs torch.matmul vs NumPy at the recurrent shapes: C (M, N) = A (M, K) B (K, N);
    'plain' B is a contiguous (K, N), 'B^T' is op(B) = W (N, K) read transposed."""
    rng = np.random.default_rng(2)
    shapes = [(32, 256, 1024), (64, 256, 1024), (32, 512, 2048), (64, 512, 2048),
              (32, 1024, 256), (64, 2048, 512),  # backward: dgates @ W_hh
              (32, 256, 768), (32, 256, 256), (64, 512, 1536), (64, 512, 512),  # GRU, RNN forward
              (4096, 128, 1024), (4096, 256, 1024), (4096, 512, 2048)]  # input projections
    for m, k, n in shapes:
        a, w = rand(rng, m, k), rand(rng, n, k)
        bt = np.ascontiguousarray(w.T)
        c = np.zeros((m, n), np.float32)
        ta, tw, tbt, tc = (torch.from_numpy(v) for v in (a, w, bt, c))
        flops = 2 * m * n * k
        calls = {
            "dlkern plain": lambda: ops.gemm(a, bt, c=c, beta=1.0),
            "dlkern B^T": lambda: ops.gemm(a, w, c=c, beta=1.0, trans_b=True),
            "torch plain": lambda: torch.matmul(ta, tbt, out=tc),
            "torch B^T": lambda: torch.matmul(ta, tw.T, out=tc),
            "torch addmm_ B^T": lambda: tc.addmm_(ta, tw.T),
            "NumPy plain": lambda: np.matmul(a, bt, out=c),
            "NumPy B^T": lambda: np.matmul(a, w.T, out=c),
        }
        if n % 2 == 0 and m * k * n // 2 <= 1 << 22 and k <= 512:
            # two half-width calls fall under run_small's bounds (m n k <= 2^22, k <= 512): B read
            # in place, no packing
            h2 = n // 2
            calls["dlkern plain, 2 half-N calls (unpacked B)"] = lambda: (
                ops.gemm(a, bt[:, :h2], c=c[:, :h2], beta=1.0), ops.gemm(a, bt[:, h2:], c=c[:, h2:], beta=1.0))
        cells = []
        for name, fn in calls.items():
            lo, _ = sample(fn, repeats)
            cells.append(f"{name} {flops / lo / 1e9:.0f}")
        print(f"| {m}x{k}x{n} | {flops / 1e6:.1f} | " + " | ".join(cells) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", default="32x128x128x256x2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--parts", default="module,profile,pieces,overhead,gemm")
    parser.add_argument("--model", default="LSTM", choices=sorted(_GATES),
                        help="the module of the 'module' part (the other parts are LSTM's)")
    args = parser.parse_args()
    import threadpoolctl
    import torch

    shape = tuple(int(v) for v in args.shape.split("x"))
    parts = args.parts.split(",")
    dlkern.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    with threadpoolctl.threadpool_limits(args.threads, user_api="blas"):
        print(f"# {args.model} {shape} at {args.threads} thread(s), torch {torch.__version__}, "
              f"dlkern ISA {dlkern.ops.__name__}")
        if "module" in parts or "profile" in parts:
            print("\n| module | min ms | median ms | GFLOP/s (min) |\n|---|---|---|---|")
            _, d_fwd, d_train, _ = module_rows(torch, shape, args.repeats, args.model)
        if "profile" in parts:
            print("\ncProfile, dlkern forward (3 calls):")
            profile(d_fwd)
            print("\ncProfile, dlkern forward+backward (3 calls):")
            profile(d_train)
        if "pieces" in parts:
            print("\n| piece (per layer, all steps) | ms | GFLOP/s |\n|---|---|---|")
            pieces(shape, args.repeats)
        if "overhead" in parts:
            print("\n| call | us |\n|---|---|")
            call_overhead(args.repeats)
        if "gemm" in parts:
            print("\n| MxKxN | MFLOP | GFLOP/s ... |\n|---|---|---|")
            gemm_sweep(torch, args.repeats)


if __name__ == "__main__":
    main()
