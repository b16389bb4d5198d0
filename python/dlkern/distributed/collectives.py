"""Collectives on Tensors and NumPy arrays, each one MPI call on the arrays' own buffers.

Every operand is checked here (host memory, C-contiguous, a dtype MPI reduces, matching
shapes), so a bad argument is a Python exception naming the call and the argument, never
a truncated message or a reduction over the wrong bytes. What one rank cannot check
alone (the other ranks passing the same shapes) is MPI's to report.

``async_op=True`` returns a ``Work`` whose ``wait()`` completes the call; the blocking
form is the same request waited on at once, so both honour the group's timeout.
"""

import numpy as np

from ..tensor import Tensor
from .process_group import _group, wait

# The dtypes MPI has a native type for (mpi4py maps them by their type code). The 16-bit
# floats have none: an all-reduce of them would need a user-defined reduction in Python.
_MPI_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                          np.uint8, np.uint16, np.uint32, np.uint64))


class ReduceOp:
    """The reductions ``all_reduce`` and ``reduce_scatter`` take (PyTorch's names)."""
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


_OPS = {ReduceOp.SUM: "SUM", ReduceOp.AVG: "SUM", ReduceOp.PRODUCT: "PROD", ReduceOp.MIN: "MIN",
        ReduceOp.MAX: "MAX"}


class Work:
    """A started collective; ``wait()`` completes it (then runs its finishing step)."""
    __slots__ = ("_request", "_op", "_finish", "_done", "_buffers")

    def __init__(self, request, op, finish=None, buffers=()):
        self._request = request
        self._buffers = buffers  # MPI reads and writes these until completion: keep them alive
        self._op = op
        self._finish = finish
        self._done = False

    def is_completed(self):
        """Test without blocking (this also lets MPI progress the transfer)."""
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None):
        """Block until done (at most the group's timeout, or ``timeout`` seconds)."""
        if not self._done:
            wait(self._request, self._op, timeout)
            self._complete()
        return True

    def _complete(self):
        self._done = True
        self._buffers = ()
        _PENDING.discard(self)
        if self._finish is not None:
            finish, self._finish = self._finish, None
            finish()


def _array(x, op, name, writable=True):
    """The host ndarray behind a Tensor or ndarray, checked for MPI."""
    if isinstance(x, Tensor):
        if x.device.type != "cpu":
            raise NotImplementedError(f"dlkern.distributed.{op}: {name} is a {x.device} tensor; the MPI backend "
                                      f"works on host memory, move it with .cpu() first")
        arr = x.data
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        raise TypeError(f"dlkern.distributed.{op}: {name} must be a Tensor or a numpy.ndarray, "
                        f"got {type(x).__name__}")
    if arr.dtype not in _MPI_DTYPES:
        raise TypeError(f"dlkern.distributed.{op}: {name} has dtype {arr.dtype}, which MPI cannot reduce; "
                        f"use float32, float64 or an integer dtype")
    if not arr.flags.c_contiguous:
        raise ValueError(f"dlkern.distributed.{op}: {name} must be contiguous (MPI reads the buffer in "
                         f"place); call .contiguous() first")
    if writable and not arr.flags.writeable:
        raise ValueError(f"dlkern.distributed.{op}: {name} is read-only; the result is written into it")
    return arr


def _mpi_op(op, opname, g):
    if op not in _OPS:
        raise ValueError(f"dlkern.distributed.{opname}: op must be one of ReduceOp.SUM/AVG/PRODUCT/MIN/MAX, "
                         f"got {op!r}")
    return getattr(g.mpi, _OPS[op])


def _average_step(arrays, op, opname, size):
    """AVG is MPI's SUM then one in-place division (MPI has no mean)."""
    if op != ReduceOp.AVG:
        return None
    for arr in arrays:
        if arr.dtype.kind != "f":
            raise TypeError(f"dlkern.distributed.{opname}: ReduceOp.AVG needs a floating tensor, got {arr.dtype}")

    def finish():
        for arr in arrays:
            arr /= size
    return finish


# Started but not yet completed Works: a caller that drops a Work without waiting must not
# let its buffers be freed while MPI still writes into them.
_PENDING = set()


def _run(request, opname, finish, async_op, buffers):
    work = Work(request, opname, finish, buffers)
    if async_op:
        _PENDING.add(work)
        return work
    work.wait()
    return None


