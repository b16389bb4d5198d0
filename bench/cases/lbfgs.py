"""L-BFGS on Rosenbrock: dlkern.optim.LBFGS against torch.optim.LBFGS, each driven by a
closure written with its own library's ops and autograd (the intended use), timed for
one whole ``step()`` from the same start (fresh parameters and optimizer per call).

By default: Rosenbrock-100 in float64 from x0 = -1, strong Wolfe line search, history 10,
max_iter 500, 1 thread (issue 15's benchmark). Validated first:
- **algorithm**: dlkern's optimizer with its four kernels (dot, axpy, |.|_1, sqrt)
  swapped for PyTorch's, on the same NumPy closure as PyTorch's optimizer: every
  evaluation point must be PyTorch's bit for bit, over the whole run;
- **arithmetic**: with dlkern's own NumPy kernels, the first 30 evaluation points must
  be within 1e-10 of PyTorch's (relative to the largest entry). Further on, Rosenbrock's
  valley amplifies last-bit differences (MKL's dot and fused multiply-add against
  NumPy's), so the final loss and the evaluation count of a long run differ between any
  two arithmetics; a third row shows PyTorch against itself from a start 1 ulp away.
Rows "NumPy closure" time both optimizers on one hand-written NumPy closure, which
isolates the optimizers' own cost from the libraries' autograd.
"""

import argparse
import time

import numpy as np

from dlkern.bench import common, harness

