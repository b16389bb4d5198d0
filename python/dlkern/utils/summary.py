"""summary(model, ...): a per-layer table of a model (output shapes, parameters, FLOPs,
multiply-adds, activation memory) from one forward under no_grad, and count_parameters.

Conventions (what the numbers count):

* A multiply-add (MAC) is 2 FLOPs, and FLOPs count only the multiply-adds of matrix
  products and convolutions: FLOPs = 2 * MACs for every layer. Bias adds, norms,
  activations, pooling, dropout, softmax, embedding lookups and residual adds count 0
  (they are O(activations), small next to the products, and their cost depends on the
  kernel: a fused GELU is not 8 FLOPs an element on every device).
* Linear: MACs = in_features * out_features per row of the input (per sample, times the
  sequence positions for (N, T, in) inputs); bias adds are not counted.
* Conv1d/Conv2d: MACs = K * C_in / groups * C_out * (output positions) per sample, K the
  kernel area (dilation and padding change only the output size).
* MultiheadAttention: its q/k/v projections (T * E * E + 2 * S * E_kv * kdim per sample)
  plus the attention proper, QK^T and AV: 2 * T * S * head_dim MACs per head (4 * T^2 *
  head_dim FLOPs for self-attention); a causal mask is not discounted. Its out_proj is a
  child Linear and counts there.
* dlkern.models.GPT: its output head (F.linear on the tied embedding, not a call of
  lm_head) is counted as the GPT's own: T * d_model * vocab MACs per sample.
* Parameters: each row shows the parameters of its subtree; shared (tied) parameters are
  counted once in the totals (and as own parameters only of the first module that holds
  them, in named_modules order). Parameter memory: bytes of the distinct parameters.
* Activation memory: bytes of the distinct tensors the module calls returned (a tensor
  returned by several nested modules, like a Sequential's last layer's output, counts once).

The forward runs in eval mode (no dropout, BatchNorm uses its running statistics: the
model's state and dlkern's random generator are left as they were) and the training
flags are restored afterwards.
"""

import numpy as np

from ..autograd import no_grad
from ..device import device as get_device
from ..dtypes import as_dtype
from ..tensor import Tensor
from .. import nn

__all__ = ["summary", "count_parameters", "ModelSummary", "LayerRow"]


