"""Before/after timings of the hot ops and training steps at 1 thread, for comparing two
builds of dlkern on one machine (e.g. a refactor against its base commit).

It runs against whatever dlkern is importable (an installed build, or PYTHONPATH), using
only API both sides share, and prints one JSON line: case -> median seconds. The driver
mode runs two interpreters alternately, several rounds, so machine noise hits both alike,
and reports per case the minimum over rounds of each side's median and the ratio:

    python bench/before_after.py --compare "BEFORE_CMD" "AFTER_CMD" --rounds 5 --out FILE

where each CMD is a shell command that runs this script with the other dlkern importable,
e.g. "PYTHONPATH=/path/to/old/python python bench/before_after.py".
Every case validates its result against NumPy float64 before timing.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _median_time(fn, repeats, min_seconds=0.2):
    fn()
    n = 1
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-6)
    n = max(1, int(min_seconds / one / repeats))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n)
    return float(np.median(times))


def _cases():
    from dlkern import ops

    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = {}

    for n in (512, 1024):
        a, b = f32(n, n), f32(n, n)
        assert np.allclose(ops.matmul(a, b), a.astype(np.float64) @ b, atol=1e-3 * n ** 0.5)
        cases[f"matmul {n}^3"] = lambda a=a, b=b: ops.matmul(a, b)

    x, w = f32(4, 64, 56, 56), f32(64, 64, 3, 3) * 0.05
    y = ops.conv2d(x, w, None, 1, 1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + 56, j:j + 56], w[:, :, i, j], optimize=True)
              for i in range(3) for j in range(3))
    assert np.allclose(y, ref, atol=1e-3)
    cases["conv2d fwd 4x64x56x56 k3"] = lambda: ops.conv2d(x, w, None, 1, 1)
    gy = f32(*y.shape)
    cases["conv2d bwd"] = lambda: ops.conv2d_backward(gy, x, w, 1, 1)

    s = f32(4096, 1024)
    e = np.exp(s.astype(np.float64) - s.max(-1, keepdims=True))
    assert np.allclose(ops.softmax(s, -1), e / e.sum(-1, keepdims=True), atol=1e-6)
    cases["softmax 4096x1024"] = lambda: ops.softmax(s, -1)

    q, k, v = (f32(1, 12, 512, 64) for _ in range(3))
    out, lse = ops.attention_forward(q, k, v, is_causal=True)
    sc = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k) / 8.0
    sc = np.where(np.tril(np.ones((512, 512), bool)), sc, -np.inf)
    p = np.exp(sc - sc.max(-1, keepdims=True))
    assert np.allclose(out, np.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdims=True), v), atol=1e-4)
    cases["attention fwd 1x12x512x64 causal"] = lambda: ops.attention_forward(q, k, v, is_causal=True)
    go = f32(*out.shape)
    cases["attention bwd"] = lambda: ops.attention_backward(go, q, k, v, out, lse, is_causal=True)

    cases.update(train_cases(rng))
    return cases


def train_cases(rng):
    """The MLP and LeNet training steps (also bench/higher_order.py's first-order cases)."""
    import dlkern
    from dlkern import nn, optim
    from dlkern.models import LeNet5

    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = {}

    def train_step(model, opt, xb, yb):
        def step():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(dlkern.tensor(xb)), dlkern.tensor(yb))
            loss.backward()
            opt.step()
            return loss
        return step

    dlkern.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    xb, yb = f32(128, 784), rng.integers(0, 10, 128)
    step = train_step(mlp, optim.Adam(mlp.parameters(), lr=1e-3), xb, yb)
    first = float(step().item())
    assert np.isfinite(first) and abs(first - np.log(10)) < 1.0
    cases["train step MLP 784-256-256-10 b128 Adam"] = step

    lenet = LeNet5(1, 10, input_size=28)
    xl, yl = f32(64, 1, 28, 28), rng.integers(0, 10, 64)
    step = train_step(lenet, optim.SGD(lenet.parameters(), lr=0.01, momentum=0.9), xl, yl)
    assert np.isfinite(float(step().item()))
    cases["train step LeNet-5 b64 SGD"] = step
    return cases


def measure(repeats):
    import dlkern
    dlkern.set_num_threads(1)
    return {name: _median_time(fn, repeats) for name, fn in _cases().items()}


def compare(before, after, rounds, out):
    runs = {"before": [], "after": []}
    for _ in range(rounds):
        for side, cmd in (("before", before), ("after", after)):
            res = subprocess.run(cmd + " --measure", shell=True, capture_output=True, text=True, check=True)
            runs[side].append(json.loads(res.stdout.strip().splitlines()[-1]))
    # Two summaries, since the host's noise comes in bursts: the best of each side's
    # medians, and the median of the per-round ratios (each round runs both sides back to back).
    lines = ["| case (1 thread) | before ms | after ms | after/before (best) | after/before (median of rounds) |",
             "|---|---|---|---|---|"]
    for case in runs["before"][0]:
        b = min(r[case] for r in runs["before"]) * 1e3
        a = min(r[case] for r in runs["after"]) * 1e3
        paired = float(np.median([ra[case] / rb[case] for rb, ra in zip(runs["before"], runs["after"])]))
        lines.append(f"| {case} | {b:.3f} | {a:.3f} | {a / b:.3f} | {paired:.3f} |")
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(f"before: `{before}`\n\nafter: `{after}`\n\nrounds: {rounds}; best = min over rounds of "
                    f"each side's median\n\n{text}\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="print this dlkern's timings as JSON")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE_CMD", "AFTER_CMD"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare, args.rounds, args.out)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        print(json.dumps(measure(args.repeats)))
        sys.stdout.flush()
