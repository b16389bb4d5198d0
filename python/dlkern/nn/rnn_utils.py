"""Variable-length batches for the recurrent modules (torch.nn.utils.rnn names; reached
as dlkern.nn.utils.rnn): PackedSequence, pack_padded_sequence, pad_packed_sequence,
pad_sequence, pack_sequence.

A PackedSequence keeps the steps time-major, step t holding the batch_sizes[t]
sequences still running, longest first: the layout the recurrent Functions iterate
(functions/rnn.py), so padded steps are never computed."""

from collections import namedtuple

import numpy as np

from .. import functions as _F
from ..creation import cat
from ..tensor import Tensor


class PackedSequence(namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])):
    """data (N, *) time-major rows; batch_sizes: int64 CPU tensor, sequences alive at each
    step; sorted_indices / unsorted_indices: the batch permutation to length order and
    back (None when the batch was already sorted)."""

    __slots__ = ()

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if batch_sizes is None:
            raise TypeError("PackedSequence: batch_sizes is required (make one with pack_padded_sequence)")
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = _invert(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    @property
    def is_cuda(self):
        return self.data.device.type == "cuda"

    def to(self, *args, **kwargs):
        """The same sequence with data (and the index tensors) moved/cast as Tensor.to."""
        data = self.data.to(*args, **kwargs)
        move = (lambda t: None if t is None else t.to(data.device))
        return type(self)(data, self.batch_sizes, move(self.sorted_indices), move(self.unsorted_indices))


def _host_ints(values, what):
    if isinstance(values, Tensor):
        values = _F.host_array(values.data)
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise RuntimeError(f"pack_padded_sequence: {what} must be a 1-D sequence of integers, got "
                           f"shape {arr.shape} and dtype {arr.dtype}")
    return arr.astype(np.int64)


def _invert(indices):
    perm = _F.host_array(indices.data)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=perm.dtype)
    return Tensor._from_host(inv, indices.device, False)


