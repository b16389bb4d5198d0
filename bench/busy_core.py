"""dlkern at 1 and 2 threads on an idle machine and with one core held by another process.

    python bench/busy_core.py --out bench/results/busy_core.md

A user's machine is never idle. This bench times a list of ops (small, medium and large)
and two training steps at 1 and 2 kernel threads, first with the machine idle, then
with a competing process spinning on one CPU (a pure Python loop pinned there with
sched_setaffinity, bounded in time and killed at the end). Per row it reports the
median times and

    busy 2T / busy 1T   target <= 1.5: a second thread must never cost much on a busy host
    idle 2T / idle 1T   the idle-machine speed-up (lower is better)

Each op's result is checked once against NumPy before timing. Samples of 1 and 2
threads are interleaved and the medians reported. It uses only dlkern APIs that older
builds have (optional ones through getattr), so it can time any installed dlkern for a
before/after comparison: run it once per build, on the same host. Variants of one build:
OMP_WAIT_POLICY=active or GOMP_SPINCOUNT=N (spinning instead of dlkern's passive
default), DLKERN_ADAPTIVE_THREADS=0 (no contention-adaptive thresholds),
--min-work-scale X (per-thread work thresholds scaled by X).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import dlkern
from dlkern import ops

TARGET = 1.5  # busy 2T / busy 1T

SPINNER = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.monotonic() + float(sys.argv[2])
x = 0
while True:
    for _ in range(100000):
        x += 1
    if time.monotonic() > end:
        break
"""


# ----------------------------------------------------------------------------- references

def gelu_ref(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax_ref(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def layer_norm_ref(x, eps=1e-5):
    x = x.astype(np.float64)
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(x.var(-1, keepdims=True) + eps)


def conv2d_ref(x, w, pad):
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # n c oh ow kh kw
    return np.tensordot(win, w.astype(np.float64), axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def max_pool_ref(x, k):
    n, c, h, w = x.shape
    return x[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))


def cross_entropy_ref(x, t):
    x = x.astype(np.float64)
    m = x.max(1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]
    return np.mean(lse - x[np.arange(len(t)), t])


def attention_ref(q, k, v):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    return softmax_ref(s) @ v


def check(name, got, ref, tol):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    err = float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), 1e-30)
    if not (got.shape == ref.shape and err <= tol):
        raise SystemExit(f"validation failed: {name}: shape {got.shape} vs {ref.shape}, rel. error {err:.2e}")
    return err


# ----------------------------------------------------------------------------- cases

