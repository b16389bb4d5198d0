"""Issue 15: first- against second-order optimisers on one convex problem, at 1 thread.

Full-batch multinomial logistic regression 64 -> 10 (650 parameters, float64) on the
training split of the 8x8 digits (dlkern.data.digits, the data set of
``python -m dlkern train``), loss = mean cross-entropy + lam/2 (|W|^2 + |b|^2): the L2 on
b too, so that the loss is strictly convex (softmax is unchanged by adding a constant to
every bias, which leaves the bias-only Hessian singular). The reference optimum f* comes
from exact Newton run to a gradient norm below 1e-11; each optimiser then runs until the
loss is within --tol of f* (or its step budget is spent), counting steps, closure
evaluations, Hessian-vector products and wall time up to the closure call that reached
the target. GD (SGD, full batch) uses lr = 1.9 / L with L the largest Hessian eigenvalue
at x0 = 0 (L-smooth: anything below 2 / L descends; the Hessian at 0 bounds the ones met
later for this loss only roughly, so that is the tuning, stated), Adam the best lr of a
small grid. Prints a Markdown table.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=python python bench/optimizer_comparison.py
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import dlkern  # noqa: E402
import dlkern.nn.functional as F  # noqa: E402
from dlkern import optim  # noqa: E402
from dlkern.data import digits  # noqa: E402


class _Reached(Exception):
    """Raised by the closure when the loss reaches the target: stops any optimiser."""


class Problem:
    def __init__(self, lam):
        train, test = digits(flatten=True)
        (x, y), (xe, ye) = train.tensors, test.tensors
        self.x, self.y = dlkern.tensor(x.astype(np.float64)), dlkern.tensor(y)
        self.xe, self.ye = xe.astype(np.float64), ye
        self.lam = lam
        self.w = dlkern.nn.Parameter(dlkern.tensor(np.zeros((64, 10))))
        self.b = dlkern.nn.Parameter(dlkern.tensor(np.zeros(10)))
        self.params = [self.w, self.b]

    def reset(self):
        self.w.data[...] = 0
        self.b.data[...] = 0

    def loss(self):
        reg = 0.5 * self.lam * ((self.w * self.w).sum() + (self.b * self.b).sum())
        return F.cross_entropy(self.x @ self.w + self.b, self.y) + reg

    def grad_norm(self):
        for p in self.params:
            p.grad = None
        self.loss().backward()
        return float(np.sqrt(sum((np.asarray(p.grad.data) ** 2).sum() for p in self.params)))

    def accuracy(self):
        logits = self.xe @ np.asarray(self.w.data) + np.asarray(self.b.data)
        return float((logits.argmax(1) == self.ye).mean())


def run(problem, name, make_opt, steps, target, second_order):
    """Steps until the loss reaches `target`; a result row (dict)."""
    problem.reset()
    opt = make_opt(problem.params)
    counts = {"evals": 0, "best": np.inf}

    def closure():
        counts["evals"] += 1
        if second_order:
            loss = problem.loss()
        else:
            opt.zero_grad()
            loss = problem.loss()
            loss.backward()
        value = float(loss)
        counts["best"] = min(counts["best"], value)
        if value <= target:
            counts["time"] = time.perf_counter() - start
            raise _Reached
        return loss

    done = 0
    start = time.perf_counter()
    reached = False
    try:
        for done in range(1, steps + 1):
            opt.step(closure)
    except _Reached:
        reached = True
    elapsed = counts.get("time", time.perf_counter() - start)
    state = opt.state.get(problem.params[0], {}) if hasattr(opt, "state") else {}
    if isinstance(opt, (optim.LBFGS, optim.Newton)):
        # LBFGS: the iteration whose line search reached the target; Newton: the steps taken.
        done = state.get("n_iter", done)
    elif reached:
        done -= 1  # the closure of step k evaluates the point that k - 1 steps reached
    # The row's final loss: the best evaluated (a rejected trial's loss is not the iterate's).
    return dict(name=name, reached=reached, steps=done, evals=counts["evals"], hvps=state.get("hvp_evals", 0),
                time=elapsed,
                loss=counts["best"], grad=problem.grad_norm(), acc=problem.accuracy())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lam", type=float, default=1e-3, help="L2 coefficient")
    ap.add_argument("--tol", type=float, nargs="+", default=[1e-6, 1e-10], help="stop at loss <= f* + tol "
                    "(one table per value)")
    ap.add_argument("--first-order-steps", type=int, default=20000)
    args = ap.parse_args()
    dlkern.set_num_threads(1)
    problem = Problem(args.lam)

    # f*: exact Newton to the bottom.
    opt = optim.Newton(problem.params)
    for _ in range(30):
        opt.step(problem.loss)
        if problem.grad_norm() < 1e-11:
            break
    f_star = float(problem.loss())

    # GD's lr from the Hessian at 0 (its largest eigenvalue, by the exact Newton machinery).
    problem.reset()
    probe = optim.Newton(problem.params)
    loss, grads = probe._loss_and_grad(problem.loss)
    probe.state[problem.params[0]] = {"hvp_evals": 0}
    big_l = float(np.linalg.eigvalsh(probe._hessian(grads, 650, probe.state[problem.params[0]]))[-1])
    gd_lr = 1.9 / big_l

    print(f"# Optimisers on full-batch digits logistic regression 64->10 (650 parameters, float64, "
          f"L2 {args.lam:g} on W and b), 1 thread\n")
    print(f"- f* = {f_star:.12f} (exact Newton, gradient norm < 1e-11)")
    print(f"- largest Hessian eigenvalue at 0: L = {big_l:.4g}; first-order budget {args.first_order_steps} steps")
    print("- steps: optimizer iterations until the closure call that reached the target; evaluations: closure "
          "calls (loss, with a gradient for the first-order ones; Newton's trial points of a line search or "
          "LM damping would count too); HVPs: Hessian-vector products (exact Newton: 650 per Hessian)")
    print("- time: wall time to the target, one run on a shared, loaded 2-core host: an order of magnitude, "
          "not a precise figure")
    for tol in args.tol:
        table(problem, f_star, f_star + tol, tol, gd_lr, args.first_order_steps)


def table(problem, f_star, target, tol, gd_lr, n1):
    """Run every optimiser to `target` and print the table."""
    rows = [run(problem, f"GD (SGD full batch, lr={gd_lr:.3g} = 1.9/L)", lambda p: optim.SGD(p, lr=gd_lr), n1,
                target, False)]
    adam = [run(problem, f"Adam (lr={lr:g}, best of 0.003-1 by 3x)", lambda p, lr=lr: optim.Adam(p, lr=lr),
                n1, target, False) for lr in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)]
    rows.append(min(adam, key=lambda r: (not r["reached"], r["evals"], r["loss"])))
    rows.append(run(problem, "LBFGS (strong_wolfe, history 100)",
                    lambda p: optim.LBFGS(p, lr=1, max_iter=10000, max_eval=20000, tolerance_grad=0,
                                          tolerance_change=0, line_search_fn="strong_wolfe"), 1, target, False))
    rows.append(run(problem, "Newton-CG (cg_tol=1e-10, cg_max_iter=250)", lambda p: optim.Newton(p, method="cg"), 50,
                    target, True))
    rows.append(run(problem, "Newton-CG (cg_tol=1e-2)", lambda p: optim.Newton(p, method="cg", cg_tol=1e-2), 50,
                    target, True))
    rows.append(run(problem, "exact Newton (650x650 Hessian)", lambda p: optim.Newton(p), 50, target, True))

    print(f"\n## Target: loss <= f* + {tol:g}\n")
    print("| optimizer | reached | steps | evaluations | HVPs | time s | loss - f* | grad norm | test acc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {'yes' if r['reached'] else 'no'} | {r['steps']} | {r['evals']} | {r['hvps']} | "
              f"{r['time']:.3f} | {r['loss'] - f_star:.2e} | {r['grad']:.2e} | {r['acc']:.4f} |")


if __name__ == "__main__":
    main()
