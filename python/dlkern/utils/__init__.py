"""dlkern.utils: model inspection (summary, count_parameters) and gradient norms."""

from .summary import summary, count_parameters, ModelSummary, LayerRow
from .grad_norms import grad_norms, total_grad_norm, largest_grad_norm, format_grad_norms

__all__ = ["summary", "count_parameters", "ModelSummary", "LayerRow", "grad_norms", "total_grad_norm",
           "largest_grad_norm", "format_grad_norms"]

# ---- robust training (issue 15): gradient checkpointing
from .checkpoint import checkpoint, checkpoint_sequential
__all__ += ["checkpoint", "checkpoint_sequential"]
# ---- end robust training