def op_cases(rng):
    """(name, run, validate) for each op; validate() returns the relative error."""
    f32 = np.float32

    def randn(*shape):
        return rng.standard_normal(shape).astype(f32)

    cases = []

    for n in (64, 256, 1024):
        a, b = randn(n, n), randn(n, n)
        c = np.empty((n, n), f32)
        cases.append((f"matmul {n}", lambda a=a, b=b, c=c: ops.matmul(a, b, out=c),
                      lambda a=a, b=b: check("matmul", ops.matmul(a, b), a.astype(np.float64) @ b, 1e-4)))

    for shape in ((64, 128), (4096, 1024)):
        x = randn(*shape)
        y = np.empty_like(x)
        cases.append((f"softmax {shape}", lambda x=x, y=y: ops.softmax(x, -1, out=y),
                      lambda x=x: check("softmax", ops.softmax(x, -1), softmax_ref(x), 1e-5)))

    for shape in ((64, 256), (4096, 1024)):
        x = randn(*shape)
        cases.append((f"layer_norm {shape}", lambda x=x: ops.layer_norm(x, (x.shape[-1],)),
                      lambda x=x: check("layer_norm", ops.layer_norm(x, (x.shape[-1],)), layer_norm_ref(x), 1e-4)))

    for label, xs, ws, pad in (("LeNet (64,1,28,28) 6x5x5", (64, 1, 28, 28), (6, 1, 5, 5), 2),
                               ("ResNet (8,64,56,56) 64x3x3", (8, 64, 56, 56), (64, 64, 3, 3), 1)):
        x, w = randn(*xs), randn(*ws) * f32(0.1)
        cases.append((f"conv2d {label}", lambda x=x, w=w, pad=pad: ops.conv2d(x, w, None, 1, pad),
                      lambda x=x, w=w, pad=pad: check("conv2d", ops.conv2d(x, w, None, 1, pad),
                                                      conv2d_ref(x, w, pad), 1e-4)))

    for shape in ((64, 6, 28, 28), (32, 64, 56, 56)):
        x = randn(*shape)
        cases.append((f"max_pool2d 2x2 {shape}", lambda x=x: ops.max_pool2d(x, 2),
                      lambda x=x: check("max_pool2d", ops.max_pool2d(x, 2), max_pool_ref(x, 2), 0.0)))

    for n, c in ((128, 10), (4096, 1000)):
        x, t = randn(n, c), rng.integers(0, c, n).astype(np.int64)
        cases.append((f"cross_entropy ({n},{c})", lambda x=x, t=t: ops.cross_entropy(x, t),
                      lambda x=x, t=t: check("cross_entropy", ops.cross_entropy(x, t), cross_entropy_ref(x, t),
                                             1e-5)))

    for label, (b, h, t, d) in (("small B1 H2 T64 D32", (1, 2, 64, 32)), ("medium B4 H8 T256 D64", (4, 8, 256, 64))):
        q, k, v = randn(b, h, t, d), randn(b, h, t, d), randn(b, h, t, d)
        cases.append((f"attention_forward {label}", lambda q=q, k=k, v=v: ops.attention_forward(q, k, v),
                      lambda q=q, k=k, v=v: check("attention", ops.attention_forward(q, k, v)[0],
                                                  attention_ref(q, k, v), 1e-4)))

    for n in (4096, 1 << 20):
        x = randn(n)
        cases.append((f"gelu_tanh {n}", lambda x=x: ops.gelu_tanh(x),
                      lambda x=x: check("gelu_tanh", ops.gelu_tanh(x), gelu_ref(x), 1e-5)))
    return cases


def train_cases():
    """MLP 784-256-256-10 batch 128 Adam and LeNet-5 batch 64 SGD momentum, as the
    training bench (bench/cases/train.py) builds them."""
    from dlkern import nn, optim
    from dlkern.models import LeNet5, MLP

    cases = []
    for name in ("mlp", "lenet"):
        dlkern.manual_seed(0)
        if name == "mlp":
            model = MLP(784, (256, 256), 10)
            opt, shape, label = optim.Adam(model.parameters(), lr=1e-3), (128, 784), "train MLP 784-256-256-10 b128 Adam"
        else:
            model = LeNet5(1, 10, input_size=28)
            opt, shape, label = (optim.SGD(model.parameters(), lr=0.01, momentum=0.9), (64, 1, 28, 28),
                                 "train LeNet-5 b64 SGD momentum")
        rng = np.random.default_rng(1)
        x = dlkern.from_numpy(rng.standard_normal(shape).astype(np.float32))
        y = dlkern.from_numpy(rng.integers(0, 10, shape[0]).astype(np.int64))

        def step(model=model, opt=opt, x=x, y=y):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        def validate(step=step):
            losses = [float(step().item()) for _ in range(3)]
            if not all(math.isfinite(v) for v in losses):
                raise SystemExit(f"validation failed: {label}: losses {losses}")
            return 0.0

        cases.append((label, step, validate))
    return cases


# ----------------------------------------------------------------------------- timing

