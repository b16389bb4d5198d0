"""softmax and log_softmax over any axis, forward and backward."""

__all__ = []
