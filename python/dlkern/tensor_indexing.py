"""The indexing and reordering methods of dlkern.Tensor (a mixin of TensorMethods):
gather, scatter(_), scatter_add(_), index_select, masked_fill(_), sort, argsort, topk,
flip, roll, repeat, tile, repeat_interleave, diag.

Here the arguments are checked against PyTorch's rules (names, defaults, error types)
and normalised; the Functions in dlkern.functions.indexing compute. Index tensors are
int64 (int32 is accepted and widened, as PyTorch does) and must be in range: PyTorch's
gather/scatter/index_select refuse negative indices, so these do too (NumPy would wrap
them). On CUDA the range check reads the index's min and max back to the host (two
small synchronisations), because the kernels accept negative indices."""

import collections
import numbers
import operator

import numpy as np

from . import functions as _F
from .autograd import TensorBase, no_grad
from .autograd.grad_mode import GradMode

SortResult = collections.namedtuple("sort", ["values", "indices"])
TopKResult = collections.namedtuple("topk", ["values", "indices"])

_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


def normalize_dim(op, dim, ndim):
    """dim as a non-negative int; IndexError as PyTorch outside [-n, n) (a 0-d tensor
    takes dims -1 and 0)."""
    if isinstance(dim, bool) or not hasattr(type(dim), "__index__"):
        raise TypeError(f"{op}(): argument 'dim' must be int, not {type(dim).__name__}")
    dim = operator.index(dim)
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}(): Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


def _int_list(op, arg, values):
    """An int or a sequence of ints as a tuple (TypeError otherwise)."""
    seq = (values,) if not isinstance(values, (tuple, list)) else tuple(values)
    try:
        if any(isinstance(v, bool) for v in seq):
            raise TypeError
        return tuple(operator.index(v) for v in seq)
    except TypeError:
        raise TypeError(f"{op}(): argument '{arg}' must be an int or a tuple of ints, got {values!r}") from None


def _index_array(op, t, index):
    """index's int64 array after PyTorch's checks: a Tensor, of an integer dtype, on t's
    device."""
    if not isinstance(index, TensorBase):
        raise TypeError(f"{op}(): argument 'index' must be Tensor, not {type(index).__name__}")
    if index.dtype not in _INDEX_DTYPES:
        raise RuntimeError(f"{op}(): Expected dtype int32/int64 for index, got {index.dtype}")
    if index.device != t.device:
        raise RuntimeError(f"{op}(): index is on {index.device} but the tensor is on {t.device}")
    data = index.data
    return data if data.dtype == np.int64 else data.astype(np.int64)


def _check_range(op, device, index, size, dim):
    """RuntimeError naming op and 'index' when an entry lies outside [0, size)."""
    if not index.size:
        return
    bounds = device.host_bounds(index)
    if bounds is None:  # a device array: read its extremes back (the kernels would wrap negatives)
        bounds = (index.min().item(), index.max().item())
    lo, hi = int(bounds[0]), int(bounds[1])
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        raise RuntimeError(f"{op}(): index {bad} is out of bounds for dimension {dim} with size {size} "
                           f"(argument 'index')")


def _check_index_shape(op, t, dim, index, src=None):
    """PyTorch's gather/scatter shape rule: index has t's ndim; index.size(d) <=
    t.size(d) for d != dim, and <= src.size(d) for every d."""
    if index.ndim != t.ndim:
        raise RuntimeError(f"{op}(): Index tensor must have the same number of dimensions as input tensor "
                           f"(index has {index.ndim}, input has {t.ndim})")
    for d, (i, n) in enumerate(zip(index.shape, t.shape)):
        if d != dim and i > n:
            raise RuntimeError(f"{op}(): Size does not match at dimension {d}: expected index "
                               f"{list(index.shape)} to be no larger than self {list(t.shape)} apart from "
                               f"dimension {dim}")
    if src is not None:
        if src.ndim != index.ndim:
            raise RuntimeError(f"{op}(): Index tensor must have the same number of dimensions as src tensor "
                               f"(index has {index.ndim}, src has {src.ndim})")
        if any(i > n for i, n in zip(index.shape, src.shape)):
            raise RuntimeError(f"{op}(): Expected index {list(index.shape)} to be no larger size than src "
                               f"{list(src.shape)}")


