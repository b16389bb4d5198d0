"""Newton's method for small and medium models: the step solves (H + lambda I) d = -g with
the loss's Hessian H, by a dense solve (``method="exact"``) or by truncated conjugate
gradients on Hessian-vector products (``method="cg"``, Newton-CG).

PyTorch has no Newton optimiser; the interface follows torch.optim.LBFGS (a closure, one
parameter group, the closure's first loss returned) with one difference forced by the
method: the closure only computes and returns the loss, it does not call backward(). The
optimiser takes the gradient itself with ``autograd.grad(loss, params,
create_graph=True)``, so that the gradient can be differentiated again: each
Hessian-vector product H v is one more backward pass, the gradient of g . v (autograd's
create_graph path, autograd/higher.py). The exact method builds H column by column, one
such product per parameter element (n backward passes for n parameters), which is why it
is meant for up to a few thousand parameters; Newton-CG needs one product per CG iteration.

The method (Nocedal & Wright, *Numerical Optimization*, 2nd ed.):
- exact: H is symmetrised ((H + H^T) / 2: the columns come from separate backward passes
  and agree only to rounding) and (H + lambda I) d = -g is solved in float64 by LU
  (np.linalg.solve); a singular matrix (zero damping on a flat direction) falls back to the
  minimum-norm least-squares solution, which ignores the flat directions;
- cg: alg. 7.1 (truncated CG from d = 0): stops when the residual |(H + lambda I) d + g| is
  at most cg_tol |g|, after cg_max_iter iterations, or on a direction of non-positive
  curvature p^T (H + lambda I) p <= 0, returning the iterate so far, or -g if that
  happens on the first iteration (steepest descent), so the step is always a descent
  direction;
- adaptive_damping (Levenberg-Marquardt): the trial point is evaluated; a step that does
  not decrease the loss is rejected and retried with lambda x10 (lambda = 1e-6 when it
  was 0), up to 30 times; an accepted step divides lambda by 10 for the next step(); when
  all 30 are rejected the parameters and lambda stay as they were;
- line_search_fn="backtracking": Armijo's sufficient decrease f(x + t d) <= f(x) + 1e-4 t
  g.d from t = lr, halving t up to 30 times (alg. 3.1); when d is not a descent direction
  (exact Newton on a non-convex loss with too little damping) the search runs along -g.
  A search that finds no such t leaves the parameters where they were.

The arithmetic is float64 on the host whatever the parameters' dtype (H and the CG
vectors are small next to a model's evaluation); parameters are written back in their own
dtype. Counts kept in ``state[params[0]]`` (and so in state_dict): n_iter (step() calls
that moved), func_evals (closure calls), hvp_evals (Hessian-vector products: n per exact
Hessian), cg_iters (of the last step), damping (the current lambda).
"""

import math
import numbers

import numpy as np

from ..autograd import enable_grad, no_grad
from ..autograd.functional import grad as _autograd_grad
from ..autograd.jacobians import _fill, _grads
from ..device import array_namespace
from .lbfgs import LBFGS
from .optimizer import Optimizer

_METHODS = ("exact", "cg")
_LINE_SEARCHES = (None, "backtracking")
# Armijo's constant and the backtracking factor and budget.
_C1, _BACKTRACK, _MAX_BACKTRACKS = 1e-4, 0.5, 30
# Levenberg-Marquardt: the factor, the damping tried first when it was 0, and the most
# rejected trials in one step() before giving up (lambda grows to 1e-6 * 10^29 by then).
_LM_FACTOR, _LM_START, _MAX_LM_TRIES = 10.0, 1e-6, 30
# cg_max_iter=None: the parameter count (CG's exact-arithmetic bound), capped here.
_DEFAULT_CG_CAP = 250


