"""Grad mode: whether Function.apply records the graph.

One process-wide flag (a class attribute, read on every op, so it must be cheap), as
the training loops here are single-threaded Python.
"""

import functools


class GradMode:
    enabled = True


def is_grad_enabled():
    return GradMode.enabled


class set_grad_enabled:
    """Context manager (and decorator) that sets grad mode, restoring it on exit."""

    def __init__(self, mode=True):
        self.mode = bool(mode)
        self.prev = GradMode.enabled
        GradMode.enabled = self.mode  # takes effect at once, like torch.set_grad_enabled(False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        GradMode.enabled = self.prev
        return False


class _GradModeContext:
    mode = True

    def __enter__(self):
        self.prev = GradMode.enabled
        GradMode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        GradMode.enabled = self.prev
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = GradMode.enabled
            GradMode.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                GradMode.enabled = prev
        return wrapper


class no_grad(_GradModeContext):
    """Inside ``with dlkern.no_grad():`` (or a function decorated with it) ops record no
    graph and their results do not require grad."""
    mode = False


class enable_grad(_GradModeContext):
    mode = True
