"""Recurrent modules with PyTorch's API and parameter names (a PyTorch state_dict loads):
RNN (tanh/relu), LSTM (with proj_size), GRU and the cells RNNCell, LSTMCell, GRUCell.
Each layer and direction is one Function over the whole sequence (functions/rnn.py)."""

import math
import warnings

from .. import functions as _F
from ..autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from ..creation import cat, stack
from ..dtypes import as_dtype as _as_dtype
from ..tensor import Tensor
from . import functional as F
from . import init
from .layers import _empty
from .module import Module
from .rnn_utils import PackedSequence, batch_sizes_of

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_sizes(op, input_size, hidden_size):
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{op}: {name} should be of type int, got: {type(v).__name__}")
    if hidden_size <= 0:
        raise ValueError(f"{op}: hidden_size must be greater than zero")


def _layer(mode, x, h0, c0, w, batch_sizes, reverse):
    """One layer in one direction: (flat output, output width) from the Function."""
    w_ih, w_hh, b_ih, b_hh, w_hr = w
    if mode == "LSTM":
        return _F.LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)
    if mode == "GRU":
        return _F.GRULayer.apply(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse)
    return _F.RNNLayer.apply(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                             "relu" if mode == "RNN_RELU" else "tanh")


class RNNBase(Module):
    """The stack shared by RNN, LSTM and GRU: parameters weight_ih_l{k}{_reverse},
    weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (and weight_hr_l{k} for a projected
    LSTM), all initialised uniform(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, input_size, hidden_size)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be greater than zero, got {num_layers}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", UserWarning, stacklevel=3)
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        dtype = _as_dtype(dtype)
        gates = _GATES[mode] * hidden_size
        out = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                layer_in = input_size if layer == 0 else out * directions
                shapes = [("weight_ih", (gates, layer_in)), ("weight_hh", (gates, out))]
                if bias:
                    shapes += [("bias_ih", (gates,)), ("bias_hh", (gates,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                for pname, shape in shapes:
                    setattr(self, pname + sfx, _empty(shape, dtype))
                    self._flat_weights_names.append(pname + sfx)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        get = (lambda n: getattr(self, n + sfx, None))
        return (get("weight_ih"), get("weight_hh"), get("bias_ih") if self.bias else None,
                get("bias_hh") if self.bias else None, get("weight_hr") if self.proj_size else None)

    def flatten_parameters(self):
        """Nothing to do (PyTorch packs cuDNN's weight buffer here); kept so code that calls
        it runs unchanged."""

    @property
    def all_weights(self):
        directions = 2 if self.bidirectional else 1
        return [[p for p in self._weights(layer, d) if p is not None]
                for layer in range(self.num_layers) for d in range(directions)]

    def _state_shapes(self, batch):
        rows = self.num_layers * (2 if self.bidirectional else 1)
        return (rows, batch, self.proj_size or self.hidden_size), (rows, batch, self.hidden_size)

    def _prepare(self, input, hx):
        """(x (N, in) time-major rows, batch_sizes, h0, c0 (or None), packed, unbatched)"""
        name = type(self).__name__
        lstm = self.mode == "LSTM"
        if isinstance(input, PackedSequence):
            batch_sizes = batch_sizes_of(input)
            x, unbatched = input.data, False
            batch = batch_sizes[0] if batch_sizes else 0
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"{name}: input must be a Tensor or a PackedSequence, got {type(input).__name__}")
            if input.ndim not in (2, 3):
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D instead")
            unbatched = input.ndim == 2
            if unbatched:
                input = input.unsqueeze(1)
            elif self.batch_first:
                input = input.transpose(0, 1)
            T, batch = input.shape[0], input.shape[1]
            if T == 0:
                raise RuntimeError(f"{name}: Expected sequence length to be larger than 0 in RNN")
            batch_sizes = (batch,) * T
            x = input.reshape(T * batch, input.shape[2])
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {x.shape[-1]}")
        if x.dtype != self.weight_ih_l0.dtype and not _autocast_mixed():
            raise TypeError(f"{name}: input dtype {x.dtype} differs from the weight dtype {self.weight_ih_l0.dtype}")
        h_shape, c_shape = self._state_shapes(batch)
        if hx is None:
            dev = x.device
            h0 = dev.zeros(h_shape, dtype=x.data.dtype)
            c0 = dev.zeros(c_shape, dtype=x.data.dtype) if lstm else None
        else:
            states = hx if lstm else (hx,)
            if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0)")
            want = 2 if unbatched else 3
            for s in states:
                if s.dtype != x.dtype:
                    raise RuntimeError(f"{name}: input and hidden tensors are not the same dtype, found input "
                                       f"tensor with {x.dtype} and hidden tensor with {s.dtype}")
                if s.ndim != want:
                    raise RuntimeError(f"{name}: for {'unbatched 2-D' if unbatched else 'batched 3-D'} input, hx "
                                       f"should also be {want}-D but got {s.ndim}-D tensor")
            if unbatched:
                states = tuple(s.unsqueeze(1) for s in states)
            if isinstance(input, PackedSequence) and input.sorted_indices is not None:
                states = tuple(s.index_select(1, input.sorted_indices) for s in states)
            for i, (s, shape) in enumerate(zip(states, (h_shape, c_shape))):
                if tuple(s.shape) != shape:
                    which = f"hidden[{i}]" if lstm else "hidden"
                    raise RuntimeError(f"{name}: Expected {which} size {shape}, got {list(s.shape)}")
            h0, c0 = states[0], (states[1] if lstm else None)
        return x, batch_sizes, h0, c0, unbatched

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        x, batch_sizes, h0, c0, unbatched = self._prepare(input, hx)
        n, batch = x.shape[0], h0.shape[1]
        P, H = self.proj_size or self.hidden_size, self.hidden_size
        directions = 2 if self.bidirectional else 1
        lstm = self.mode == "LSTM"
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                k = layer * directions + d
                y = _layer(self.mode, x, h0[k], c0[k] if lstm else None, self._weights(layer, d), batch_sizes, d == 1)
                outs.append(y[:n * P].reshape(n, P))
                h_n.append(y[n * P:(n + batch) * P].reshape(batch, P))
                if lstm:
                    c_n.append(y[(n + batch) * P:].reshape(batch, H))
            x = outs[0] if directions == 1 else cat(outs, 1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        h_n = stack(h_n, 0)
        c_n = stack(c_n, 0) if lstm else None
        if packed:
            output = PackedSequence(x, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
            if input.unsorted_indices is not None:
                h_n = h_n.index_select(1, input.unsorted_indices)
                c_n = c_n.index_select(1, input.unsorted_indices) if lstm else None
        else:
            output = x.reshape(len(batch_sizes), batch, directions * P)
            if unbatched:
                output, h_n = output.squeeze(1), h_n.squeeze(1)
                c_n = c_n.squeeze(1) if lstm else None
            elif self.batch_first:
                output = output.transpose(0, 1)
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of one call (dlkern.utils.summary): per layer, direction and row
        (a sequence step) the input and recurrent products (and the LSTM projection);
        the pointwise gate math is not counted."""
        input = args[0] if args else kwargs["input"]
        rows = input.data.shape[0] if isinstance(input, PackedSequence) else math.prod(input.shape[:-1])
        gates = _GATES[self.mode] * self.hidden_size
        P = self.proj_size or self.hidden_size
        directions = 2 if self.bidirectional else 1
        total = 0
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else P * directions
            total += directions * rows * (gates * (layer_in + P) + (self.hidden_size * P if self.proj_size else 0))
        return total

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN, h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """LSTM with PyTorch's gates (i, f, g, o); proj_size > 0 projects h to proj_size."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, dtype)


class GRU(RNNBase):
    """GRU with PyTorch's gates (r, z, n), the reset gate applied after the hidden product."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype)


class RNNCellBase(Module):
    """One step: weight_ih (G, input), weight_hh (G, hidden), bias_ih, bias_hh (G,)."""

    mode = None

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, mode=None):
        super().__init__()
        if mode is not None:
            self.mode = mode
        name = type(self).__name__
        _check_sizes(name, input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates = _GATES[self.mode] * hidden_size
        dtype = _as_dtype(dtype)
        self.weight_ih = _empty((gates, input_size), dtype)
        self.weight_hh = _empty((gates, hidden_size), dtype)
        if bias:
            self.bias_ih = _empty((gates,), dtype)
            self.bias_hh = _empty((gates,), dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = RNNBase.reset_parameters

    def _step(self, input, hx):
        name = type(self).__name__
        lstm = self.mode == "LSTM"
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        unbatched = input.ndim == 1
        if unbatched:
            input = input.unsqueeze(0)
        batch, H = input.shape[0], self.hidden_size
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got {input.shape[1]} expected "
                               f"{self.input_size}")
        if input.dtype != self.weight_ih.dtype and not _autocast_mixed():
            raise TypeError(f"{name}: input dtype {input.dtype} differs from the weight dtype {self.weight_ih.dtype}")
        if hx is None:
            zeros = input.device.zeros((batch, H), dtype=input.data.dtype)
            states = (zeros, zeros) if lstm else (zeros,)
        else:
            states = tuple(hx) if lstm else (hx,)
            for i, s in enumerate(states):
                if s.dtype != input.dtype:
                    raise RuntimeError(f"{name}: input and hidden tensors are not the same dtype, found input "
                                       f"tensor with {input.dtype} and hidden tensor with {s.dtype}")
                if s.ndim != (1 if unbatched else 2):
                    raise RuntimeError(f"{name}: expected hidden{i if lstm else ''} to be "
                                       f"{1 if unbatched else 2}-D like the input, got {s.ndim}-D")
                if unbatched:
                    s = s.unsqueeze(0)
                if s.shape[0] != batch:
                    raise RuntimeError(f"{name}: Input batch size {batch} doesn't match hidden{i} batch size "
                                       f"{s.shape[0]}")
                if tuple(s.shape) != (batch, H):
                    raise RuntimeError(f"{name}: Expected hidden{i if lstm else ''} size {(batch, H)}, got "
                                       f"{list(s.shape)}")
            if unbatched:
                states = tuple(s.unsqueeze(0) for s in states)
        w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, None)
        y = _layer(self.mode, input, states[0], states[1] if lstm else None, w, (batch,), False)
        h = y[:batch * H].reshape(batch, H)
        if unbatched:
            h = h.squeeze(0)
        if not lstm:
            return h
        c = y[2 * batch * H:].reshape(batch, H)
        return h, (c.squeeze(0) if unbatched else c)

    def forward(self, input, hx=None):
        return self._step(input, hx)

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of one call: (input + hidden) x gates per batch row."""
        input = args[0] if args else kwargs["input"]
        rows = input.shape[0] if input.ndim == 2 else 1
        return rows * _GATES[self.mode] * self.hidden_size * (self.input_size + self.hidden_size)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        s += ", bias=False" if not self.bias else ""
        nonlinearity = getattr(self, "nonlinearity", "tanh")
        return s + (f", nonlinearity={nonlinearity}" if nonlinearity != "tanh" else "")


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, dtype, "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU")
        self.nonlinearity = nonlinearity


class LSTMCell(RNNCellBase):
    mode = "LSTM"


class GRUCell(RNNCellBase):
    mode = "GRU"
