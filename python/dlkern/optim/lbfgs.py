"""L-BFGS with PyTorch's torch.optim.LBFGS semantics (closure, history, tolerances,
evaluation budget, optional strong-Wolfe line search).

The method (Nocedal & Wright, *Numerical Optimization*, 2nd ed.): the search direction is
d = -H g, where H approximates the inverse Hessian from the last m curvature pairs
s = x_{k+1} - x_k, y = g_{k+1} - g_k, applied to g by the two-loop recursion (alg. 7.4)
with the initial matrix gamma I, gamma = s.y / y.y of the newest pair (eq. 7.20). A pair
is kept only when s.y > 1e-10, so H stays positive definite. The step along d is either
fixed (lr; on the very first iteration scaled by min(1, 1/|g|_1), because -g is not yet
scaled to the problem) or found by a line search satisfying the strong Wolfe conditions
(alg. 3.5 bracketing, alg. 3.6 zoom), trial steps chosen by cubic interpolation of the
two bracketing points' values and slopes (eq. 3.59).

The optimiser works on one flat vector: all parameters' data (and gradients)
concatenated, as host NumPy arrays of the parameters' dtype. LBFGS is for problems of
up to a few million parameters evaluated many times, where the per-iteration cost of
the method is dozens of length-n dot products and axpys, so each of those is one NumPy
call on the flat vector rather than a Tensor op per parameter. Scalars (losses, slopes,
steps) are Python floats: float64 arithmetic, whatever the parameters' dtype (PyTorch's
slopes are 0-d tensors of the parameters' dtype, so float32 runs differ in the last bits).
Where PyTorch's step length is a 0-d tensor, its cubic interpolation divides a Python float
by it as a multiplication by the reciprocal (two roundings); dlkern divides (one rounding).

Every choice that decides PyTorch's iterates is PyTorch's: the constants (c1 = 1e-4,
c2 = 0.9, at most ``max_eval`` minus the evaluations spent so far line-search trials,
the zoom's 1e-9 bracket tolerance), the bracketing phase's extrapolation interval
[t + 0.01 (t - t_prev), 10 t], the zoom's "insufficient progress" safeguard (a trial
within 10% of the bracket's ends twice in a row moves 10% inside), the order of the
stopping tests, and the state kept across ``step()`` calls.
"""

import math
import numbers

import numpy as np

from ..device import array_namespace
from .optimizer import Optimizer, grad_array

# The strong Wolfe constants (sufficient decrease, curvature) and the zoom's tolerance on
# the bracket width times max|d|: fixed, as PyTorch does not pass its group's
# tolerance_change to the line search.
_C1, _C2, _LS_TOLERANCE = 1e-4, 0.9, 1e-9
# Curvature pairs with s.y at or below this are skipped (H would lose definiteness).
_MIN_CURVATURE = 1e-10
# The state entries that are flat vectors over all parameters, and lists of them.
_FLAT_KEYS = ("d", "prev_flat_grad")
_FLAT_LIST_KEYS = ("old_dirs", "old_stps")


# The method's arithmetic that is not plain IEEE scalar arithmetic, in four kernels. Their
# rounding is the only place where dlkern's iterates can differ from PyTorch's: PyTorch's
# dot is MKL's (another summation order than NumPy's), its p.add_(d, alpha=t) rounds once
# (a fused multiply-add), its sum is a cascade and its float64 sqrt is not always
# correctly rounded. The tests swap these for PyTorch's kernels and then get PyTorch's
# iterates bit for bit.
def _dot(a, b):
    """a . b as a Python float."""
    return float(np.dot(a, b))


def _axpy(alpha, x, y):
    """y + alpha * x, a new array."""
    return y + alpha * x


def _abs_sum(a):
    """sum |a_i| as a Python float."""
    return float(np.abs(a).sum())


def _sqrt(x):
    """sqrt(x) of a float x >= 0, correctly rounded."""
    return math.sqrt(x)