def time_calls(fn, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def measure(fn, repeats, min_sample_s, threads=(1, 2)):
    """Median seconds per call at each thread count, from interleaved samples."""
    for n in threads:
        dlkern.set_num_threads(n)
        fn()
        fn()
    dlkern.set_num_threads(threads[0])
    one = time_calls(fn, 1)
    calls = max(1, min(10000, math.ceil(min_sample_s / max(one, 1e-7))))
    samples = {n: [] for n in threads}
    for r in range(repeats):
        for n in (threads if r % 2 == 0 else threads[::-1]):
            dlkern.set_num_threads(n)
            samples[n].append(time_calls(fn, calls))
    return {n: float(np.median(s)) for n, s in samples.items()}


def scaling_probe(repeats=5):
    """Idle 2-thread vs 1-thread speed-up of a compute-bound product (~2 on a healthy
    2-core host; much less when the host is giving the VM one core's worth)."""
    a = np.random.default_rng(3).standard_normal((768, 768)).astype(np.float32)
    c = np.empty_like(a)
    t = measure(lambda: ops.matmul(a, a, out=c), repeats, 0.05)
    return t[1] / t[2]


def idle_spin_probe(rounds=20, gap_s=0.02):
    """CPU time the process burns while idle right after a 2-thread op, as a share of
    the idle time: ~0 when OpenMP threads sleep (passive waiting), up to 1 (a whole
    core) while they spin."""
    a = np.random.default_rng(4).standard_normal((1024, 1024)).astype(np.float32)
    c = np.empty_like(a)
    dlkern.set_num_threads(2)
    burnt = 0.0
    for _ in range(rounds):
        ops.matmul(a, a, out=c)  # ~10 ms: forks at 2 threads in any build, busy host or not
        c0 = time.process_time()
        time.sleep(gap_s)
        burnt += time.process_time() - c0
    return burnt / (rounds * gap_s)


class Spinner:
    """A competing process spinning on one CPU, bounded in time, killed on exit."""

    def __init__(self, cpu, seconds):
        self.proc = subprocess.Popen([sys.executable, "-c", SPINNER, str(cpu), str(seconds)])
        time.sleep(0.3)  # let it start spinning

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


# ----------------------------------------------------------------------------- report

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_t(s):
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/busy_core.md", help="markdown report ('' for none)")
    parser.add_argument("--repeats", type=int, default=11, help="interleaved samples per thread count")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="minimum length of one sample")
    parser.add_argument("--busy-cpu", type=int, default=None, help="CPU the competing process holds "
                        "(default: the highest one this process may use)")
    parser.add_argument("--only", default="", help="comma list of substrings: run only matching rows")
    parser.add_argument("--no-train", action="store_true", help="ops only")
    parser.add_argument("--min-work-scale", type=float, default=None,
                        help="scale dlkern's per-thread work thresholds (builds with _C.set_min_work_scale)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.min_work_scale is not None:
        setter = getattr(dlkern._C, "set_min_work_scale", None)
        if setter is None:
            raise SystemExit("--min-work-scale: this dlkern build has no _C.set_min_work_scale")
        setter(args.min_work_scale)
    contention = getattr(dlkern._C, "contention_info", None)
    cpus = sorted(os.sched_getaffinity(0))
    busy_cpu = cpus[-1] if args.busy_cpu is None else args.busy_cpu
    if len(cpus) < 2:
        print(f"warning: this process may use only CPUs {cpus}; 2-thread figures mean little", file=sys.stderr)

    rng = np.random.default_rng(0)
    cases = op_cases(rng) + ([] if args.no_train else train_cases())
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        cases = [c for c in cases if any(k in c[0] for k in keys)]

    info = dlkern.build_info()
    threading_info = getattr(dlkern, "threading_info", None)
    threading = threading_info() if threading_info else {}
    omp_env = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "KMP_", "DLKERN_"))}
    header = [
        f"- **host**: {cpu_model()}; {os.cpu_count()} CPUs, this process may use {cpus}; competing spinner on CPU {busy_cpu}",
        f"- **dlkern**: {info.get('version')} ({dlkern.__file__}); ISA {info.get('isa_active')}; "
        f"compiler {info.get('compiler')}; OpenMP {info.get('openmp')}",
        f"- **OMP environment**: {omp_env or 'none set'}",
        f"- **wait policy (dlkern.threading_info)**: " + (
            f"{threading.get('omp_wait_policy')} ({threading.get('wait_policy_source')}), "
            f"GOMP_SPINCOUNT {threading.get('gomp_spincount')}; runtimes {threading.get('openmp_libraries')}"
            if threading else "not reported by this build"),
        f"- **adaptive thread choice**: " + (
            f"{'on' if threading.get('adaptive') else 'off (DLKERN_ADAPTIVE_THREADS=0)'}"
            if "adaptive" in threading else "not in this build")
        + (f"; work thresholds scaled x{args.min_work_scale:g}" if args.min_work_scale is not None else ""),
    ]
    for line in header:
        print(line)

    probe = scaling_probe()
    spin = idle_spin_probe()
    notes = [f"- **2-thread scaling probe** (idle, sgemm 768^3): 2T is {probe:.2f}x 1T "
             f"({'ok' if probe >= 1.7 else 'LOW: the host is not giving 2 full cores, distrust 2T figures'})",
             f"- **idle spin probe**: right after a 2-thread op, the process burns {100 * spin:.0f}% of a core while "
             f"idle (~0% when OpenMP threads sleep; up to 100% while they spin)"]
    for line in notes:
        print(line, flush=True)

    for name, _run, validate in cases:
        for n in (1, 2):
            dlkern.set_num_threads(n)
            validate()
    print(f"validated {len(cases)} rows against NumPy at 1 and 2 threads", flush=True)

    results = {}
    for name, run, _ in cases:
        results[name] = {"idle": measure(run, args.repeats, args.sample_ms / 1e3)}
        t = results[name]["idle"]
        print(f"idle  {name:45s} 1T {fmt_t(t[1]):>10s}  2T {fmt_t(t[2]):>10s}  2T/1T {t[2] / t[1]:.2f}", flush=True)
    probe_after = scaling_probe()
    if contention:
        notes.append(f"- **dlkern's contention measurement after the idle rows**: {contention()}")

    with Spinner(busy_cpu, seconds=600):
        for name, run, _ in cases:
            results[name]["busy"] = measure(run, args.repeats, args.sample_ms / 1e3)
            t = results[name]["busy"]
            flag = "" if t[2] / t[1] <= TARGET else "  > target"
            print(f"busy  {name:45s} 1T {fmt_t(t[1]):>10s}  2T {fmt_t(t[2]):>10s}  2T/1T {t[2] / t[1]:.2f}{flag}",
                  flush=True)
        if contention:
            notes.append(f"- **dlkern's contention measurement during the busy rows**: {contention()}")
    notes.append(f"- **scaling probe after the idle rows**: {probe_after:.2f}x")

    headers = ["row", "idle 1T", "idle 2T", "busy 1T", "busy 2T", f"busy 2T/1T (target <= {TARGET})", "idle 2T/1T"]
    table, worst = [], 0.0
    for name, r in results.items():
        i, b = r["idle"], r["busy"]
        ratio = b[2] / b[1]
        worst = max(worst, ratio)
        table.append([name, fmt_t(i[1]), fmt_t(i[2]), fmt_t(b[1]), fmt_t(b[2]),
                      f"{ratio:.2f}" + ("" if ratio <= TARGET else " **over**"), f"{i[2] / i[1]:.2f}"])
    summary = f"- **worst busy 2T/1T**: {worst:.2f} ({'meets' if worst <= TARGET else 'misses'} the target {TARGET})"
    print(summary)

    lines = ["# dlkern on a busy core: 1 vs 2 threads", "",
             f"- **when**: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
             f"command: `{' '.join([Path(sys.executable).name] + sys.argv)}`",
             *header,
             "- **method**: each row checked against NumPy at 1 and 2 threads, then timed: median of "
             f"{args.repeats} interleaved 1T/2T samples of >= {args.sample_ms:g} ms; idle rows first, then the same "
             f"rows while a pure-Python spin loop pinned to CPU {busy_cpu} competes for that core",
             *notes, summary, "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
             *["| " + " | ".join(row) + " |" for row in table], "",
             f"`build_info()`: `{ {k: v for k, v in info.items() if k != 'cuda'} }`", "",
             f"Total time {time.perf_counter() - started:.0f} s."]
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