def batch_sizes_of(packed):
    """The batch sizes of a PackedSequence as a tuple of ints (what the Functions take)."""
    return tuple(int(v) for v in _F.host_array(packed.batch_sizes.data))


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded (T, B, *) batch ((B, T, *) with batch_first) whose sequence b has
    lengths[b] valid steps. With enforce_sorted the lengths must not increase; otherwise
    the batch is sorted here and the permutation kept in the result."""
    lengths = _host_ints(lengths, "lengths")
    if input.ndim < 2:
        raise ValueError(f"pack_padded_sequence: input must have at least 2 dimensions, got shape "
                         f"{tuple(input.shape)}")
    T, B = (input.shape[1], input.shape[0]) if batch_first else input.shape[:2]
    if lengths.size != B:
        raise RuntimeError(f"pack_padded_sequence: Expected `len(lengths)` to be equal to batch_size, but got "
                         f"{lengths.size} (batch_size={B})")
    if B == 0 or lengths.min() <= 0:
        raise RuntimeError("pack_padded_sequence: length of all samples has to be greater than 0, but found an "
                           "element in 'lengths' that is <= 0")
    if lengths.max() > T:
        raise RuntimeError(f"pack_padded_sequence: a length ({lengths.max()}) exceeds the padded sequence "
                           f"length {T}")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise RuntimeError("pack_padded_sequence: `lengths` array must be sorted in decreasing order when "
                               "`enforce_sorted` is True. You can pass `enforce_sorted=False` to "
                               "pack_padded_sequence and/or pack_sequence to sidestep this requirement if you do "
                               "not need ONNX exportability.")
        order = np.arange(B, dtype=np.int64)
        sorted_indices = None
    else:
        order = np.argsort(-lengths, kind="stable")
        sorted_indices = Tensor._from_host(order, input.device, False)
    lens = lengths[order]
    batch_sizes = np.array([(lens > t).sum() for t in range(int(lens[0]))], dtype=np.int64)
    # source row of packed row (t, j): the padded input flattened over (time, batch) or
    # (batch, time); inverse: each padded row's packed row, or N (no gradient) for padding
    steps = np.repeat(np.arange(batch_sizes.size), batch_sizes)
    slots = np.concatenate([np.arange(b) for b in batch_sizes]) if batch_sizes.size else steps
    index = order[slots] * T + steps if batch_first else steps * B + order[slots]
    inverse = np.full(T * B, index.size, dtype=np.int64)
    inverse[index] = np.arange(index.size)
    flat = input.reshape((T * B,) + tuple(input.shape[2:]))
    data = _F.PackRows.apply(flat, index, inverse, None)
    return PackedSequence(data, Tensor(batch_sizes), sorted_indices, None)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """The padded batch (T, B, *) ((B, T, *) with batch_first), in the original batch order,
    and the lengths (int64 CPU tensor). total_length pads to that many steps."""
    batch_sizes = np.asarray(batch_sizes_of(sequence), dtype=np.int64)
    steps_n = batch_sizes.size
    if total_length is not None:
        if total_length < steps_n:
            raise ValueError(f"pad_packed_sequence: expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max sequence length "
                             f"being {steps_n}")
        T = int(total_length)
    else:
        T = steps_n
    B = int(batch_sizes[0]) if steps_n else 0
    lens = np.array([(batch_sizes > j).sum() for j in range(B)], dtype=np.int64)  # in sorted order
    unsorted = (np.arange(B) if sequence.unsorted_indices is None
                else _F.host_array(sequence.unsorted_indices.data).astype(np.int64))
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    n = int(offsets[-1])
    t = np.arange(T)[:, None]
    k = unsorted[None, :]  # column b of the padded batch holds sorted sequence unsorted[b]
    valid = t < lens[k]
    index = np.where(valid, offsets[np.minimum(t, max(steps_n - 1, 0))] + k, n)  # (T, B)
    if batch_first:
        index = index.T
    index = np.ascontiguousarray(index).reshape(-1)
    inverse = np.empty(n, dtype=np.int64)
    inverse[index[index < n]] = np.nonzero(index < n)[0]
    data = sequence.data
    out = _F.PackRows.apply(data, index, inverse, padding_value)
    shape = (B, T) if batch_first else (T, B)
    return out.reshape(shape + tuple(data.shape[1:])), Tensor(lens[unsorted])


def pad_sequence(sequences, batch_first=False, padding_value=0.0):
    """Stack tensors of shapes (L_i, *) into (max L, B, *) ((B, max L, *) with
    batch_first), padding the short ones with padding_value."""
    seqs = list(sequences)
    if not seqs:
        raise RuntimeError("pad_sequence: received an empty list of sequences")
    lengths = np.array([s.shape[0] if s.ndim else -1 for s in seqs], dtype=np.int64)
    if lengths.min() < 0:
        raise RuntimeError("pad_sequence: every sequence must have at least one dimension")
    T, B = int(lengths.max()), len(seqs)
    flat = cat(seqs, 0)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n = int(lengths.sum())
    t = np.arange(T)[:, None]
    index = np.where(t < lengths[None, :], starts[None, :] + t, n)  # (T, B): a row of flat, or padding
    if batch_first:
        index = index.T
    index = np.ascontiguousarray(index).reshape(-1)
    inverse = np.empty(n, dtype=np.int64)
    inverse[index[index < n]] = np.nonzero(index < n)[0]
    out = _F.PackRows.apply(flat, index, inverse, padding_value)
    return out.reshape(((B, T) if batch_first else (T, B)) + tuple(flat.shape[1:]))


def pack_sequence(sequences, enforce_sorted=True):
    """pack_padded_sequence(pad_sequence(sequences), their lengths)."""
    seqs = list(sequences)
    return pack_padded_sequence(pad_sequence(seqs), [s.shape[0] for s in seqs], enforce_sorted=enforce_sorted)
