"""``train --amp bf16|fp16``: the mixed-precision part of a training step, in one place
for both loops (fit() for MLP/LeNet, the language-model loop).

As PyTorch's recipes: autocast around forward and loss; float16 adds a GradScaler (its
5-bit exponent underflows small gradients), bfloat16 (float32's range) does not. The
parameters stay float32 (the master weights); the optimizer never sees 16-bit values.
"""

from __future__ import annotations

import contextlib

from ..amp import GradScaler, autocast
from ..dtypes import bfloat16, float16

AMP_MODES = ("bf16", "fp16")
_DTYPES = {"bf16": bfloat16, "fp16": float16}


def add_amp_argument(p) -> None:
    p.add_argument("--amp", choices=AMP_MODES, default=None,
                   help="mixed precision: autocast forward and loss to bfloat16 or float16 (float16 with "
                        "dynamic loss scaling); parameters stay float32 (default: off)")


class MixedPrecision:
    """The step's precision policy: ``with amp.autocast(): loss = ...``, then
    ``amp.backward(loss)``, ``amp.unscale_(opt)`` (before reading or clipping gradients)
    and ``amp.step(opt)``. With mode None every part is the plain float32 step."""

    def __init__(self, mode=None, device_type="cpu"):
        if mode is not None and mode not in AMP_MODES:
            raise ValueError(f"amp: mode must be one of {AMP_MODES} or None, got {mode!r}")
        self.mode = mode
        self._autocast = autocast(device_type, dtype=_DTYPES[mode]) if mode else None
        self.scaler = GradScaler(device_type, enabled=mode == "fp16")

    def autocast(self):
        return self._autocast if self._autocast is not None else contextlib.nullcontext()

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def unscale_(self, optimizer):
        self.scaler.unscale_(optimizer)

    def step(self, optimizer):
        """optimizer.step() (skipped by the scaler after inf/NaN float16 gradients), then
        the scale update."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self):
        """What a checkpoint keeps: the mode and the loss scaler's state."""
        return {"mode": self.mode, "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state):
        if state is None:
            return  # a checkpoint written before --amp existed, or without it
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def describe(self):
        return "float32" if self.mode is None else f"autocast {self.mode}" + (
            " + GradScaler" if self.mode == "fp16" else "")
