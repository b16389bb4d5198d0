"""Automatic mixed precision: dlkern.autocast (op-policy casting) and GradScaler
(dynamic loss scaling for float16), as torch.amp."""

from .autocast import autocast, clear_autocast_cache, get_autocast_dtype, is_autocast_enabled
from .grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype", "clear_autocast_cache"]
