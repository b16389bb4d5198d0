"""``DistributedDataParallel``: one model replica per MPI rank, gradients averaged in buckets.

What it does, as PyTorch's DDP:
- at wrap time every rank takes rank 0's parameters and buffers (MPI broadcasts on the
  parameters' own arrays), after checking that all ranks hold the same parameter shapes;
- the parameters that require grad are split into buckets of about ``bucket_cap_mb``
  (the first one 1 MB, so communication starts early), in REVERSE registration order:
  the order in which backward produces their gradients. Each bucket is one flat,
  contiguous buffer;
- each parameter has a post-accumulate-grad hook. When the last gradient of a bucket is
  in, the hook starts a non-blocking ``all_reduce`` of the bucket, so the transfer runs
  while backward computes the earlier layers. The gradients are divided by the world
  size on their way into the bucket, so the reduction is a plain sum that averages.
  Buckets start in bucket order on every rank (MPI matches collectives by order). Open
  MPI moves a non-blocking collective only inside MPI calls, so every later hook tests
  the oldest bucket in flight (one ``MPI_Test``), which drives all of them;
- when the backward pass ends (``autograd.engine.queue_callback``: the engine runs it
  right after the graph, before anyone reads .grad) the rest is started, everything is
  waited for and the averages are copied back into ``p.grad`` (or ``p.grad`` already is
  a view of its bucket with ``gradient_as_bucket_view=True``: no copies at all).
Why a callback at the end of backward rather than a lazy wait at the next optimizer step
or forward: code between backward and step (gradient clipping, logging of grad norms,
``GradScaler.unscale_``) must already see the averaged gradients, as in PyTorch.

Not reduced: parameters with ``requires_grad=False``. A parameter that gets no gradient
in a backward is an error naming it (``find_unused_parameters=False``, PyTorch's rule: its
bucket could never complete); with ``find_unused_parameters=True`` the graph of the
forward's outputs is searched for the parameters it cannot reach, those count as ready
at once (their current .grad, or zeros) and, when no rank used one, its .grad is left
as it was.

``_overlap=False`` (a private switch for ``bench ddp``): the hooks only note which
gradients arrived; every bucket is filled and all-reduced after the backward. Same
buckets, same copies, no overlap: the measured difference is the overlap alone.
"""

import contextlib
import weakref
import zlib

import numpy as np

from ... import distributed as dist
from ...autograd.engine import queue_callback
from ...autograd.grad_mode import GradMode
from ..module import Module

_FIRST_BUCKET_BYTES = 1 << 20  # PyTorch's dist._DEFAULT_FIRST_BUCKET_BYTES
_REDUCIBLE = (np.dtype(np.float32), np.dtype(np.float64))


class _Bucket:
    """One flat buffer: `indices` of the parameters in it, their `views` into `buffer`."""
    __slots__ = ("indices", "buffer", "pending", "work")

    def __init__(self, indices, buffer):
        self.indices = indices
        self.buffer = buffer
        self.pending = len(indices)
        self.work = None


def _assign_buckets(params, cap_bytes):
    """Lists of parameter indices, one per bucket: parameters in reverse order, one open
    bucket per dtype, closed once it holds at least its cap (the first of each dtype
    1 MB at most); buckets ordered by when backward fills them (their first index)."""
    open_, caps, done = {}, {}, []
    for i in reversed(range(len(params))):
        p = params[i]
        key = p.data.dtype
        bucket = open_.setdefault(key, [0, []])
        bucket[0] += p.data.nbytes
        bucket[1].append(i)
        cap = caps.setdefault(key, min(_FIRST_BUCKET_BYTES, cap_bytes))
        if bucket[0] >= cap:
            done.append(bucket[1])
            del open_[key]
            caps[key] = cap_bytes
    done.extend(b[1] for b in open_.values() if b[1])
    done.sort(key=lambda idx: -idx[0])
    return done


