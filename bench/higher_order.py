"""Issue 15's higher-order autograd benchmarks, at 1 thread:

- first-order overhead: the MLP and LeNet training steps of before_after.py, timed by
  its protocol (``--measure`` prints JSON; ``--compare BEFORE_CMD AFTER_CMD`` alternates
  two interpreters, e.g. main's python/ against this branch's);
- ``--hvp``: the Hessian-vector product of the MLP 784-256-256-10 (ReLU, cross-entropy,
  batch 128, float32) with respect to its parameters, dlkern.autograd.functional.hvp
  against torch.autograd.functional.hvp with the same weights, checked to agree first.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from before_after import _median_time, compare, train_cases  # noqa: E402


def _hvp(repeats):
    import torch

    import dlkern
    import dlkern.nn.functional as F
    from dlkern.autograd.functional import hvp

    torch.set_num_threads(1)
    dlkern.set_num_threads(1)
    rng = np.random.default_rng(0)
    shapes = [(256, 784), (256,), (256, 256), (256,), (10, 256), (10,)]
    params = [(rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32) for s in shapes]
    vs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    x, y = rng.standard_normal((128, 784)).astype(np.float32), rng.integers(0, 10, 128)

    def model(Fn, xt, yt):
        def loss(w1, b1, w2, b2, w3, b3):
            h = Fn.relu(Fn.linear(xt, w1, b1))
            h = Fn.relu(Fn.linear(h, w2, b2))
            return Fn.cross_entropy(Fn.linear(h, w3, b3), yt)
        return loss

    ours_f = model(F, dlkern.tensor(x), dlkern.tensor(y))
    theirs_f = model(torch.nn.functional, torch.tensor(x), torch.tensor(y))
    ours_p, ours_v = tuple(dlkern.tensor(p) for p in params), tuple(dlkern.tensor(v) for v in vs)
    theirs_p, theirs_v = tuple(torch.tensor(p) for p in params), tuple(torch.tensor(v) for v in vs)
    ours = lambda: hvp(ours_f, ours_p, ours_v)  # noqa: E731
    theirs = lambda: torch.autograd.functional.hvp(theirs_f, theirs_p, theirs_v)  # noqa: E731
    a, b = ours()[1], theirs()[1]
    for u, w in zip(a, b):
        w = w.numpy()
        assert np.allclose(u.data, w, rtol=1e-3, atol=1e-4 * np.abs(w).max()), np.abs(u.data - w).max()
    # (torch's vhp too: dlkern's hvp is a vhp, one double-backward pass; torch's hvp
    # takes the double-vjp trick's extra pass)
    theirs_vhp = lambda: torch.autograd.functional.vhp(theirs_f, theirs_p, theirs_v)  # noqa: E731
    t_ours, t_theirs = _median_time(ours, repeats), _median_time(theirs, repeats)
    t_vhp = _median_time(theirs_vhp, repeats)
    return {"dlkern hvp s": t_ours, "torch hvp s": t_theirs, "torch vhp s": t_vhp,
            "torch hvp / dlkern hvp": t_theirs / t_ours, "torch vhp / dlkern hvp": t_vhp / t_ours}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="print this dlkern's training-step timings as JSON")
    ap.add_argument("--hvp", action="store_true", help="hvp against torch.autograd.functional.hvp")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE_CMD", "AFTER_CMD"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare, args.rounds, args.out)
    elif args.hvp:
        print(json.dumps(_hvp(args.repeats)))
    else:
        import dlkern
        dlkern.set_num_threads(1)
        cases = train_cases(np.random.default_rng(0))
        print(json.dumps({name: _median_time(fn, args.repeats) for name, fn in cases.items()}))