def count_parameters(model, trainable_only=False):
    """Number of parameter elements of `model` (tied parameters once); trainable_only:
    only those with requires_grad."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters: model must be a dlkern.nn.Module, got {type(model).__name__}")
    return sum(int(p.data.size) for p in model.parameters() if p.requires_grad or not trainable_only)


# The multiply-adds of a module's own computation in one call come from the module:
# ``count_macs(args, kwargs, output)`` defined next to its forward (nn.Linear, the convs,
# nn.MultiheadAttention, models.GPT, ...), so a new layer counts itself in its own class.


# ---------------------------------------------------------------------- results

class LayerRow:
    """One module of the summary. name: dotted path ("" for the model); type; depth
    (0 for the model); output_shape (a tuple, a list of tuples for several tensor
    outputs, None when the module was not called); calls; params / trainable_params
    (its subtree, each parameter once); own_params (parameters it holds first, so they
    sum to the total); flops / macs (its subtree) and own_flops / own_macs; activation_bytes
    (its outputs, every call)."""

    __slots__ = ("name", "type", "depth", "output_shape", "calls", "params", "trainable_params", "own_params",
                 "own_macs", "macs", "activation_bytes")

    def __init__(self, name, type_name, depth):
        self.name, self.type, self.depth = name, type_name, depth
        self.output_shape, self.calls = None, 0
        self.params = self.trainable_params = self.own_params = 0
        self.own_macs = self.macs = self.activation_bytes = 0

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def own_flops(self):
        return 2 * self.own_macs

    def __repr__(self):
        return (f"LayerRow({self.name or '<model>'}: {self.type}, out={self.output_shape}, params={self.params}, "
                f"macs={self.macs})")


class ModelSummary:
    """What summary() returns: str() is the table; rows (LayerRow, named_modules order)
    and the totals are attributes: total_params, trainable_params, non_trainable_params,
    total_macs, total_flops, activation_bytes, param_bytes, input_bytes."""

    def __init__(self, model_name, rows, depth, totals):
        self.model_name, self.rows, self.depth = model_name, rows, depth
        for k, v in totals.items():
            setattr(self, k, v)

    @property
    def total_flops(self):
        return 2 * self.total_macs

    @property
    def non_trainable_params(self):
        return self.total_params - self.trainable_params

    def __str__(self):
        header = ("Layer (type)", "Output shape", "Params", "Trainable", "MACs", "FLOPs", "Act. bytes")
        lines = []
        for r in self.rows:
            if r.depth > self.depth:
                continue
            label = self.model_name if not r.name else "  " * r.depth + f"{r.name.rsplit('.', 1)[-1]} ({r.type})"
            if r.calls > 1:
                label += f" x{r.calls}"
            lines.append((label, _shape_str(r.output_shape), f"{r.params:,}", f"{r.trainable_params:,}",
                          f"{r.macs:,}", f"{r.flops:,}", f"{r.activation_bytes:,}"))
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

        def fmt(cells):
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "-" * len(fmt(header))
        out = [rule, fmt(header), rule] + [fmt(line) for line in lines] + [rule]
        out += [f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.non_trainable_params:,}",
                f"Total MACs: {self.total_macs:,} ({_scaled(self.total_macs)})",
                f"Total FLOPs: {self.total_flops:,} ({_scaled(self.total_flops)})",
                f"Input size: {_scaled_bytes(self.input_bytes)}",
                f"Activation memory: {_scaled_bytes(self.activation_bytes)}",
                f"Parameter memory: {_scaled_bytes(self.param_bytes)}",
                rule]
        return "\n".join(out)

    __repr__ = __str__


def _shape_str(shape):
    if shape is None:
        return "--"
    if isinstance(shape, list):
        return ", ".join(str(list(s)) for s in shape)
    return str(list(shape))


def _scaled(n):
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _scaled_bytes(n):
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


# ---------------------------------------------------------------------- summary

def _tensors(value):
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _model_dtype_device(model):
    for p in model.parameters():
        return p.data.dtype, p.device
    return np.dtype(np.float32), get_device("cpu")


def _make_inputs(model, input_size, input_data, dtypes, device):
    if (input_size is None) == (input_data is None):
        raise ValueError("summary: give exactly one of input_size (a shape, or a list of shapes) and input_data")
    default_dtype, default_device = _model_dtype_device(model)
    dev = get_device(device) if device is not None else default_device
    if input_data is not None:
        if isinstance(input_data, dict):
            return (), dict(input_data)
        if isinstance(input_data, (tuple, list)) and not isinstance(input_data, Tensor):
            return tuple(input_data), {}
        return (input_data,), {}
    sizes = input_size
    if isinstance(sizes, (tuple, list)) and sizes and all(isinstance(s, (int, np.integer)) for s in sizes):
        sizes = [sizes]
    if not isinstance(sizes, (tuple, list)) or not sizes or not all(
            isinstance(s, (tuple, list)) and all(isinstance(d, (int, np.integer)) and d >= 0 for d in s)
            for s in sizes):
        raise ValueError(f"summary: input_size must be a shape (a tuple of sizes >= 0, batch first) or a list "
                         f"of shapes, got {input_size!r}")
    if dtypes is None:
        dtypes = [default_dtype] * len(sizes)
    elif not isinstance(dtypes, (tuple, list)):
        dtypes = [dtypes] * len(sizes)
    if len(dtypes) != len(sizes):
        raise ValueError(f"summary: {len(dtypes)} dtypes for {len(sizes)} inputs")
    rng = np.random.default_rng(0)  # (dlkern's generator is left alone)
    args = []
    for shape, dt in zip(sizes, dtypes):
        dt = np.dtype(as_dtype(dt))
        host = rng.standard_normal(tuple(shape)).astype(dt) if dt.kind == "f" else np.zeros(tuple(shape), dt)
        args.append(Tensor._from_host(host, dev, False))
    return tuple(args), {}


def summary(model, input_size=None, input_data=None, dtypes=None, device=None, depth=3):
    """Run one forward of `model` under no_grad (eval mode, restored after) with a
    forward hook on every module and return a ModelSummary: str() is a per-layer table
    (nesting shown down to `depth`; deeper modules still count in the totals) with the
    totals; the numbers are its attributes (see ModelSummary, LayerRow and this module's
    docstring for what FLOPs, MACs and the memory figures count).

    input_size: the shape of the input, batch dimension first (or a list of shapes for
    several positional inputs), filled with standard normal values (zeros for integer
    dtypes, e.g. the tokens of a GPT: dtypes=[np.int64]); dtypes: one per input (default:
    the model's parameter dtype); device: where they are made (default: the model's).
    input_data: the inputs themselves instead (a Tensor, a tuple/list of positional
    arguments, or a dict of keyword arguments).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: model must be a dlkern.nn.Module, got {type(model).__name__}")
    if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"summary: depth must be an int >= 0, got {depth!r}")
    args, kwargs = _make_inputs(model, input_size, input_data, dtypes, device)
    named = list(model.named_modules())
    rows = {}
    for name, m in named:
        rows[id(m)] = LayerRow(name, type(m).__name__, name.count(".") + 1 if name else 0)
    outputs = []  # every returned tensor, alive until the end so that id() stays unique

    def hook(m, a, kw, out):
        row = rows[id(m)]
        row.calls += 1
        tensors = _tensors(out)
        shapes = [tuple(t.shape) for t in tensors]
        row.output_shape = (shapes[0] if len(shapes) == 1 else shapes) if shapes else None
        row.activation_bytes += sum(int(t.data.nbytes) for t in tensors)
        outputs.extend(tensors)
        count = getattr(m, "count_macs", None)
        if count is not None:
            row.own_macs += int(count(a, kw, out))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for _, m in named]
    modes = [(m, m.training) for _, m in named]
    try:
        model.eval()
        with no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            object.__setattr__(m, "training", mode)

    seen = set()
    for name, m in named:
        row = rows[id(m)]
        subtree = list(m.parameters())
        row.params = sum(int(p.data.size) for p in subtree)
        row.trainable_params = sum(int(p.data.size) for p in subtree if p.requires_grad)
        for p in m._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                row.own_params += int(p.data.size)
        row.macs = sum(rows[id(s)].own_macs for _, s in m.named_modules())
    params = list(model.parameters())
    distinct = {id(t): t for t in outputs}
    totals = dict(total_params=count_parameters(model), trainable_params=count_parameters(model, True),
                  total_macs=rows[id(model)].macs,
                  activation_bytes=sum(int(t.data.nbytes) for t in distinct.values()),
                  param_bytes=sum(int(p.data.nbytes) for p in params),
                  input_bytes=sum(int(t.data.nbytes) for t in _tensors((args, kwargs))))
    return ModelSummary(type(model).__name__, [rows[id(m)] for _, m in named], depth, totals)