def _tensors_in(obj, out):
    """The Tensors in a forward's output (nested tuples, lists, dicts)."""
    from ...tensor import Tensor
    if isinstance(obj, Tensor):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _tensors_in(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors_in(o, out)
    return out


def _reachable_leaves(outputs):
    """ids of the leaves the graph of `outputs` leads to (find_unused_parameters)."""
    leaves, seen, stack = set(), set(), []
    for t in _tensors_in(outputs, []):
        if t.grad_fn is not None:
            stack.append(t.grad_fn)
        elif t.requires_grad:
            leaves.add(id(t))
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for p in node.parents or ():
            if p is None:
                continue
            f = p.grad_fn
            if f is None:
                leaves.add(id(p))
            elif id(f) not in seen:
                stack.append(f)
    return leaves


def _broadcast_coalesced(arrays):
    """Rank 0's bytes of every array into everyone's, in one MPI broadcast (any dtype:
    the bytes travel as uint8, so bfloat16 buffers and int64 counters go too)."""
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return
    sizes = [a.nbytes for a in arrays]
    flat = np.empty(sum(sizes), np.uint8)
    root = dist.get_rank() == 0
    offset = 0
    if root:
        for a, n in zip(arrays, sizes):
            flat[offset:offset + n] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            offset += n
    dist.broadcast(flat, src=0)
    if not root:
        for a, n in zip(arrays, sizes):
            a[...] = flat[offset:offset + n].view(a.dtype).reshape(a.shape)
            offset += n


def _hook(ref, index):
    def hook(_param):
        ddp = ref()
        if ddp is not None:
            ddp._grad_ready(index)
    return hook


def _remove_hooks(handles):
    for h in handles:
        h.remove()


class DistributedDataParallel(Module):
    """Data parallelism over the ranks of ``dlkern.distributed``'s process group
    (PyTorch's ``torch.nn.parallel.DistributedDataParallel``; see the module docstring).

    ``module`` is kept as ``self.module`` (so ``state_dict`` keys start with
    ``module.``); ``forward`` runs it. ``device_ids`` / ``output_device`` / ``dim`` are for
    GPU replicas in PyTorch: a CPU module takes None. ``process_group``: only the default
    group (None). ``check_reduction`` and ``static_graph`` are accepted and change
    nothing. ``_overlap`` (keyword, private): False reduces all buckets after the
    backward instead of from the hooks, for ``bench ddp``'s comparison."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False, *, _overlap=True):
        super().__init__()
        op = "DistributedDataParallel"
        if not dist.is_initialized():
            raise dist.DistributedError(f"{op}: the default process group is not initialized; call "
                                        f"dlkern.distributed.init_process_group('mpi') first")
        if not isinstance(module, Module):
            raise TypeError(f"{op}: module must be a dlkern.nn.Module, got {type(module).__name__}")
        if process_group is not None:
            raise ValueError(f"{op}: only the default process group (process_group=None) is supported")
        if device_ids is not None or output_device is not None:
            raise ValueError(f"{op}: device_ids and output_device must be None for a CPU module (the MPI "
                             f"backend reduces host memory), got device_ids={device_ids!r}, "
                             f"output_device={output_device!r}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
            raise ValueError(f"{op}: bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        names = {id(p): n for n, p in module.named_parameters()}
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError(f"{op} is not needed when a module doesn't have any parameter that requires a "
                               f"gradient.")
        for p in params:
            if p.device.type != "cpu":
                raise NotImplementedError(f"{op}: parameter '{names[id(p)]}' is on {p.device}; the MPI backend "
                                          f"reduces host memory, move the module with .cpu() first")
            if p.data.dtype not in _REDUCIBLE:
                raise TypeError(f"{op}: parameter '{names[id(p)]}' has dtype {p.data.dtype}; gradients are "
                                f"all-reduced in float32 or float64 only")
        self.module = module
        self.dim = dim
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.static_graph = bool(static_graph)
        self.bucket_bytes_cap = int(bucket_cap_mb * 1024 * 1024)
        self.require_backward_grad_sync = True
        self._overlap = bool(_overlap)
        self._world = dist.get_world_size()
        # The gradients are divided by the world size as they are copied into the buckets,
        # so the all-reduce sums averages: one pass over the buffer fewer than dividing
        # the sum afterwards (PyTorch's order too).
        self._scale = 1.0 / self._world
        self._params = params
        self._names = [names[id(p)] for p in params]

        self._check_same_model(op)
        works = [dist.broadcast(p.data, src=0, async_op=True) for p in params
                 if p.data.flags.c_contiguous and p.data.flags.writeable]
        for w in works:
            w.wait()
        _broadcast_coalesced([p.data for p in params if not (p.data.flags.c_contiguous and p.data.flags.writeable)])
        _broadcast_coalesced([b.data for b in module.buffers()])

        self._buckets, self._views, self._bucket_of = [], [None] * len(params), [0] * len(params)
        for b, indices in enumerate(_assign_buckets(params, self.bucket_bytes_cap)):
            buffer = np.zeros(sum(params[i].data.size for i in indices), params[indices[0]].data.dtype)
            offset = 0
            for i in indices:
                n = params[i].data.size
                self._views[i] = buffer[offset:offset + n].reshape(params[i].data.shape)
                self._bucket_of[i] = b
                offset += n
            self._buckets.append(_Bucket(indices, buffer))
            if self.gradient_as_bucket_view:
                for i in indices:  # a gradient there already (accumulated before wrapping) moves in
                    self._point_grad_at_bucket(i)
        self._expect = False  # a forward prepared the next backward's reduction
        self._ready = [False] * len(params)
        self._launched = self._completed = 0  # buckets started / known complete, in bucket order
        self._touched = set()  # parameters that got a gradient under no_sync since the last reduction
        self._used = None
        ref = weakref.ref(self)
        self._handles = [p.register_post_accumulate_grad_hook(_hook(ref, i)) for i, p in enumerate(params)]
        weakref.finalize(self, _remove_hooks, list(self._handles))

    # ---------------------------------------------------------------- wrap-time checks
    def _check_same_model(self, op):
        """Every rank must wrap the same parameter shapes and dtypes (else the buckets
        would differ and MPI would reduce mismatched buffers)."""
        if self._world == 1:
            return
        layout = repr([(tuple(p.shape), str(p.data.dtype)) for p in self._params]).encode()
        sig = np.array([len(self._params), sum(p.data.size for p in self._params), zlib.crc32(layout)], np.int64)
        low = sig.copy()
        dist.all_reduce(sig, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        if not np.array_equal(sig, low):
            raise RuntimeError(f"{op}: the ranks wrap different models (parameter count, sizes or dtypes "
                               f"differ between ranks); every rank must build the same module")

    # ---------------------------------------------------------------- forward
    def forward(self, *inputs, **kwargs):
        sync = GradMode.enabled and self.require_backward_grad_sync
        if sync and self.broadcast_buffers and self._world > 1:
            _broadcast_coalesced([b.data for b in self.module.buffers()])
        out = self.module(*inputs, **kwargs)
        if sync:
            self._prepare_for_backward(out)
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside: forward/backward accumulate gradients locally, without communication.
        The first backward after a forward outside it averages the accumulated total."""
        prev = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = prev

    # ---------------------------------------------------------------- one backward's reduction
    def _prepare_for_backward(self, outputs):
        self._wait_in_flight()  # a previous backward that raised may have left buckets going
        for b in self._buckets:
            b.pending = len(b.indices)
            b.work = None
        self._ready = [False] * len(self._params)
        self._queued = False
        self._used = None
        self._expect = True
        if self.find_unused_parameters:
            # 1 = used by this rank: in this backward, or in a no_sync one since the last reduction
            self._used = np.ones(len(self._params), np.int32)
            reachable = _reachable_leaves(outputs)
            for i, p in enumerate(self._params):
                if id(p) not in reachable:
                    self._mark_unused(i)

    def _mark_unused(self, i):
        """Parameter i gets no gradient now: its slot holds its current .grad (what no_sync
        accumulated) or zeros."""
        self._used[i] = i in self._touched
        self._mark_ready(i)

    def _grad_ready(self, i):
        """Parameter i's gradient is accumulated (its post-accumulate hook)."""
        if not self._expect or self._ready[i]:
            # No forward asked for a reduction (no_sync, no_grad), or counted already.
            if not self.require_backward_grad_sync and self.find_unused_parameters:
                self._touched.add(i)
            return
        if not self._queued:
            queue_callback(self._finalize)
            self._queued = True
        self._mark_ready(i)
        if self._launched > self._completed:
            self._progress()

    def _mark_ready(self, i):
        self._ready[i] = True
        if not self._overlap:
            return
        self._fill(i)
        b = self._buckets[self._bucket_of[i]]
        b.pending -= 1
        if b.pending == 0:
            self._launch()

    def _fill(self, i):
        """Parameter i's gradient into its bucket slot (zeros when it has none)."""
        view = self._views[i]
        grad = self._params[i].grad
        scale = self._scale
        if grad is None:
            view[...] = 0
        elif grad.data is view:
            if scale != 1:
                view *= scale
        else:
            if scale != 1:
                np.multiply(grad.data, scale, out=view)
            else:
                view[...] = grad.data
            if self.gradient_as_bucket_view:
                grad.data = view

    def _point_grad_at_bucket(self, i):
        grad = self._params[i].grad
        if grad is not None and grad.data is not self._views[i]:
            self._views[i][...] = grad.data
            grad.data = self._views[i]

    def _launch(self):
        """Start every complete bucket not started yet, in bucket order (the order all
        ranks share)."""
        buckets = self._buckets
        while self._launched < len(buckets) and buckets[self._launched].pending == 0:
            b = buckets[self._launched]
            if self._world > 1:
                b.work = dist.all_reduce(b.buffer, op=dist.ReduceOp.SUM, async_op=True)
            self._launched += 1

    def _progress(self):
        """Test the oldest bucket in flight: one MPI_Test, which moves all of them."""
        while self._completed < self._launched:
            work = self._buckets[self._completed].work
            if work is not None and not work.is_completed():
                return
            self._completed += 1

    def _wait_in_flight(self):
        for b in self._buckets[:self._launched]:
            if b.work is not None:
                b.work.wait()
                b.work = None
        self._launched = self._completed = 0

    def _finalize(self):
        """The end of the backward: start what is left, wait, and write the averages."""
        self._expect = False
        missing = [i for i, r in enumerate(self._ready) if not r]
        if missing and not self.find_unused_parameters:
            names = ", ".join(self._names[i] for i in missing)
            raise RuntimeError(
                f"DistributedDataParallel: parameters that did not receive a gradient in this backward on rank "
                f"{dist.get_rank()}: {names}. Their buckets cannot be all-reduced. Pass "
                f"find_unused_parameters=True when some parameters do not take part in the loss, or make sure "
                f"every output of forward contributes to it.")
        overlap, self._overlap = self._overlap, True  # from here on fill and start as the hooks do
        try:
            if not overlap:  # the hooks only noted the arrivals: every bucket starts now
                for i in range(len(self._params)):
                    if self._ready[i]:
                        self._mark_ready(i)
            for i in missing:
                self._mark_unused(i)
        finally:
            self._overlap = overlap
        self._touched = set()
        self._wait_in_flight()
        used = self._used
        if used is not None and self._world > 1:
            dist.all_reduce(used, op=dist.ReduceOp.MAX)  # a parameter any rank used is reduced
        for i, p in enumerate(self._params):
            if used is not None and not used[i]:
                continue  # no rank used it: its .grad stays as it was, as in PyTorch
            view = self._views[i]
            grad = p.grad
            if grad is None:
                p.grad = p._wrap_grad(view if self.gradient_as_bucket_view else view.copy())
            elif grad.data is not view:
                grad.data[...] = view