def _check_real(name, value, minimum, strict=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise ValueError(f"Newton: invalid {name} {value!r} (must be a finite number {bound} {minimum})")


class Newton(Optimizer):
    """Newton's method (exact or Newton-CG), one iteration per ``step(closure)``;
    ``closure()`` recomputes and returns the loss (a scalar Tensor) without calling
    backward(). Returns that loss, as LBFGS does. One parameter group only."""

    def __init__(self, params, lr=1.0, method="exact", damping=0.0, adaptive_damping=False, cg_max_iter=None,
                 cg_tol=1e-10, line_search_fn=None):
        defaults = dict(lr=lr, method=method, damping=damping, adaptive_damping=adaptive_damping,
                        cg_max_iter=cg_max_iter, cg_tol=cg_tol, line_search_fn=line_search_fn)
        self._check_group(defaults)
        super().__init__(params, defaults)
        self._flat_layout()

    def _check_group(self, group):
        _check_real("lr", group["lr"], 0.0, strict=True)
        _check_real("damping", group["damping"], 0.0)
        _check_real("cg_tol", group["cg_tol"], 0.0)
        if group["method"] not in _METHODS:
            raise ValueError(f"Newton: invalid method {group['method']!r} (must be 'exact' or 'cg')")
        if group["line_search_fn"] not in _LINE_SEARCHES:
            raise ValueError(f"Newton: invalid line_search_fn {group['line_search_fn']!r} "
                             f"(must be None or 'backtracking')")
        if not isinstance(group["adaptive_damping"], bool):
            raise ValueError(f"Newton: adaptive_damping must be a bool, got {group['adaptive_damping']!r}")
        m = group["cg_max_iter"]
        if m is not None and (isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1):
            raise ValueError(f"Newton: invalid cg_max_iter {m!r} (must be None or an integer >= 1)")

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("Newton doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # The flat-vector helpers are LBFGS's (same attributes: _params, _sizes, _dtype).
    _flat_layout = LBFGS._flat_layout
    _gather = LBFGS._gather
    _set_params = LBFGS._set_params

    def _flat64(self, arrays):
        return self._gather(arrays).astype(np.float64)

    # ------------------------------------------------------------------ derivatives
    def _loss_and_grad(self, closure):
        """The loss at the current parameters and its gradient, a graph (create_graph)."""
        with enable_grad():
            loss = closure()
            if not hasattr(loss, "requires_grad") or not hasattr(loss, "data"):
                raise TypeError(f"Newton: the closure must return the loss as a Tensor, got {type(loss).__name__}")
            if loss.data.size != 1:
                raise RuntimeError(f"Newton: the closure must return a single-element loss, got shape "
                                   f"{tuple(loss.data.shape)}")
            if not loss.requires_grad:
                raise RuntimeError("Newton: the loss returned by the closure does not require grad (is it "
                                   "computed from the parameters, outside no_grad?)")
            try:
                grads = _autograd_grad(loss, self._params, create_graph=True, allow_unused=True)
            except RuntimeError as e:
                if "second time" not in str(e):
                    raise
                raise RuntimeError("Newton: the closure's graph was already freed: the closure must return the "
                                   "loss without calling backward() (Newton differentiates it twice itself)") from e
        grads = _fill(grads, self._params, False, "Newton")
        return loss, grads

    def _hvp(self, grads, v, state):
        """H v (flat float64) from the gradient graph `grads`, one backward pass."""
        vs, offset = [], 0
        for p, n in zip(self._params, self._sizes):
            piece = v[offset:offset + n].reshape(p.data.shape).astype(p.data.dtype)
            vs.append(p._make(array_namespace(p.data).to_device(piece), p.device, False, None))
            offset += n
        state["hvp_evals"] += 1
        with enable_grad():
            hv = _grads(grads, self._params, vs, create_graph=False)
        return self._flat64([None if h is None else h.data for h in hv])

    def _hessian(self, grads, n, state):
        h = np.empty((n, n))
        e = np.zeros(n)
        for k in range(n):
            e[k] = 1.0
            h[:, k] = self._hvp(grads, e, state)
            e[k] = 0.0
        return (h + h.T) / 2

    @staticmethod
    def _solve(h, g, damping):
        a = h + damping * np.eye(len(g))
        try:
            return np.linalg.solve(a, -g)
        except np.linalg.LinAlgError:  # exactly singular: the minimum-norm solution
            return np.linalg.lstsq(a, -g, rcond=None)[0]

    def _cg(self, hvp, g, damping, max_iter, tol):
        """Truncated CG (N&W alg. 7.1) for (H + damping I) d = -g; (d, iterations)."""
        d = np.zeros_like(g)
        r = g.copy()
        p = -r
        rr = float(r @ r)
        stop = tol * math.sqrt(rr)
        if math.sqrt(rr) <= stop or rr == 0.0:
            return d, 0
        for j in range(max_iter):
            bp = hvp(p) + damping * p
            curvature = float(p @ bp)
            if not curvature > 0:  # non-positive (or NaN) curvature along p
                return (-g if j == 0 else d), j + 1
            alpha = rr / curvature
            d += alpha * p
            r += alpha * bp
            rr_new = float(r @ r)
            if math.sqrt(rr_new) <= stop:
                return d, j + 1
            p = -r + (rr_new / rr) * p
            rr = rr_new
        return d, max_iter

    def _evaluate(self, closure, x):
        """The loss at x (parameters set to x), without a graph."""
        self._set_params(x.astype(self._dtype, copy=False))
        with no_grad():
            return float(closure())

    # ------------------------------------------------------------------ the step
    def step(self, closure=None):
        """One Newton iteration; returns the loss closure() gave at the starting point."""
        if closure is None:
            raise TypeError("Newton.step() needs a closure: a function that recomputes the loss from the "
                            "parameters and returns it (without calling backward())")
        group = self.param_groups[0]
        state = self.state.setdefault(self._params[0], {})
        for key in ("n_iter", "func_evals", "hvp_evals", "cg_iters"):
            state.setdefault(key, 0)
        state.setdefault("damping", float(group["damping"]))
        if not group["adaptive_damping"]:
            state["damping"] = float(group["damping"])  # the group's value rules (a scheduler may change it)

        loss, grads = self._loss_and_grad(closure)
        state["func_evals"] += 1
        f = float(loss.data.reshape(()))
        g = self._flat64([t.data for t in grads])
        x = self._flat64([p.data for p in self._params])
        n = len(g)
        if n == 0:
            return loss
        lr, method, line_search = float(group["lr"]), group["method"], group["line_search_fn"]
        h = None
        max_cg = group["cg_max_iter"] or min(n, _DEFAULT_CG_CAP)

        def direction(damping):
            nonlocal h
            if method == "exact":
                if h is None:
                    h = self._hessian(grads, n, state)
                return self._solve(h, g, damping)
            d, its = self._cg(lambda v: self._hvp(grads, v, state), g, damping, max_cg, float(group["cg_tol"]))
            state["cg_iters"] = its
            return d

        damping = state_damping = state["damping"]
        for _ in range(_MAX_LM_TRIES if group["adaptive_damping"] else 1):
            d = direction(damping)
            if line_search is not None:
                x_new, f_new = self._backtrack(closure, x, f, g, d, lr, state)
            else:
                x_new = x + lr * d
                f_new = None
                if group["adaptive_damping"]:  # LM judges the step by the loss it reaches
                    f_new = self._evaluate(closure, x_new)
                    state["func_evals"] += 1
            if not group["adaptive_damping"]:
                break
            if f_new is not None and f_new < f:  # accepted: trust the quadratic model more
                state["damping"] = damping / _LM_FACTOR
                break
            damping = damping * _LM_FACTOR if damping > 0 else _LM_START
            state["damping"] = damping
            x_new = None
        if x_new is None:
            # Every trial rejected: no decrease is possible to rounding (at a minimum), or
            # the loss is NaN. Stay, and keep the damping this step started with, so that
            # repeated calls at the minimum don't grow it to infinity.
            self._set_params(x.astype(self._dtype, copy=False))
            state["damping"] = state_damping
        else:
            self._set_params(x_new.astype(self._dtype, copy=False))
            state["n_iter"] += 1
        return loss

    def _backtrack(self, closure, x, f, g, d, t, state):
        """Armijo backtracking along d (along -g when d is not a descent direction);
        (new point, its loss), or (None, None) when no trial decreases enough."""
        slope = float(g @ d)
        if not slope < 0:
            d = -g
            slope = -float(g @ g)
            if slope == 0:
                return None, None
        for _ in range(_MAX_BACKTRACKS):
            x_new = x + t * d
            f_new = self._evaluate(closure, x_new)
            state["func_evals"] += 1
            if f_new <= f + _C1 * t * slope:
                return x_new, f_new
            t *= _BACKTRACK
        return None, None