DESCRIPTION = "L-BFGS (strong Wolfe) on Rosenbrock, dlkern.optim.LBFGS vs torch.optim.LBFGS"
DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
PARITY_EVALUATIONS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dim", type=int, default=100, help="Rosenbrock dimension (default %(default)s)")
    parser.add_argument("--history", type=int, default=10, help="history_size (default %(default)s)")
    parser.add_argument("--max-iter", type=int, default=500, help="max_iter (default %(default)s)")
    parser.add_argument("--line-search", default="strong_wolfe", choices=("strong_wolfe", "none"),
                        help="line_search_fn (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="thread count for both libraries (default 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed runs per library (default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test, not a measurement")
    parser.add_argument("--out", default=harness.default_out("lbfgs"), help="markdown report (default %(default)s)")


def rosenbrock_ops(v):
    """Rosenbrock's function with either library's tensor ops."""
    return (100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2).sum()


def rosenbrock_numpy(x):
    """Rosenbrock's function and gradient in NumPy (the closure shared by both optimizers)."""
    a, b = x[1:] - x[:-1] ** 2, 1.0 - x[:-1]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * x[:-1] - 2.0 * b
    g[1:] += 200.0 * a
    return float(np.sum(100.0 * a * a + b * b)), g


class Problem:
    def __init__(self, args):
        self.x0 = -np.ones(args.dim)
        self.options = dict(history_size=args.history, max_iter=args.max_iter,
                            line_search_fn=None if args.line_search == "none" else args.line_search)


def _solve(opt, x, host, numpy_closure, points, make_grad, make_loss):
    """Run one whole opt.step() on Rosenbrock at parameter x (host(): its NumPy array),
    with the library's autograd closure or the NumPy one (recording its points);
    (final loss, evaluations, iterations)."""
    if numpy_closure:
        def closure():
            if points is not None:
                points.append(host().copy())
            f, g = rosenbrock_numpy(host())
            x.grad = make_grad(g)
            return make_loss(f)
    else:
        def closure():
            opt.zero_grad()
            loss = rosenbrock_ops(x)
            loss.backward()
            return loss
    opt.step(closure)
    state = opt.state[x]
    return rosenbrock_numpy(host())[0], state["func_evals"], state["n_iter"]


def run_dlkern(problem, numpy_closure=False, points=None, x0=None):
    """One whole step() of dlkern's LBFGS from the start (or x0)."""
    import dlkern
    from dlkern import optim
    from dlkern.nn import Parameter

    x = Parameter((problem.x0 if x0 is None else x0).copy())
    return _solve(optim.LBFGS([x], **problem.options), x, lambda: x.data, numpy_closure, points, dlkern.Tensor,
                  lambda f: dlkern.tensor(np.float64(f)))


def run_torch(torch, problem, numpy_closure=False, points=None, x0=None):
    """One whole step() of PyTorch's LBFGS from the start (or x0)."""
    x = torch.tensor((problem.x0 if x0 is None else x0).copy(), requires_grad=True)
    return _solve(torch.optim.LBFGS([x], **problem.options), x, lambda: x.detach().numpy(), numpy_closure, points,
                  torch.from_numpy, lambda f: torch.tensor(f, dtype=torch.float64))


class _TorchLeaf:
    """A PyTorch leaf tensor seen as a dlkern parameter (``.data`` shares its memory,
    ``.grad`` is its gradient's), so dlkern's LBFGS can drive PyTorch's own closure."""

    def __init__(self, tensor):
        self.tensor, self.data = tensor, tensor.detach().numpy()

    @property
    def grad(self):
        return None if self.tensor.grad is None else self.tensor.grad.numpy()

    @grad.setter
    def grad(self, value):
        self.tensor.grad = None if value is None else self.tensor.new_tensor(np.asarray(value))


def run_dlkern_on_torch_closure(torch, problem):
    """dlkern's optimizer on PyTorch's autograd closure: PyTorch's own benchmark run
    with only the optimizer exchanged."""
    from dlkern import optim

    x = torch.tensor(problem.x0.copy(), requires_grad=True)
    leaf = _TorchLeaf(x)
    opt = optim.LBFGS([leaf], **problem.options)

    def closure():
        x.grad = None
        loss = rosenbrock_ops(x)
        loss.backward()
        return loss.detach()

    opt.step(closure)
    state = opt.state[leaf]
    return rosenbrock_numpy(leaf.data)[0], state["func_evals"], state["n_iter"]


def _with_torch_kernels(torch, fn):
    """Run fn() with dlkern's LBFGS vector kernels replaced by PyTorch's."""
    from dlkern.optim import lbfgs

    saved = lbfgs._dot, lbfgs._axpy, lbfgs._abs_sum, lbfgs._sqrt
    t = torch.from_numpy
    lbfgs._dot = lambda a, b: torch.dot(t(a), t(b)).item()
    lbfgs._axpy = lambda alpha, x, y: torch.add(t(y), t(x), alpha=alpha).numpy()
    lbfgs._abs_sum = lambda a: t(a).abs().sum().item()
    lbfgs._sqrt = lambda x: torch.tensor(x, dtype=torch.float64).sqrt().item()
    try:
        return fn()
    finally:
        lbfgs._dot, lbfgs._axpy, lbfgs._abs_sum, lbfgs._sqrt = saved


def validate(torch, problem):
    """Raise BenchValidationError unless the algorithm is PyTorch's (bit for bit with its
    kernels) and the NumPy arithmetic tracks PyTorch's for PARITY_EVALUATIONS points."""
    ours, theirs = [], []
    result = _with_torch_kernels(torch, lambda: run_dlkern(problem, True, ours))
    want = run_torch(torch, problem, True, theirs)
    if result != want or len(ours) != len(theirs) or any((a != b).any() for a, b in zip(ours, theirs)):
        raise common.BenchValidationError(f"dlkern LBFGS with PyTorch's kernels is not PyTorch's run: "
                                          f"(loss, evaluations, iterations) {result} vs {want}")
    ours = []
    native = run_dlkern(problem, True, ours)
    count = min(PARITY_EVALUATIONS, len(theirs))
    worst = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(ours[:count], theirs[:count]))
    if not worst <= 1e-10:
        raise common.BenchValidationError(f"dlkern LBFGS iterates differ from PyTorch's by {worst:.3g} "
                                          f"within the first {count} evaluations")
    # PyTorch's benchmark run itself (its autograd closure), the optimizer exchanged
    autograd_run = run_torch(torch, problem)
    swapped = _with_torch_kernels(torch, lambda: run_dlkern_on_torch_closure(torch, problem))
    if swapped != autograd_run:
        raise common.BenchValidationError(f"dlkern LBFGS with PyTorch's kernels on PyTorch's closure: "
                                          f"{swapped}, PyTorch's LBFGS: {autograd_run}")
    return want, native, worst, count, autograd_run


def run(args) -> int:
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    torch, why = common.optional_import("torch")
    if torch is None:
        print(f"PyTorch not available, timing dlkern alone ({why})")
    problem = Problem(args)
    started = time.perf_counter()
    bullets, rows, timed = [], [], []
    with common.pinned_threads(args.threads, torch):
        if torch is not None:
            exact, native, worst, count, autograd_run = validate(torch, problem)
            bullets += [
                f"- **validation, PyTorch's run**: dlkern's LBFGS (PyTorch's dot/axpy/sum/sqrt kernels swapped in) "
                f"driving PyTorch's autograd closure reproduces torch.optim.LBFGS exactly: loss "
                f"{autograd_run[0]!r} after {autograd_run[1]} evaluations, {autograd_run[2]} iterations",
                f"- **validation, algorithm**: dlkern's LBFGS with PyTorch's dot/axpy/sum/sqrt kernels, NumPy closure: "
                f"the same {exact[1]} evaluation points as torch.optim.LBFGS, bit for bit (final loss {exact[0]:.6g}, "
                f"{exact[2]} iterations)",
                f"- **validation, arithmetic**: with dlkern's NumPy kernels the first {count} evaluation points are "
                f"within {worst:.2g} of PyTorch's (relative); that run ends at loss {native[0]:.3g} after "
                f"{native[1]} evaluations (PyTorch: {exact[0]:.3g} after {exact[1]})"]
            ulp = np.nextafter(problem.x0, 0.0)
            shifted = run_torch(torch, problem, x0=ulp)
            bullets.append(f"- **sensitivity**: PyTorch against itself from x0 moved by 1 ulp ends at loss "
                           f"{shifted[0]:.3g} after {shifted[1]} evaluations: the last digits of a long run "
                           f"are the problem's chaos, not an error")
        contenders = [("dlkern", "dlkern autograd", lambda: run_dlkern(problem))]
        if torch is not None:
            contenders.append(("torch", "PyTorch autograd", lambda: run_torch(torch, problem)))
        contenders.append(("dlkern-np", "NumPy closure", lambda: run_dlkern(problem, True)))
        if torch is not None:
            contenders.append(("torch-np", "NumPy closure", lambda: run_torch(torch, problem, True)))
        outcome = {name: fn() for name, _, fn in contenders}
        timings = common.measure_interleaved([common.Contender(name, fn) for name, _, fn in contenders], repeats,
                                             args.threads, min_sample_s=0.0, settle_s=0.0)
    for name, closure, _ in contenders:
        loss, evals, iters = outcome[name]
        seconds = timings[name].median
        peer = {"dlkern": "torch", "dlkern-np": "torch-np"}.get(name)
        ratio = common.format_ratio(timings[peer].median, seconds) if peer in timings else "-"
        label = "dlkern" if name.startswith("dlkern") else "PyTorch"
        rows.append([label, closure, f"{loss:.3g}", evals, iters, f"{seconds * 1e3:.1f}",
                     f"{seconds / evals * 1e6:.0f}", f"{100 * timings[name].spread:.0f}%", ratio])
        timed.append(f"{label} ({closure}): {rows[-1][5]} ms, {evals} evaluations, loss {rows[-1][2]}")
        print(timed[-1], flush=True)
    title = (f"LBFGS on Rosenbrock-{args.dim} float64 from x0 = -1, {problem.options['line_search_fn']}, "
             f"history {args.history}, max_iter {args.max_iter}, {args.threads} thread(s), median of {repeats} runs")
    headers = ["optimizer", "closure", "final loss", "evaluations", "iterations", "ms per step()", "us per evaluation",
               "spread", "speed vs PyTorch"]
    harness.write_table_report(args.out, title, bullets, [], headers, rows, common.describe_machine(torch, why),
                               started)
    return 0