def _check_rank(value, name, opname, size):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
        raise ValueError(f"dlkern.distributed.{opname}: {name} must be a rank in [0, {size}), got {value!r}")
    return int(value)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` over all ranks, in place: afterwards every rank holds the result."""
    g = _group("all_reduce")
    arr = _array(tensor, "all_reduce", "tensor")
    mpi_op = _mpi_op(op, "all_reduce", g)
    finish = _average_step([arr], op, "all_reduce", g.comm.Get_size())
    return _run(g.comm.Iallreduce(g.mpi.IN_PLACE, arr, op=mpi_op), "all_reduce", finish, async_op, (arr,))


def broadcast(tensor, src, group=None, async_op=False):
    """Copy rank ``src``'s ``tensor`` into every other rank's ``tensor``, in place."""
    g = _group("broadcast")
    src = _check_rank(src, "src", "broadcast", g.comm.Get_size())
    arr = _array(tensor, "broadcast", "tensor")
    return _run(g.comm.Ibcast(arr, root=src), "broadcast", None, async_op, (arr,))


def _same_layout(arr, ref, opname, name):
    if arr.shape != ref.shape or arr.dtype != ref.dtype:
        raise ValueError(f"dlkern.distributed.{opname}: {name} has shape {arr.shape} and dtype {arr.dtype}; "
                         f"it must match the input's {ref.shape} {ref.dtype}")


def _one_block(arrays):
    """The arrays as one (n, *shape) view when they already lie back to back in one
    buffer (chunks of one tensor), else None."""
    first = arrays[0]
    start = first.__array_interface__["data"][0]
    step = first.nbytes
    for i, arr in enumerate(arrays):
        if arr.__array_interface__["data"][0] != start + i * step:
            return None
    return np.lib.stride_tricks.as_strided(first, (len(arrays),) + first.shape, (step,) + first.strides)


def _list(tensor_list, opname, name, size, ref):
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != size:
        got = len(tensor_list) if isinstance(tensor_list, (list, tuple)) else type(tensor_list).__name__
        raise ValueError(f"dlkern.distributed.{opname}: {name} must be a list of world_size={size} tensors, "
                         f"got {got}")
    arrays = [_array(t, opname, f"{name}[{i}]") for i, t in enumerate(tensor_list)]
    for i, arr in enumerate(arrays):
        _same_layout(arr, ref, opname, f"{name}[{i}]")
    return arrays


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill ``tensor_list[r]`` with rank r's ``tensor``. When the list's tensors lie back
    to back in one buffer (``out.chunk(world_size)``) MPI gathers straight into it;
    otherwise through one staging buffer, copied out when the call completes."""
    g = _group("all_gather")
    size = g.comm.Get_size()
    arr = _array(tensor, "all_gather", "tensor", writable=False)
    outs = _list(tensor_list, "all_gather", "tensor_list", size, arr)
    block = _one_block(outs) if arr.size else None
    finish = None
    if block is None:
        block = np.empty((size,) + arr.shape, arr.dtype)

        def copy_out():
            for r, out in enumerate(outs):
                out[...] = block[r]
        finish = copy_out
    return _run(g.comm.Iallgather(arr, block), "all_gather", finish, async_op, (arr, block, outs))


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Gather every rank's ``input_tensor`` into ``output_tensor`` (world_size times as many
    rows, or world_size * numel elements), rank order."""
    g = _group("all_gather_into_tensor")
    size = g.comm.Get_size()
    arr = _array(input_tensor, "all_gather_into_tensor", "input_tensor", writable=False)
    out = _array(output_tensor, "all_gather_into_tensor", "output_tensor")
    if out.dtype != arr.dtype or out.size != size * arr.size:
        raise ValueError(f"dlkern.distributed.all_gather_into_tensor: output_tensor has {out.size} elements of "
                         f"{out.dtype}; it must hold world_size * input = {size * arr.size} of {arr.dtype}")
    return _run(g.comm.Iallgather(arr, out), "all_gather_into_tensor", None, async_op, (arr, out))


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input_list[r]`` over all ranks into rank r's ``output``. MPI reads the list
    in place when its tensors lie back to back in one buffer, else from one staging copy."""
    g = _group("reduce_scatter")
    size = g.comm.Get_size()
    out = _array(output, "reduce_scatter", "output")
    mpi_op = _mpi_op(op, "reduce_scatter", g)
    ins = _list(input_list, "reduce_scatter", "input_list", size, out)
    block = _one_block(ins) if out.size else None
    if block is None:
        block = np.stack(ins) if ins else np.empty((0,) + out.shape, out.dtype)
    finish = _average_step([out], op, "reduce_scatter", size)
    request = g.comm.Ireduce_scatter_block(block, out, op=mpi_op)
    return _run(request, "reduce_scatter", finish, async_op, (block, out))


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input`` (world_size blocks of ``output``'s size) over all ranks; rank r
    receives block r in ``output``."""
    g = _group("reduce_scatter_tensor")
    size = g.comm.Get_size()
    out = _array(output, "reduce_scatter_tensor", "output")
    src = _array(input, "reduce_scatter_tensor", "input", writable=False)
    mpi_op = _mpi_op(op, "reduce_scatter_tensor", g)
    if src.dtype != out.dtype or src.size != size * out.size:
        raise ValueError(f"dlkern.distributed.reduce_scatter_tensor: input has {src.size} elements of "
                         f"{src.dtype}; it must hold world_size * output = {size * out.size} of {out.dtype}")
    finish = _average_step([out], op, "reduce_scatter_tensor", size)
    request = g.comm.Ireduce_scatter_block(src, out, op=mpi_op)
    return _run(request, "reduce_scatter_tensor", finish, async_op, (src, out))
