"""Reading ``torch.save`` files (the zip format of PyTorch >= 1.6) without PyTorch and
without running their pickle.

Such a file is a zip holding ``<name>/data.pkl`` (the object, pickled with every tensor
storage replaced by a persistent id) and ``<name>/data/<key>`` (each storage's raw bytes).
The unpickler here resolves only the few globals a state_dict needs (OrderedDict, the
tensor/parameter rebuild functions, the typed storage classes); any other global is
refused (pickle.UnpicklingError), so no code from the file ever runs. Tensors become
NumPy views of their storage (tensors sharing a storage, e.g. tied weights, share
memory), after checking that every view stays inside its storage. bfloat16 storages are
upcast to float32 (exact: a bfloat16 is the upper half of a float32), since NumPy has no
bfloat16. A file saved on a GPU loads on the CPU (as map_location="cpu").
"""

import collections
import io
import numbers
import pickle
import re
import zipfile

import numpy as np

from .devices import cpu
from .nn.parameter import Parameter
from .tensor import Tensor

# torch.<Name>Storage -> the NumPy dtype of its elements ("bfloat16": upcast to float32).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}
_KEY = re.compile(r"[A-Za-z0-9_]+")
_MAX_PICKLE_BYTES = 1 << 30


class _Sealed:
    """Pickle's BUILD opcode sets attributes on whatever object is on its stack; every
    object the unpickler hands out for a global refuses that, so a file cannot change
    OrderedDict or the rebuild functions for the rest of the process."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError("torch file: refused to set state on a pickle global")


class _StorageType(_Sealed):
    """What the unpickler returns for ``torch.<Name>Storage``: the element dtype."""

    __slots__ = ("dtype",)

    def __init__(self, name):
        self.dtype = _STORAGE_DTYPES[name]


class _Callable(_Sealed):
    """An allowed global: calls `fn` (OrderedDict or a rebuild function)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


def is_torch_zip(names):
    """Whether a zip's member names look like a torch.save file."""
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names)


def _check_ints(what, values):
    if not isinstance(values, (tuple, list)) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise pickle.UnpicklingError(f"torch file: tensor {what} must be a tuple of ints, got {values!r}")
    return tuple(int(v) for v in values)


class _Reader(pickle.Unpickler):
    def __init__(self, data, archive, prefix, big_endian, path):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._big_endian = big_endian
        self._path = path
        self._storages = {}

    def find_class(self, module, name):
        allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        }
        if (module, name) in allowed:
            return _Callable(allowed[(module, name)])
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"dlkern.load: {self._path} needs the global {module}.{name}, which is not one of the tensor "
            f"rebuild functions a state_dict uses; refused (dlkern.load never runs code from a pickle)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and _KEY.fullmatch(pid[2])
                and isinstance(pid[4], numbers.Integral) and pid[4] >= 0):
            raise pickle.UnpicklingError(f"dlkern.load: {self._path} has an unexpected storage reference {pid!r}")
        storage_type, key, numel = pid[1], pid[2], int(pid[4])
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type, key, numel)
        return self._storages[key]

    def _read_storage(self, storage_type, key, numel):
        name = f"{self._prefix}data/{key}"
        raw_dtype = np.dtype("uint16" if storage_type.dtype == "bfloat16" else storage_type.dtype)
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise pickle.UnpicklingError(f"dlkern.load: {self._path} lacks the storage {name}") from None
        if info.file_size != numel * raw_dtype.itemsize:  # checked before reading: no zip bomb
            raise pickle.UnpicklingError(f"dlkern.load: storage {name} of {self._path} holds {info.file_size} "
                                         f"bytes, not {numel} elements of {storage_type.dtype}")
        # A bytearray keeps the arrays writable (the tensors are ours to change).
        array = np.frombuffer(bytearray(self._archive.read(name)), raw_dtype)
        if self._big_endian:
            array = array.byteswap().view(raw_dtype.newbyteorder(">")).astype(raw_dtype)
        if storage_type.dtype == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("torch file: a tensor without a storage")
    size, stride = _check_ints("size", size), _check_ints("stride", stride)
    if not isinstance(storage_offset, numbers.Integral) or storage_offset < 0 or len(size) != len(stride) \
            or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"torch file: bad tensor layout (offset {storage_offset}, size {size}, "
                                     f"stride {stride})")
    if 0 in size:
        view = np.empty(size, storage.dtype)
    else:
        last = int(storage_offset) + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.size:  # a view past its storage would read foreign memory
            raise pickle.UnpicklingError(f"torch file: tensor of size {size}, stride {stride}, offset "
                                         f"{storage_offset} reaches past its storage of {storage.size} elements")
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(storage[int(storage_offset):], shape=size,
                                               strides=tuple(s * item for s in stride))
    t = Tensor._make(view, cpu, False, None)
    if requires_grad is True and view.dtype.kind == "f":
        t.requires_grad_(True)
    return t


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("torch file: a parameter without a tensor")
    return Parameter(data, requires_grad=bool(requires_grad) and data.dtype.kind == "f")


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)  # the extra Python state is dropped


def _check_plain(obj, path):
    """Refuse a result holding anything but containers, plain values and Tensors over
    NumPy arrays (what BUILD or a stray global could have left in it)."""
    stack, seen = [obj], set()
    while stack:
        value = stack.pop()
        if isinstance(value, (dict, list, tuple)):
            if id(value) in seen:  # a pickle can make a list that holds itself
                continue
            seen.add(id(value))
        if isinstance(value, dict):
            # Through dict's own methods: BUILD may have set instance attributes such as
            # `keys` on an OrderedDict; the only one torch writes is `_metadata`.
            extra = getattr(value, "__dict__", {})
            if set(extra) - {"_metadata"}:
                raise pickle.UnpicklingError(f"dlkern.load: {path} sets attributes {sorted(extra)} on a dict")
            stack.extend(dict.keys(value))
            stack.extend(dict.values(value))
            stack.extend(extra.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, Tensor):
            if type(value.data) is not np.ndarray:
                raise pickle.UnpicklingError(f"dlkern.load: {path} holds a tampered tensor")
        elif value is not None and not isinstance(value, (str, bytes, bool, int, float, complex)):
            raise pickle.UnpicklingError(f"dlkern.load: {path} holds a {type(value).__name__}, which is not "
                                         f"part of a state_dict")


def load_torch_zip(path, archive):
    """The object of torch.save file `path` (an open zipfile.ZipFile), tensors as dlkern
    Tensors on the CPU."""
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise ValueError(f"dlkern.load: {path} is a zip but not one torch.save file ({len(pickles)} data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    names = set(archive.namelist())
    order = archive.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
    if order not in ("little", "big"):
        raise ValueError(f"dlkern.load: {path} has an unknown byte order {order!r}")
    if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE_BYTES:
        raise ValueError(f"dlkern.load: {path}'s data.pkl is too large for a state_dict")
    reader = _Reader(archive.read(pickles[0]), archive, prefix, order == "big", path)
    try:
        obj = reader.load()
        _check_plain(obj, path)
        return obj
    except (pickle.UnpicklingError, ValueError):
        raise
    except Exception as exc:  # a malformed pickle: wrong argument counts, truncated data, ...
        raise pickle.UnpicklingError(f"dlkern.load: {path} is not a readable torch.save file "
                                     f"({type(exc).__name__}: {exc})") from exc


def open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"dlkern.load: {path} is a damaged zip ({exc})") from exc