def _src_tensor(op, t, src):
    if not isinstance(src, TensorBase):
        raise TypeError(f"{op}(): argument 'src' must be Tensor, not {type(src).__name__}")
    if src.dtype != t.dtype:
        raise RuntimeError(f"{op}(): Expected self.dtype to be equal to src.dtype ({t.dtype} and {src.dtype})")
    if src.device != t.device:
        raise RuntimeError(f"{op}(): src is on {src.device} but the tensor is on {t.device}")


def _number(op, value, arg="value"):
    """A real number (a Python or NumPy scalar, or a 0-d NumPy array's element)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (numbers.Real, np.bool_)):
        return value
    raise TypeError(f"{op}(): argument '{arg}' must be a number or a 0-dim Tensor, got {type(value).__name__}")


class IndexingMethods(TensorBase):
    """Indexing and reordering methods of dlkern.Tensor; see the module docstring."""

    __slots__ = ()

    # ------------------------------------------------------------------ gather / scatter
    def _along(self, op, dim, index, src=None):
        """(self, dim, int64 index array, src) checked, with a 0-d self (and 0-d index and
        src) seen as 1-D; the caller reshapes the result back to index's shape."""
        dim = normalize_dim(op, dim, self.ndim)
        idx = _index_array(op, self, index)
        t = self
        if self.ndim == 0:
            t = self.reshape(1)
            idx = idx.reshape(1) if idx.ndim == 0 else idx
            if isinstance(src, TensorBase) and src.ndim == 0:
                src = src.reshape(1)
        _check_index_shape(op, t, dim, idx, src if isinstance(src, TensorBase) else None)
        _check_range(op, self.device, idx, t.shape[dim], dim)
        return t, dim, idx, src

    def gather(self, dim, index, *, sparse_grad=False):
        """out[i][j] = self[index[i][j]][j] (dim 0), ... as torch.gather; differentiable
        (a dense gradient: there are no sparse tensors)."""
        if sparse_grad:
            raise NotImplementedError("gather(): sparse_grad=True is not supported (dlkern has no sparse tensors)")
        t, dim, idx, _ = self._along("gather", dim, index)
        out = _F.Gather.apply(t, dim, idx)
        return out.reshape(index.shape) if self.ndim == 0 else out

    def scatter(self, dim, index, src=None, value=None, *, reduce=None):
        """A copy of self with src (a tensor) or value (a number) written at the positions
        index names along dim. reduce= is not supported (use scatter_add)."""
        if reduce is not None:
            raise NotImplementedError(f"scatter(): reduce={reduce!r} is not supported; use scatter_add "
                                      f"(reduce='add')")
        if src is None and value is None:
            raise TypeError("scatter(): expected src (a Tensor) or value (a number)")
        if src is not None and value is not None:
            raise TypeError("scatter(): pass src or value, not both")
        if src is None or not isinstance(src, TensorBase):
            src = _number("scatter", value if src is None else src)
        else:
            _src_tensor("scatter", self, src)
        t, dim, idx, src = self._along("scatter", dim, index, src)
        out = _F.Scatter.apply(t, dim, idx, src)
        return out.reshape(()) if self.ndim == 0 else out

    def scatter_add(self, dim, index, src):
        """A copy of self with src added at the positions index names along dim (repeated
        positions accumulate); differentiable in self and src."""
        _src_tensor("scatter_add", self, src)
        t, dim, idx, src = self._along("scatter_add", dim, index, src)
        out = _F.ScatterAdd.apply(t, dim, idx, src)
        return out.reshape(()) if self.ndim == 0 else out

    def index_select(self, dim, index):
        """The entries index[0], index[1], ... of self along dim (index 0-d or 1-D)."""
        dim = normalize_dim("index_select", dim, self.ndim)
        idx = _index_array("index_select", self, index)
        if idx.ndim > 1:
            raise IndexError(f"index_select(): Index is supposed to be a vector, got {idx.ndim} dimensions")
        idx = idx.reshape(-1)
        if self.ndim == 0 and idx.size != 1:
            raise RuntimeError(f"index_select(): Index to scalar can have only 1 value, got {idx.size} value(s)")
        _check_range("index_select", self.device, idx, self.shape[dim] if self.ndim else 1, dim)
        return _F.IndexSelect.apply(self, dim, idx)

    # ------------------------------------------------------------------ masked_fill
    def _mask_value(self, op, mask, value):
        """(mask array, value) checked: mask bool, on self's device, broadcastable with
        self; value a number or a 0-d tensor."""
        if isinstance(mask, TensorBase):
            if mask.device != self.device:
                raise RuntimeError(f"{op}(): mask is on {mask.device} but the tensor is on {self.device}")
            m = mask.data
        else:
            m = np.asarray(mask)
            if isinstance(m, np.ndarray):
                m = self.device.from_host(m)
        if m.dtype != np.bool_:
            raise TypeError(f"{op}(): only supports boolean masks, but got mask with dtype {m.dtype}")
        try:
            np.broadcast_shapes(tuple(m.shape), tuple(self.shape))
        except ValueError:
            raise RuntimeError(f"{op}(): the shape of the mask {list(m.shape)} must be broadcastable with the "
                               f"tensor's shape {list(self.shape)}") from None
        if isinstance(value, TensorBase):
            if value.ndim != 0:
                raise RuntimeError(f"{op}() only supports a 0-dimensional value tensor, but got tensor with "
                                   f"{value.ndim} dimension(s).")
        else:
            value = _number(op, value)
        return m, value

    def masked_fill(self, mask, value):
        """Where `mask` (bool, broadcastable) is true, `value` (a number or a 0-d tensor,
        which then gets a gradient); elsewhere self."""
        m, value = self._mask_value("masked_fill", mask, value)
        return _F.MaskedFill.apply(self, m, value)

    # ------------------------------------------------------------------ in place
    def _write(self, op, compute, *others):
        """self with compute(self.detach())'s values written into it, under tensor.py's
        in-place rules, and PyTorch's: the result keeps self's shape."""
        self._inplace_ok()
        if GradMode.enabled and any(isinstance(o, TensorBase) and o.requires_grad for o in others):
            raise RuntimeError(f"{op}: in-place operation with an argument that requires grad is not supported "
                               f"while grad mode is on; use the out-of-place {op[:-1]} or dlkern.no_grad()")
        with no_grad():
            out = compute(self.detach())
        if tuple(out.shape) != tuple(self.shape):
            raise RuntimeError(f"{op}: output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(out.shape)}")
        self.data[...] = out.data
        return self

    def scatter_(self, dim, index, src=None, value=None, *, reduce=None):
        return self._write("scatter_", lambda t: t.scatter(dim, index, src, value, reduce=reduce), src)

    def scatter_add_(self, dim, index, src):
        return self._write("scatter_add_", lambda t: t.scatter_add(dim, index, src), src)

    def masked_fill_(self, mask, value):
        return self._write("masked_fill_", lambda t: t.masked_fill(mask, value), value)

    # ------------------------------------------------------------------ sort / topk
    def _sort_indices(self, op, dim, descending, stable=True):
        """(dim, int64 indices that sort self along dim), NaN largest (as PyTorch); equal
        entries keep their order when `stable`. Only the CPU has a sort primitive."""
        dim = normalize_dim(op, dim, self.ndim)
        try:
            argsort = self.device.argsort
        except NotImplementedError:
            raise NotImplementedError(f"{op}() is not implemented on device '{self.device.type}' (no sort "
                                      f"kernel); move the tensor to the CPU with .cpu() first") from None
        a = self.data.reshape(1) if self.ndim == 0 else self.data
        kind = "stable" if stable else None  # NumPy's default sort is ~2.5x faster
        if not descending:
            idx = argsort(a, axis=dim, kind=kind)
        else:
            # A stable descending order with NaN first: sort the reversed axis ascending
            # (NaN last), reverse the order, map positions back. Equal elements keep
            # their original order, as torch.sort(stable=True, descending=True).
            rev = tuple(slice(None, None, -1) if d == dim else slice(None) for d in range(a.ndim))
            idx = (a.shape[dim] - 1) - argsort(a[rev], axis=dim, kind=kind)[rev]
        return dim, self.device.contiguous(idx.astype(np.int64, copy=False))

    def _take_sorted(self, dim, idx):
        values = _F.Gather.apply(self.reshape(1) if self.ndim == 0 else self, dim, idx)
        if self.ndim == 0:
            values, idx = values.reshape(()), idx.reshape(())
        return values, self._make(idx, self.device, False, None)

    def sort(self, dim=-1, descending=False, *, stable=False):
        """(values, indices) sorted along dim; NaN sorts as the largest value. stable=True
        keeps equal entries in their order; otherwise ties come in any order."""
        dim, idx = self._sort_indices("sort", dim, descending, stable)
        return SortResult(*self._take_sorted(dim, idx))

    def argsort(self, dim=-1, descending=False, stable=False):
        dim, idx = self._sort_indices("argsort", dim, descending, stable)
        return self._make(idx.reshape(()) if self.ndim == 0 else idx, self.device, False, None)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """(values, indices) of the k largest (smallest) entries along dim, in order (also
        for sorted=False, whose order PyTorch leaves open). Which of equal entries are
        picked is left open, as in PyTorch (an unstable sort: ~3x faster here)."""
        dim = -1 if dim is None else dim
        n = self.shape[normalize_dim("topk", dim, self.ndim)] if self.ndim else 1
        if isinstance(k, bool) or not hasattr(type(k), "__index__"):
            raise TypeError(f"topk(): argument 'k' must be int, not {type(k).__name__}")
        k = operator.index(k)
        if not 0 <= k <= n:
            raise RuntimeError(f"topk(): selected index k out of range (k={k}, the dimension has size {n})")
        dim, idx = self._sort_indices("topk", dim, largest, stable=False)
        if self.ndim:
            idx = self.device.contiguous(idx[tuple(slice(0, k) if d == dim else slice(None)
                                                   for d in range(self.ndim))])
        return TopKResult(*self._take_sorted(dim, idx))

    # ------------------------------------------------------------------ reordering
    def flip(self, *dims):
        """A copy with the order of the entries along each of dims reversed."""
        if not dims:
            raise TypeError("flip() missing 1 required positional argument: 'dims'")
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        dims = [normalize_dim("flip", d, self.ndim) for d in _int_list("flip", "dims", list(dims))]
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"flip(): dim {dims[0]} appears multiple times in the list of dims")
        if self.ndim == 0:
            return _F.Flip.apply(self, ())
        return _F.Flip.apply(self, tuple(dims))

    def roll(self, shifts, dims=None):
        """Entries shifted by shifts along dims, wrapping around; dims=None rolls the
        flattened tensor and restores its shape."""
        shifts = _int_list("roll", "shifts", shifts)
        if dims is None:
            if len(shifts) != 1:
                raise RuntimeError(f"roll(): shifts and dimensions must align. shifts: {len(shifts)}, dims: 0")
            return _F.Roll.apply(self.reshape(-1), shifts, (0,)).reshape(self.shape)
        dims = _int_list("roll", "dims", dims)
        if not shifts:
            raise RuntimeError("roll(): `shifts` required")
        if len(shifts) != len(dims):
            raise RuntimeError(f"roll(): shifts and dimensions must align. shifts: {len(shifts)}, dims: {len(dims)}")
        if self.ndim == 0:
            raise IndexError(f"roll(): Dimension specified as {dims[0]} but tensor has no dimensions")
        return _F.Roll.apply(self, shifts, tuple(normalize_dim("roll", d, self.ndim) for d in dims))

    def repeat(self, *sizes):
        """self tiled sizes[i] times along axis i (len(sizes) >= ndim; leading axes added)."""
        if not sizes:
            raise TypeError("repeat() missing 1 required positional arguments: \"repeats\"")
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = sizes[0]
        sizes = _int_list("repeat", "repeats", list(sizes))
        if len(sizes) < self.ndim:
            raise RuntimeError(f"repeat(): Number of dimensions of repeat dims ({len(sizes)}) can not be smaller "
                               f"than number of dimensions of tensor ({self.ndim})")
        if any(r < 0 for r in sizes):
            raise RuntimeError(f"repeat(): Trying to create tensor with negative dimension: repeats {list(sizes)}")
        return _F.Repeat.apply(self, sizes)

    def tile(self, *dims):
        """torch.tile: repeat, with dims padded by leading 1s to self's ndim."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        dims = _int_list("tile", "dims", list(dims))
        return self.repeat((1,) * max(self.ndim - len(dims), 0) + dims)

    def repeat_interleave(self, repeats=None, dim=None, *, output_size=None):
        """Each entry repeated `repeats` times (an int, or a 0-d/1-D integer tensor with a
        count per entry) along dim, or over the flattened tensor when dim is None. With
        repeats None, self holds the counts and the result repeats their positions."""
        if repeats is None:
            positions = self._from_host(np.arange(self.numel(), dtype=np.int64), self.device, False)
            return positions.repeat_interleave(self, 0, output_size=output_size)
        if dim is None:
            return self.reshape(-1).repeat_interleave(repeats, 0, output_size=output_size)
        dim = normalize_dim("repeat_interleave", dim, self.ndim)
        if self.ndim == 0:
            raise IndexError(f"repeat_interleave(): Dimension specified as {dim} but tensor has no dimensions")
        n = self.shape[dim]
        counts = self._repeat_counts(repeats, n)
        if output_size is not None and output_size != int(counts.sum()):
            raise RuntimeError(f"repeat_interleave(): Invalid output_size, expected {int(counts.sum())} but got "
                               f"{output_size}")
        idx = np.repeat(np.arange(n, dtype=np.int64), counts)
        return _F.IndexSelect.apply(self, dim, self.device.to_device(idx))

    def _repeat_counts(self, repeats, n):
        """The host int64 array of n repeat counts from an int or an integer tensor."""
        if isinstance(repeats, TensorBase):
            if repeats.dtype not in _INDEX_DTYPES:
                raise RuntimeError(f"repeat_interleave(): repeats must be an integer tensor, got {repeats.dtype}")
            if repeats.ndim > 1:
                raise RuntimeError("repeat_interleave(): repeats must be 0-dim or 1-dim tensor")
            counts = repeats.device.to_host(repeats.data).astype(np.int64).reshape(-1)
            if counts.size == 1:
                counts = np.repeat(counts, n)
            elif counts.size != n:
                raise RuntimeError(f"repeat_interleave(): repeats must have the same size as input along dim, but "
                                   f"got repeats.size(0) = {counts.size} and input.size(dim) = {n}")
        elif isinstance(repeats, bool) or not hasattr(type(repeats), "__index__"):
            raise TypeError(f"repeat_interleave(): argument 'repeats' must be int or Tensor, not "
                            f"{type(repeats).__name__}")
        else:
            counts = np.full(n, operator.index(repeats), dtype=np.int64)
        if counts.size and counts.min() < 0:
            raise RuntimeError("repeat_interleave(): repeats can not be negative")
        return counts

    def diag(self, diagonal=0):
        """1-D -> the square matrix with self on diagonal `diagonal`; 2-D -> that diagonal
        as a 1-D copy. Both differentiable."""
        if isinstance(diagonal, bool) or not hasattr(type(diagonal), "__index__"):
            raise TypeError(f"diag(): argument 'diagonal' must be int, not {type(diagonal).__name__}")
        if self.ndim not in (1, 2):
            raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {self.ndim}D")
        return _F.Diag.apply(self, operator.index(diagonal))
