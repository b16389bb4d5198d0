"""Issue 16: the fused optimizer kernels (dlkern.ops.adam_step / sgd_step) against the
NumPy composition the CPU optimizers ran before, on the float32 parameters of the MLP
784-1024-1024-10 (1.86 M parameters), and torch.optim as the peer.

    python bench/fused_optim.py --threads 1 --repeats 15

Every contender steps its own copy of the same parameters and gradients; one step of
each is first checked against the composition (a few float32 ulps). The timings are
interleaved (contender A, B, C, A, B, C, ...) so machine noise hits them alike; median
per contender, ms per optimizer step over all six tensors.
"""
import argparse
import statistics
import time

import numpy as np

import dlkern
from dlkern import optim
from dlkern.device import array_namespace

SHAPES = [(1024, 784), (1024,), (1024, 1024), (1024,), (10, 1024), (10,)]


class Param:
    def __init__(self, data, grad):
        self.data, self.grad = data, grad


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [Param(rng.standard_normal(s).astype(np.float32) * 0.05, rng.standard_normal(s).astype(np.float32) * 0.01)
            for s in SHAPES]


class _Composed:
    """The CPU namespace's fused kernels turned off while a step runs."""

    def __enter__(self):
        self.cls = type(array_namespace(np.zeros(1)))
        self.prev = self.cls.fused
        self.cls.fused = lambda self, name: None

    def __exit__(self, *exc):
        self.cls.fused = self.prev


def _dlkern(cls, kwargs, fused):
    params = _params()
    opt = cls(params, **kwargs)

    def step():
        if fused:
            opt.step()
        else:
            with _Composed():
                opt.step()
    return step, params


def _torch(name, kwargs, foreach):
    import torch
    ps = [torch.tensor(p.data.copy(), requires_grad=True) for p in _params()]
    for t, p in zip(ps, _params()):
        t.grad = torch.from_numpy(p.grad.copy())
    opt = getattr(torch.optim, name)(ps, foreach=foreach, **kwargs)
    return opt.step, None


def run(threads, repeats):
    dlkern.set_num_threads(threads)
    try:
        import torch
        torch.set_num_threads(threads)
        have_torch = True
    except ImportError:
        have_torch = False
    rows = []
    for label, name, kwargs in [("AdamW (lr 1e-3, wd 0.01)", "AdamW", dict(lr=1e-3, weight_decay=0.01)),
                                ("SGD momentum 0.9", "SGD", dict(lr=0.01, momentum=0.9))]:
        cls = getattr(optim, name)
        contenders = {"dlkern fused": _dlkern(cls, kwargs, True),
                      "dlkern NumPy composition": _dlkern(cls, kwargs, False)}
        # validation: one step of each from the same start
        a, b = contenders["dlkern fused"][1], contenders["dlkern NumPy composition"][1]
        for fn, _ in contenders.values():
            fn()
        for p, q in zip(a, b):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-9)
        if have_torch:
            contenders["torch.optim foreach=False"] = _torch(name, kwargs, False)
            contenders["torch.optim foreach=True"] = _torch(name, kwargs, True)
        samples = {k: [] for k in contenders}
        for _ in range(repeats):
            for k, (fn, _) in contenders.items():
                fn()
                t = time.perf_counter()
                for _ in range(5):
                    fn()
                samples[k].append((time.perf_counter() - t) / 5)
        for k, s in samples.items():
            rows.append((label, k, statistics.median(s) * 1e3))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    rows = run(args.threads, args.repeats)
    print(f"| step ({sum(int(np.prod(s)) for s in SHAPES):,} float32 parameters, {args.threads} thread) | contender "
          f"| ms per step (median) |")
    print("|---|---|---:|")
    for label, k, ms in rows:
        print(f"| {label} | {k} | {ms:.2f} |")


if __name__ == "__main__":
    main()
