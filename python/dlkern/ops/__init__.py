"""Ops on NumPy arrays, no autograd: each is one call into the compiled kernels.

Arrays cross into C++ without copies; float32 is the fast path and float64 works
everywhere. Bad arguments raise TypeError/ValueError naming the op and argument.
One module per op family; each lists its public names in ``__all__``, which are
re-exported here (``dlkern.ops.matmul``, ``dlkern.ops.softmax``, ...).
"""

from . import activation as _activation, attention as _attention, conv as _conv, loss as _loss
from . import matmul as _matmul, norm as _norm, pool as _pool, softmax as _softmax
from . import rnn as _rnn
from . import optim as _optim
from . import convert as _convert
from .activation import *  # noqa: F401,F403  (each family's __all__)
from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .convert import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403

# The functions shadow their family modules' names here (dlkern.ops.softmax is the function).
__all__ = [*_matmul.__all__, *_conv.__all__, *_pool.__all__, *_softmax.__all__, *_norm.__all__, *_loss.__all__,
           *_attention.__all__, *_activation.__all__, *_rnn.__all__, *_convert.__all__, *_optim.__all__]

# bfloat16/float16 operands: every kernel without a 16-bit path of its own computes them
# in float32 (ops/lowp.py). Left out: the kernels with their own 16-bit paths (gemm,
# matmul, convert: they refuse mixed dtypes, which the wrapper would widen), classes, and
# kv_cache_append, whose cache argument is written in place and too large to widen per
# call. Kernels that write into other arguments get the float32 values written back.
from . import lowp as _lowp  # noqa: E402

# The fused optimizer steps write every state argument in place and are meant for
# float32 master weights: a 16-bit array is refused by the kernel, not widened per call.
_NO_FLOAT32_INSIDE = {"gemm", "matmul", "convert", "Conv1dStream", "kv_cache_append", "adam_step", "sgd_step"}
_WRITES_ARGUMENTS = {"batch_norm", "batch_norm_forward", "lstm_layer_forward", "lstm_layer_backward",
                     "gru_layer_forward", "gru_layer_backward", "rnn_layer_forward", "rnn_layer_backward"}
_FORWARD_RESULTS = {"lstm_cell_forward": 2}  # (h, c, saved gates); every other *_forward: 1
for _name in __all__:
    if _name not in _NO_FLOAT32_INSIDE:
        globals()[_name] = _lowp.float32_inside(globals()[_name], _name, _name in _WRITES_ARGUMENTS,
                                                _FORWARD_RESULTS.get(_name, 1))
del _name
