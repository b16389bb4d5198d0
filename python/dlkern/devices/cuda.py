"""The CUDA device namespace: arrays are DeviceArrays of dlkern._C_cuda (or of a stand-in
module with the same functions, in tests); see dlkern.devices."""

import math

import numpy as np

from ..device_array import basic_view, install, leading_arrays, promote
from ..generator import RNG

try:
    from .. import _C_cuda
except ImportError:  # dlkern built without CUDA
    _C_cuda = None

# (DeviceArray type, device index) -> the namespace that computes on such arrays
namespace_of_array = {}


def cuda_module():
    """dlkern._C_cuda, or None when dlkern was built without CUDA."""
    return _C_cuda


def unavailable_reason():
    """Why device("cuda") cannot be used here, or None when it can."""
    module = _C_cuda
    if module is None:
        return "dlkern was built without CUDA support (dlkern._C_cuda is missing; rebuild with DLKERN_CUDA=ON)"
    try:
        if not module.is_available():
            return "dlkern._C_cuda is built but no CUDA device is available"
    except Exception as exc:
        return f"dlkern._C_cuda cannot query devices: {exc}"
    return None


class CUDADevice:
    """A CUDA device: arrays are ``DeviceArray`` of ``module`` (dlkern._C_cuda, or a
    stand-in with the same functions in tests), with NumPy's array methods from
    dlkern.device_array. Kernel names map 1:1 to the module's functions; the array
    helpers below (broadcast_to, concatenate, tril, ...) are views and copies built on
    them. A name with no CUDA kernel raises NotImplementedError naming the op and
    'cuda'. Every operand must already live on this device."""

    type = "cuda"

    # Binary elementwise names whose operands are promoted to one dtype as NumPy does.
    _PROMOTING = frozenset(("add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "logaddexp",
                            "greater", "greater_equal", "less", "less_equal", "equal", "not_equal"))

    def __init__(self, index=0, module=None):
        self.index = int(index)
        self.module = module if module is not None else _C_cuda
        install(self.module)
        # Arrays of a stand-in module (tests) find their namespace here; the real
        # module's arrays map to the cached dlkern.device("cuda:N") instead.
        namespace_of_array.setdefault((self.module.DeviceArray, self.index), self)

    @property
    def array_type(self):
        return self.module.DeviceArray

    def _check_same_device(self, name, args):
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"{name} on {self}: got a numpy.ndarray (cpu); devices cannot be "
                                f"mixed in one op, move it with .to('{self}') first")
            if isinstance(a, (tuple, list)):
                self._check_same_device(name, a)
                continue
            dev = getattr(a, "device", None)
            if isinstance(dev, int) and dev != self.index:
                raise ValueError(f"{name} on {self}: an operand is on cuda:{dev}; devices cannot be "
                                 "mixed in one op")

    def __getattr__(self, name):
        # Any name the class lacks is a kernel of the module under the same name, wrapped
        # once in a _Kernel kept in the instance's namespace (a lookup that reaches
        # __getattr__ costs ~1.5 us, once per op call otherwise).
        if name.startswith("__"):
            raise AttributeError(name)
        # The module lists its kernels (module.KERNELS, one list in csrc/bind/kernels.h).
        fn = getattr(self.module, name, None) if name in self.module.KERNELS else None
        if fn is None:
            raise NotImplementedError(
                f"op '{name}' is not implemented on device 'cuda' (no kernel dlkern._C_cuda.{name})")
        kernel = self.__dict__[name] = _Kernel(self, name, fn)
        return kernel

    # ---- creation
    def _dtype(self, dtype, default=np.float32):
        return np.dtype(default if dtype is None else dtype)

    def zeros(self, shape, dtype=None):
        return self.module.zeros(_shape_tuple(shape), self._dtype(dtype), device=self.index)

    def empty(self, shape, dtype=None):
        return self.module.empty(_shape_tuple(shape), self._dtype(dtype), device=self.index)

    def full(self, shape, value, dtype=None):
        return self.module.full(_shape_tuple(shape), value, self._dtype(dtype), device=self.index)

    def ones(self, shape, dtype=None):
        return self.full(shape, 1, dtype)

    def zeros_like(self, x, dtype=None):
        return self.zeros(x.shape, dtype or x.dtype)

    def ones_like(self, x, dtype=None):
        return self.full(x.shape, 1, dtype or x.dtype)

    def arange(self, start, stop=None, step=1, dtype=None):
        return self.module.arange(start, stop, step, dtype=dtype, device=self.index)

    def asarray(self, x, dtype=None):
        """A DeviceArray on this device from a DeviceArray (as is), a Python number or a
        0-d NumPy scalar (results of host-side math). A NumPy array is refused: moving
        data between devices is Tensor.to's job, never an implicit side effect."""
        module = self.module
        if isinstance(x, module.DeviceArray):
            self._check_same_device("asarray", (x,))
        elif isinstance(x, (int, float, bool, np.generic)):
            x = self.full((), x.item() if isinstance(x, np.generic) else x,
                          dtype or (x.dtype if isinstance(x, np.generic) else np.float32))
        else:
            self._check_same_device("asarray", (x,))
            raise TypeError(f"asarray on {self}: cannot make a device array from {type(x).__name__}")
        if dtype is not None and np.dtype(dtype) != x.dtype:
            x = module.astype(x, dtype)
        return x

    def relu_backward(self, g, y):
        """g where relu's output y > 0, else 0 (the CPU namespace's name)."""
        return g * (y > 0)

    def cast(self, x, dtype):
        """x converted to dtype (x itself when it has it already)."""
        return x if x.dtype == dtype else x.astype(dtype)

    def fused(self, name):
        """The module's fused optimizer kernel `name` (adam_step, sgd_step), or None."""
        return getattr(self.module, name, None)

    def uniform(self, shape, dtype=np.float32):
        """Uniform [0, 1) samples made on the device from a counter-based generator whose
        seed is drawn from dlkern's generator, so dlkern.manual_seed governs them too."""
        seed = int(RNG.generator.integers(0, 2 ** 63 - 1))
        return self.module.rand(_shape_tuple(shape), seed, dtype, device=self.index)

    def from_host(self, array):
        """Copy a NumPy array to this device (the one explicit host-to-device path)."""
        # np.asarray(order="C"), not np.ascontiguousarray: that one makes a 0-d array 1-d
        return self.module.from_numpy(np.asarray(array, order="C"), device=self.index)

    def contiguous(self, x):
        self._check_same_device("contiguous", (x,))
        return x.contiguous()

    # Operands nn/models/train make on the host and read back on the host.
    def to_device(self, x):
        """x as an array of this device: a DeviceArray of it as is, host data copied (the
        explicit host-to-device path for operands nn makes on the host: indices, masks)."""
        if isinstance(x, self.module.DeviceArray):
            self._check_same_device("to_device", (x,))
            return x
        return self.from_host(np.asarray(x))

    def to_host(self, x):
        """A NumPy copy of device array x (a synchronisation with the device)."""
        return x.numpy()

    def host_bounds(self, x):
        """None: reading a device array's min and max would synchronise with the device;
        the kernels that index with x check its bounds themselves."""
        return None

    # ---- kernels of dlkern._C with no CUDA kernel yet, composed from the module's primitives
    # (a CUDA kernel can replace each once a GPU can verify it)
    def gelu_erf(self, x):
        """x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)): the exact GELU."""
        return x * self._normal_cdf(x)

    def gelu_erf_backward(self, grad_out, x):
        """grad_out (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)."""
        pdf = self.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
        return grad_out * (self._normal_cdf(x) + x * pdf)

    def _normal_cdf(self, x):
        return 0.5 * (1 + self.erf(x * (1.0 / math.sqrt(2.0))))

    # The recurrent cells' pointwise steps (csrc/cpu/rnn.h has the formulas and shapes;
    # the CPU kernels check the arguments).
    def lstm_cell_forward(self, gates, c_prev):
        """-> (h, c, act): act = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)], c = f c_prev + i g, h = o tanh(c)."""
        i, f, g, o = _gate_blocks(gates, 4)
        i, f, g, o = self.sigmoid(i), self.sigmoid(f), self.tanh(g), self.sigmoid(o)
        c = f * c_prev + i * g
        return o * self.tanh(c), c, self.concatenate([i, f, g, o], axis=1)

    def lstm_cell_backward(self, dh, dc, act, c_prev, c):
        """-> (dgates, dc_prev), dgates w.r.t. the gates' pre-activations."""
        i, f, g, o = _gate_blocks(act, 4)
        tc = self.tanh(c)
        dc_total = dc + dh * o * (1 - tc * tc)
        dgates = [dc_total * g * i * (1 - i), dc_total * c_prev * f * (1 - f), dc_total * i * (1 - g * g),
                  dh * tc * o * (1 - o)]
        return self.concatenate(dgates, axis=1), dc_total * f

    def gru_cell_forward(self, gi, gh, h_prev):
        """-> (h, saved): r, z = sigmoid(gi + gh), n = tanh(gi_n + r gh_n), h = (1 - z) n + z h_prev,
        saved = [r, z, n, gh_n]."""
        (ir, iz, i_n), (hr, hz, hn) = _gate_blocks(gi, 3), _gate_blocks(gh, 3)
        r, z = self.sigmoid(ir + hr), self.sigmoid(iz + hz)
        n = self.tanh(i_n + r * hn)
        return (1 - z) * n + z * h_prev, self.concatenate([r, z, n, hn], axis=1)

    def gru_cell_backward(self, dh, saved, h_prev):
        """-> (dgi, dgh, dh_prev); dh_prev = dh z (the caller adds the path through W_hh)."""
        r, z, n, hn = _gate_blocks(saved, 4)
        dn = dh * (1 - z) * (1 - n * n)
        dz = dh * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        return (self.concatenate([dr, dz, dn], axis=1), self.concatenate([dr, dz, dn * r], axis=1), dh * z)

    # The recurrent layers' time loops (csrc/cpu/rnn_layer.h has the contract; the CPU
    # kernels check the arguments): per step the recurrent GEMM and the cell above, the
    # state, the outputs and the saves written in place.
    def lstm_layer_forward(self, gates, w_hh, h, c, out, batch_sizes, reverse=False, c_all=None, c_prev=None,
                           h_prev=None):
        w_t = self.contiguous(w_hh.T)  # once per sequence: the per-step GEMMs read it plain
        for s, e in _step_rows(batch_sizes, reverse):
            hp, cp = h[:e - s], c[:e - s]
            _save(h_prev, s, e, hp)
            _save(c_prev, s, e, cp)
            hn, cn, act = self.lstm_cell_forward(self.gemm(hp, w_t, c=gates[s:e], beta=1.0), cp)
            gates[s:e] = act
            _save(c_all, s, e, cn)
            out[s:e] = hn
            hp[...] = hn
            cp[...] = cn

    def lstm_layer_backward(self, dout, dh, dc, act, c_all, c_prev, w_hh, batch_sizes, reverse=False):
        dgates = self.empty(act.shape, dtype=act.dtype)
        for s, e in _step_rows(batch_sizes, not reverse):
            dhb = dh[:e - s]
            dhb += dout[s:e]
            dg, dc[:e - s] = self.lstm_cell_backward(dhb, dc[:e - s], act[s:e], c_prev[s:e], c_all[s:e])
            dgates[s:e] = dg
            self.gemm(dg, w_hh, c=dhb)
        return dgates

    def gru_layer_forward(self, gi, w_hh, b_hh, h, out, batch_sizes, reverse=False, saved=None, h_prev=None):
        w_t = self.contiguous(w_hh.T)
        for s, e in _step_rows(batch_sizes, reverse):
            hp = h[:e - s]
            _save(h_prev, s, e, hp)
            gh = self.gemm(hp, w_t)
            hn, sv = self.gru_cell_forward(gi[s:e], gh if b_hh is None else gh + b_hh, hp)
            _save(saved, s, e, sv)
            out[s:e] = hn
            hp[...] = hn

    def gru_layer_backward(self, dout, dh, saved, h_prev, w_hh, batch_sizes, reverse=False):
        n, H = h_prev.shape
        dgi, dgh = self.empty((n, 3 * H), dtype=saved.dtype), self.empty((n, 3 * H), dtype=saved.dtype)
        for s, e in _step_rows(batch_sizes, not reverse):
            dhb = dh[:e - s]
            dhb += dout[s:e]
            dgi[s:e], dgh[s:e], dhb[...] = self.gru_cell_backward(dhb, saved[s:e], h_prev[s:e])
            self.gemm(dgh[s:e], w_hh, c=dhb, beta=1.0)
        return dgi, dgh

    def rnn_layer_forward(self, pre, w_hh, h, out, batch_sizes, reverse=False, nonlinearity="tanh", h_prev=None):
        w_t = self.contiguous(w_hh.T)
        for s, e in _step_rows(batch_sizes, reverse):
            hp = h[:e - s]
            _save(h_prev, s, e, hp)
            p = self.gemm(hp, w_t, c=pre[s:e], beta=1.0)
            pre[s:e] = p
            out[s:e] = self.relu(p) if nonlinearity == "relu" else self.tanh(p)
            hp[...] = out[s:e]

    def rnn_layer_backward(self, dout, dh, out, w_hh, batch_sizes, reverse=False, nonlinearity="tanh"):
        dpre = self.empty(out.shape, dtype=out.dtype)
        for s, e in _step_rows(batch_sizes, not reverse):
            dhb = dh[:e - s]
            dhb += dout[s:e]
            hn = out[s:e]
            dpre[s:e] = dhb * (hn > 0) if nonlinearity == "relu" else dhb * (1 - hn * hn)
            self.gemm(dpre[s:e], w_hh, c=dhb)
        return dpre

    # ---- views and copies built on the module's primitives
    def broadcast_to(self, x, shape):
        shape = _shape_tuple(shape)
        lead = len(shape) - x.ndim
        if lead < 0:
            raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
        strides = [0] * lead
        for n, m, s in zip(x.shape, shape[lead:], x.strides):
            if n != m and n != 1:
                raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
            strides.append(s if n == m else 0)
        return x.as_strided(shape, tuple(strides))

    def expand_dims(self, x, axis):
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        ndim = x.ndim + len(axes)
        axes = sorted(a % ndim for a in axes)
        shape, strides = list(x.shape), list(x.strides)
        for a in axes:
            shape.insert(a, 1)
            strides.insert(a, 0)
        return x.as_strided(tuple(shape), tuple(strides))

    def concatenate(self, arrays, axis=0):
        arrays = list(arrays)
        self._check_same_device("concatenate", arrays)
        first = arrays[0]
        axis = axis % first.ndim
        shape = list(first.shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        out = self.empty(shape, first.dtype)
        start = 0
        index = [slice(None)] * first.ndim
        for a in arrays:
            index[axis] = slice(start, start + a.shape[axis])
            out[tuple(index)] = a
            start += a.shape[axis]
        return out

    def stack(self, arrays, axis=0):
        arrays = list(arrays)
        return self.concatenate([self.expand_dims(a, axis) for a in arrays], axis=axis % (arrays[0].ndim + 1))

    def where(self, cond, a, b):
        self._check_same_device("where", (cond, a, b))
        scalar = lambda v: v.item() if isinstance(v, np.generic) else v  # noqa: E731
        if isinstance(cond, self.module.DeviceArray) and cond.dtype != np.bool_:
            cond = self.module.not_equal(cond, 0)
        a, b = scalar(a), scalar(b)
        if isinstance(a, self.module.DeviceArray) or isinstance(b, self.module.DeviceArray):
            # one dtype for both branches, as NumPy's result type (the kernel refuses mixed
            # dtypes, a float with an int64 array and a non-bool number with a bool array)
            a, b = promote(self.module.DeviceArray, a, b)
        return self.module.where(cond, a, b)

    def var(self, x, axis=None, ddof=0, keepdims=False):
        return x.var(axis=axis, ddof=ddof, keepdims=keepdims)

    def sum(self, x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return x.mean(axis=axis, keepdims=keepdims)

    # ---- attention: the CUDA kernels take additive float masks; a bool mask (True =
    # attend) becomes 0 / -inf here, so nn code passes either kind on every device.
    def _float_mask(self, mask, dtype):
        if mask is None or mask.dtype != np.bool_:
            return mask
        return self.module.where(mask, self.full((), 0.0, dtype), -np.inf)

    def attention_forward(self, q, k, v, attn_mask=None, *args, **kwargs):
        self._check_same_device("attention_forward", (q, k, v, attn_mask))
        return self.module.attention_forward(q, k, v, self._float_mask(attn_mask, q.dtype), *args, **kwargs)

    def attention_backward(self, grad_out, q, k, v, out, lse, attn_mask=None, *args, **kwargs):
        self._check_same_device("attention_backward", (grad_out, q, k, v, out, lse, attn_mask))
        return self.module.attention_backward(grad_out, q, k, v, out, lse, self._float_mask(attn_mask, q.dtype),
                                              *args, **kwargs)

    def decode_attention(self, q, k_cache, v_cache, length, attn_mask=None, scale=None):
        self._check_same_device("decode_attention", (q, k_cache, v_cache, attn_mask))
        return self.module.decode_attention(q, k_cache, v_cache, length, self._float_mask(attn_mask, q.dtype), scale)

    def amax(self, x, axis=None, keepdims=False):
        return x.max(axis=axis, keepdims=keepdims)

    def amin(self, x, axis=None, keepdims=False):
        return x.min(axis=axis, keepdims=keepdims)

    def _triangle(self, x, k, lower):
        rows, cols = x.shape[-2], x.shape[-1]
        i = self.arange(rows).reshape(rows, 1)
        j = self.arange(cols)
        keep = self.module.greater_equal(i + k, j) if lower else self.module.less_equal(i + k, j)
        return self.module.where(keep, x, False if x.dtype == np.bool_ else 0)  # bool x: a bool zero

    def tril(self, x, k=0):
        return self._triangle(x, k, True)

    def triu(self, x, k=0):
        return self._triangle(x, k, False)

    def add_at(self, x, index, values):
        """numpy.add.at(x, index, values) for basic indices (no repeats: a view +=) or one
        integer array over axis 0 (repeats accumulate)."""
        self._check_same_device("add_at", (x, values))
        view = basic_view(x, index)
        if view is not None:
            view += values
            return
        if isinstance(index, tuple) and len(index) == 1:
            index = index[0]
        if isinstance(index, tuple):
            pairs = leading_arrays(x, index) if x.is_contiguous() else None
            if pairs is None:
                raise NotImplementedError("add_at on cuda: only basic indices, one integer index array, or integer "
                                          "arrays over the leading axes of a contiguous array are supported")
            flat, lin = pairs
            self.module.add_at(flat, lin, values)
            return
        if not isinstance(index, self.module.DeviceArray):
            index = self.from_host(np.asarray(index, dtype=np.int64))
        self.module.add_at(x, index, values)

    def __repr__(self):
        return f"device(type='cuda', index={self.index})"

    def __str__(self):
        return f"cuda:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            return other in (str(self), "cuda") if self.index == 0 else other == str(self)
        return isinstance(other, CUDADevice) and other.index == self.index and other.module is self.module

    def __hash__(self):
        return hash(("cuda", self.index))

    def __reduce__(self):
        return (cuda_device, (self.index,))


class _Kernel:
    """A module function called as the namespace promises: every operand on this device,
    NumPy scalars as Python numbers, and the two operands of a binary elementwise op
    promoted to one dtype as NumPy would."""

    __slots__ = ("device", "fn", "promote", "__name__")

    def __init__(self, device, name, fn):
        self.device = device
        self.fn = fn
        self.promote = name in device._PROMOTING
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        self.device._check_same_device(self.__name__, args)
        args = tuple(a.item() if isinstance(a, np.generic) else a for a in args)
        if self.promote and len(args) == 2:
            args = promote(self.device.module.DeviceArray, *args)
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"<{self.__name__} on {self.device}>"


def _shape_tuple(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(n) for n in shape)


_cuda_devices = {}


def _cuda_index(spec):
    _, _, index = spec.partition(":")
    if not index.strip():
        return 0
    try:
        value = int(index)
    except ValueError:
        raise ValueError(f"bad CUDA device {spec!r}; expected 'cuda' or 'cuda:<index>'") from None
    if value < 0:
        raise ValueError(f"bad CUDA device {spec!r}: negative index")
    return value


def cuda_device(spec=0):
    """The namespace of "cuda", "cuda:<index>" or an index: one per device, made on first
    use; RuntimeError saying why when CUDA is not built or no such GPU is present."""
    index = spec if isinstance(spec, int) else _cuda_index(spec)
    spec = spec if isinstance(spec, str) else f"cuda:{index}"
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"device '{spec}' requested but {reason}")
    count = _C_cuda.device_count()
    if index >= count:
        raise RuntimeError(f"device '{spec}' requested but only {count} CUDA device(s) are visible")
    dev = _cuda_devices.get(index)
    if dev is None:
        dev = _cuda_devices[index] = CUDADevice(index)
    return dev


def _step_rows(batch_sizes, reverse):
    """(start, stop) rows of each step of a packed sequence, in processing order."""
    rows, start = [], 0
    for b in batch_sizes:
        rows.append((start, start + b))
        start += b
    return rows[::-1] if reverse else rows


def _save(dst, s, e, rows):
    """dst[s:e] = rows unless the caller asked for no such save (dst None)."""
    if dst is not None:
        dst[s:e] = rows


def _gate_blocks(x, k):
    """The k column blocks of a (B, k H) gate array, as views."""
    h = x.shape[1] // k
    return [x[:, j * h:(j + 1) * h] for j in range(k)]
