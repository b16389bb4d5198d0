"""dlkern.utils: model inspection (summary, count_parameters)."""

from .summary import summary, count_parameters, ModelSummary, LayerRow

__all__ = ["summary", "count_parameters", "ModelSummary", "LayerRow"]