def _cubic_minimizer(a, fa, ga, b, fb, gb, bounds=None):
    """The minimiser of the cubic through (a, fa) and (b, fb) with slopes ga and gb (N&W
    eq. 3.59, written from the larger of a and b), clipped to `bounds` (default: between
    a and b); the bounds' midpoint when the cubic has no real minimiser. NumPy scalars,
    so a == b or a zero denominator give IEEE infinities/NaN instead of raising."""
    lo, hi = bounds if bounds is not None else ((a, b) if a <= b else (b, a))
    with np.errstate(all="ignore"):
        a, fa, ga, b, fb, gb = (np.float64(v) for v in (a, fa, ga, b, fb, gb))
        d1 = ga + gb - 3 * (fa - fb) / (a - b)
        disc = d1 * d1 - ga * gb
        if not disc >= 0:  # also NaN
            return float((lo + hi) / 2.0)
        d2 = np.float64(_sqrt(float(disc)))
        if a <= b:
            x = b - (b - a) * ((gb + d2 - d1) / (gb - ga + 2 * d2))
        else:
            x = a - (a - b) * ((ga + d2 - d1) / (ga - gb + 2 * d2))
    return float(min(max(x, lo), hi))  # builtins: a NaN x stays NaN, as in PyTorch


class _Point:
    """A trial step on the line: its step length, loss, flat gradient and slope g.d."""

    __slots__ = ("t", "f", "g", "slope")

    def __init__(self, t, f, g, slope):
        self.t, self.f, self.g, self.slope = t, f, g, slope


def _strong_wolfe(evaluate, t, d, f, g, gtd, max_ls):
    """Line search along d from the current point (loss f, gradient g, slope gtd < 0)
    for a step satisfying the strong Wolfe conditions, starting from the trial step t.
    evaluate(t) -> (loss, flat gradient) at x + t d. At most max(max_ls, 1) evaluations.
    Returns (loss, gradient, step, evaluations) of the best point found."""
    d_norm = float(np.abs(d).max(initial=0.0))
    start = _Point(0, f, g, gtd)

    def trial(step):
        f_new, g_new = evaluate(step)
        return _Point(step, f_new, g_new, _dot(g_new, d))

    def armijo_fails(p):
        return p.f > f + _C1 * p.t * gtd

    def curvature_holds(p):
        return abs(p.slope) <= -_C2 * gtd

    # Bracketing (alg. 3.5): extrapolate until the interval [prev, new] must hold a
    # Wolfe point (new fails sufficient decrease, rises, or the slope turns >= 0).
    prev, new = start, trial(t)
    evals, ls_iter, bracket, done = 1, 0, None, False
    while ls_iter < max_ls:
        if armijo_fails(new) or (ls_iter > 1 and new.f >= prev.f):
            bracket = [prev, new]
            break
        if curvature_holds(new):
            bracket, done = [new], True
            break
        if new.slope >= 0:  # past a minimiser along d
            bracket = [prev, new]
            break
        step = _cubic_minimizer(prev.t, prev.f, prev.slope, new.t, new.f, new.slope,
                                bounds=(new.t + 0.01 * (new.t - prev.t), new.t * 10))
        prev, new = new, trial(step)
        evals += 1
        ls_iter += 1
    if ls_iter >= max_ls:  # budget spent while extrapolating: the better of start and last trial
        bracket = [start, new]
        done = True  # no slope pair to zoom with, and no evaluations left

    # Zoom (alg. 3.6): shrink the bracket [lo, hi] (lo: the lower loss satisfying
    # sufficient decrease) until a trial satisfies the curvature condition too.
    lo, hi = (0, 1) if bracket[0].f <= bracket[-1].f else (1, 0)
    insufficient_progress = False
    while not done and ls_iter < max_ls:
        a, b = bracket
        if abs(b.t - a.t) * d_norm < _LS_TOLERANCE:
            break
        step = _cubic_minimizer(a.t, a.f, a.slope, b.t, b.f, b.slope)
        left, right = min(a.t, b.t), max(a.t, b.t)
        margin = 0.1 * (right - left)
        if min(right - step, step - left) < margin:
            # Near an end: allowed once; a second time, or at/over an end, step a tenth
            # of the bracket inside from the nearer end, so the bracket keeps shrinking.
            if insufficient_progress or step >= right or step <= left:
                step = right - margin if abs(step - right) < abs(step - left) else left + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        new = trial(step)
        evals += 1
        ls_iter += 1
        if armijo_fails(new) or new.f >= bracket[lo].f:
            bracket[hi] = new
            lo, hi = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
        else:
            if curvature_holds(new):
                done = True
            elif new.slope * (bracket[hi].t - bracket[lo].t) >= 0:
                bracket[hi] = bracket[lo]  # the old low end becomes the high end
            bracket[lo] = new
    best = bracket[lo]
    return best.f, best.g, best.t, evals


