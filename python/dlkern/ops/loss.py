"""Fused losses: cross-entropy (log-softmax + NLL), forward and backward."""

__all__ = []
