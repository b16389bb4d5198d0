"""Convolution: conv2d, conv1d (causal and streaming), forward and backward."""

__all__ = []
