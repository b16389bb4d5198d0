"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, forward and backward."""

__all__ = []
