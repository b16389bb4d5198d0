"""dlkern.amp.GradScaler: dynamic loss scaling for float16 training, as torch.amp.GradScaler.

float16's smallest normal is 6e-5, so small gradients of an unscaled loss flush to zero.
The scaler multiplies the loss by ``scale`` before backward, divides the gradients back
(``unscale_``) before the optimizer sees them, skips the step when any gradient is inf or
NaN (the scale was too large) and halves the scale then; after ``growth_interval``
clean steps in a row it doubles the scale again. bfloat16 has float32's range and needs
none of this (PyTorch's recipes use no scaler with it).
"""

import math

import numpy as np

from ..functions.convert import host_array

_READY, _UNSCALED, _STEPPED = 0, 1, 2


class _OptState:
    __slots__ = ("stage", "found_inf")

    def __init__(self):
        self.stage = _READY
        self.found_inf = None  # None until unscale_ ran on this optimizer this iteration


def _finite(a):
    """Whether every value of a gradient array is finite (one reduction, no mask: float16,
    bfloat16 and float32 sums in float64 cannot overflow, so an inf/NaN sum means an
    inf/NaN value)."""
    a = host_array(a)
    if a.dtype == np.float64:
        return bool(np.isfinite(a).all())
    return math.isfinite(float(np.sum(a, dtype=np.float64)))


class GradScaler:
    """scaler = GradScaler(); loss -> scaler.scale(loss).backward(); scaler.unscale_(opt)
    (optional: before clipping); scaler.step(opt); scaler.update(). The scale and the
    growth counter are float32/int as PyTorch's (the scale is rounded to float32 on each
    change). With enabled=False every method is a pass-through."""

    def __init__(self, device="cpu", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"GradScaler: device must be 'cpu' or 'cuda', got {device!r}")
        if growth_factor <= 1.0:
            raise ValueError(f"GradScaler: The growth factor must be > 1.0, got {growth_factor}")
        if backoff_factor >= 1.0:
            raise ValueError(f"GradScaler: The backoff factor must be < 1.0, got {backoff_factor}")
        if not isinstance(growth_interval, int) or isinstance(growth_interval, bool) or growth_interval <= 0:
            raise ValueError(f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}")
        self._device = device
        self._enabled = bool(enabled)
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = growth_interval
        self._scale = None  # set by the first scale() (PyTorch's lazy init)
        self._growth_tracker = 0
        self._opt_states = {}

    # ------------------------------------------------------------------ the step
    def scale(self, outputs):
        """outputs (a tensor, or nested lists/tuples of them) times the scale."""
        if not self._enabled:
            return outputs
        if self._scale is None:
            self._scale = float(np.float32(self._init_scale))
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not hasattr(outputs, "grad_fn"):
            raise TypeError(f"GradScaler.scale: outputs must be a Tensor or a list/tuple of them, "
                            f"got {type(outputs).__name__}")
        return outputs * self._scale

    def _state(self, optimizer):
        st = self._opt_states.get(id(optimizer))
        if st is None:
            st = self._opt_states[id(optimizer)] = _OptState()
        return st

    def unscale_(self, optimizer):
        """Divides optimizer's gradients by the scale in place (once per step, before
        clipping) and records whether any is inf/NaN."""
        if not self._enabled:
            return
        self._check_scale("unscale_")
        st = self._state(optimizer)
        if st.stage == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if st.stage == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv = float(np.float32(1.0 / self._scale))  # (PyTorch: reciprocal in float64, then float32)
        found = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.data.dtype == np.float16:
                    raise ValueError("Attempting to unscale FP16 gradients.")
                g.data *= inv
                if not found and not _finite(g.data):
                    found = True
        st.found_inf = found
        st.stage = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """optimizer.step(*args, **kwargs) unless a gradient was inf/NaN (then None);
        unscales first when unscale_ was not called."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check_scale("step")
        st = self._state(optimizer)
        if st.stage == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if st.stage == _READY:
            self.unscale_(optimizer)
        if st.found_inf is None:
            raise RuntimeError("No inf checks were recorded for this optimizer.")
        ret = None if st.found_inf else optimizer.step(*args, **kwargs)
        st.stage = _STEPPED
        return ret

    def update(self, new_scale=None):
        """Backs the scale off after a step with inf/NaN gradients, grows it after
        growth_interval clean steps (or sets it to new_scale); starts the next iteration."""
        if not self._enabled:
            return
        self._check_scale("update")
        if new_scale is not None:
            if hasattr(new_scale, "grad_fn"):  # a one-element float32 tensor, as PyTorch accepts
                if new_scale.numel() != 1 or new_scale.dtype != np.float32 or new_scale.requires_grad:
                    raise ValueError("new_scale should be a float or a 1-element float32 Tensor with "
                                     "requires_grad=False.")
                new_scale = new_scale.item()
            self._scale = float(np.float32(new_scale))
        else:
            found = [st.found_inf for st in self._opt_states.values() if st.found_inf is not None]
            if not found:
                raise RuntimeError("No inf checks were recorded prior to update.")
            if any(found):
                self._scale = float(np.float32(self._scale) * np.float32(self._backoff_factor))
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    with np.errstate(over="ignore"):
                        grown = np.float32(self._scale) * np.float32(self._growth_factor)
                    if np.isfinite(grown):  # (an overflowing scale stays where it is)
                        self._scale = float(grown)
                    self._growth_tracker = 0
        self._opt_states = {}

    def _check_scale(self, op):
        if self._scale is None:
            raise RuntimeError(f"Attempted {op} but the scale is unset: call scaler.scale(loss) earlier in "
                               f"the iteration.")

    # ------------------------------------------------------------------ accessors
    def get_scale(self):
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else self._scale

    def is_enabled(self):
        return self._enabled

    def get_growth_factor(self):
        return self._growth_factor

    def set_growth_factor(self, new_factor):
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self):
        return self._backoff_factor

    def set_backoff_factor(self, new_factor):
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self):
        return self._growth_interval

    def set_growth_interval(self, new_interval):
        self._growth_interval = int(new_interval)

    def state_dict(self):
        """PyTorch's keys: scale, growth_factor, backoff_factor, growth_interval,
        _growth_tracker ({} when disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._init_scale = float(state_dict["scale"])
        if self._scale is not None:
            self._scale = float(np.float32(self._init_scale))
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])

    def __repr__(self):
        return f"GradScaler(scale={self.get_scale()}, enabled={self._enabled})"