def _check_int_at_least(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"LBFGS: invalid {name} {value!r} (must be an integer >= {minimum})")


class LBFGS(Optimizer):
    """L-BFGS with PyTorch's semantics: ``step(closure)`` runs up to ``max_iter``
    iterations (at most ``max_eval`` closure calls, default max_iter * 5 // 4) and returns
    the first loss; ``closure()`` must zero the gradients, recompute the loss, call
    backward and return the loss. One parameter group only. The state (iteration and
    evaluation counts, last direction and step, the curvature history) lives in
    ``state[params[0]]`` and carries over to the next ``step()``, as in PyTorch."""

    _checked_options = ("lr",)

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        self._check_group(defaults)
        super().__init__(params, defaults)
        self._flat_layout()

    def _flat_layout(self):
        """The single group's parameters, their sizes and the flat vectors' dtype."""
        self._params = self.param_groups[0]["params"]
        self._sizes = [int(p.data.size) for p in self._params]
        self._dtype = np.result_type(*[p.data.dtype for p in self._params])

    def _check_group(self, group):
        super()._check_group(group)
        _check_int_at_least("max_iter", group["max_iter"], 0)
        _check_int_at_least("max_eval", group["max_eval"], 0)
        # PyTorch fails with an IndexError mid-step for history_size=0: refuse it here.
        _check_int_at_least("history_size", group["history_size"], 1)

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # ------------------------------------------------------------------ flat vectors
    def _gather(self, arrays):
        """The arrays (one per parameter, None = zeros) as one new flat host vector."""
        parts = []
        for p, a, n in zip(self._params, arrays, self._sizes):
            parts.append(np.zeros(n, self._dtype) if a is None else array_namespace(a).to_host(a).reshape(-1))
        return np.concatenate(parts).astype(self._dtype, copy=False)

    def _flat_grad(self):
        return self._gather([grad_array(p) for p in self._params])

    def _set_params(self, flat):
        """Write the flat vector into the parameters' data, in place."""
        offset = 0
        for p, n in zip(self._params, self._sizes):
            data = p.data
            data[...] = array_namespace(data).to_device(flat[offset:offset + n].reshape(data.shape))
            offset += n

    # ------------------------------------------------------------------ the method
    @staticmethod
    def _direction(g, old_dirs, old_stps, ro, h_diag, al):
        """d = -H g by the two-loop recursion (N&W alg. 7.4) over the pairs (s_i, y_i),
        newest last, with H_0 = h_diag I; `al` receives the first loop's coefficients."""
        q = -g
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = _dot(old_stps[i], q) * ro[i]
            q = _axpy(-al[i], old_dirs[i], q)
        r = q * h_diag
        for i in range(len(old_dirs)):
            beta = _dot(old_dirs[i], r) * ro[i]
            r = _axpy(al[i] - beta, old_stps[i], r)
        return r

    def step(self, closure=None):
        """Up to max_iter L-BFGS iterations; returns the loss closure() gave first."""
        if closure is None:
            raise TypeError("LBFGS.step() needs a closure: a function that zeroes the gradients, "
                            "recomputes the loss, calls backward() and returns the loss")
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size, line_search_fn = group["history_size"], group["line_search_fn"]
        state = self.state.setdefault(self._params[0], {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = self._call_closure(closure)
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if np.abs(flat_grad).max(initial=0.0) <= tolerance_grad:  # first-order optimal already (NaN: not)
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        x = self._gather([p.data for p in self._params])

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro, h_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = _dot(y, s)
                if ys > _MIN_CURVATURE:
                    if len(old_dirs) == history_size:
                        del old_dirs[0], old_stps[0], ro[0]
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / _dot(y, y)
                al = state.setdefault("al", [None] * history_size)
                if len(al) < history_size:  # history_size raised between steps
                    al.extend([None] * (history_size - len(al)))
                d = self._direction(flat_grad, old_dirs, old_stps, ro, h_diag, al)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            if state["n_iter"] == 1:
                abs_sum = _abs_sum(flat_grad)
                t = min(1.0, 1.0 / abs_sum if abs_sum else math.inf) * lr
            else:
                t = lr
            gtd = _dot(flat_grad, d)
            if gtd > -tolerance_change:  # not a descent direction (any more)
                break

            spent = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError(f"LBFGS: only 'strong_wolfe' is supported as line_search_fn, "
                                       f"got {line_search_fn!r}")

                def evaluate(step, x=x, d=d):
                    self._set_params(_axpy(step, d, x))
                    f_new = float(self._call_closure(closure))
                    return f_new, self._flat_grad()

                loss, flat_grad, t, spent = _strong_wolfe(evaluate, t, d, loss, flat_grad, gtd, max_eval - evals)
                x = _axpy(t, d, x)
                self._set_params(x)
                opt_cond = np.abs(flat_grad).max(initial=0.0) <= tolerance_grad
            else:
                x = _axpy(t, d, x)
                self._set_params(x)
                opt_cond = False
                if n_iter != max_iter:  # the last iteration's closure is left to the next step()
                    loss = float(self._call_closure(closure))
                    flat_grad = self._flat_grad()
                    opt_cond = np.abs(flat_grad).max(initial=0.0) <= tolerance_grad
                    spent = 1
            evals += spent
            state["func_evals"] += spent

            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if abs(t) * np.abs(d).max(initial=0.0) <= tolerance_change:  # = max|t d|: the step is tiny
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    # ------------------------------------------------------------------ state dict
    def load_state_dict(self, state_dict):
        """As Optimizer.load_state_dict; the flat vectors (d, prev_flat_grad and the
        history) span all parameters, so they are checked against the total size
        instead of the first parameter's shape."""
        flat = {}
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict):
            state_dict = dict(state_dict)
            saved = {}
            for key, values in state_dict["state"].items():
                values = dict(values)
                flat[key] = {k: values.pop(k) for k in _FLAT_KEYS + _FLAT_LIST_KEYS if k in values}
                saved[key] = values
            state_dict["state"] = saved
        super().load_state_dict(state_dict)
        n = sum(self._sizes)
        for key, entries in flat.items():
            state = self.state[self._params[0]] if int(key) == 0 else None
            if state is None:
                raise ValueError(f"LBFGS keeps its state under parameter 0, but the loaded state dict has "
                                 f"flat vectors under parameter {key}")
            for name, value in entries.items():
                items = value if name in _FLAT_LIST_KEYS else [value]
                restored = []
                for item in items:
                    if item is None:
                        restored.append(None)
                        continue
                    item = np.array(array_namespace(item).to_host(item), dtype=self._dtype, copy=True)
                    if item.shape != (n,):
                        raise ValueError(f"loaded LBFGS state '{name}' has shape {item.shape}, but the "
                                         f"parameters hold {n} elements")
                    restored.append(item)
                state[name] = restored if name in _FLAT_LIST_KEYS else restored[0]
