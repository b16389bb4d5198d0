"""Normalisation: layer_norm, rms_norm, group_norm, batch_norm, forward and backward."""

__all__ = []
