"""dlkern.save / dlkern.load: objects holding tensors as one safetensors file.

``dlkern.save(obj, path)`` takes a Tensor, a NumPy array, or dicts / lists / tuples of
them mixed with plain values (numbers, strings, booleans, None): a state_dict, an
optimizer's state_dict, ``{"model": ..., "optimizer": ..., "epoch": 3}``. Every array goes
into the safetensors file under its dotted path (``model.fc.weight``,
``optimizer.state.0.exp_avg``), so ``safetensors.torch.load_file`` on a saved
``model.state_dict()`` gives PyTorch the very keys its ``load_state_dict`` wants. The
rest of the object (nesting, dict key types, which entries are Tensors and which NumPy
arrays) is JSON in the file's metadata under "dlkern". Tensors that share memory (tied
weights: the same Tensor, or views with the same address, shape, strides and dtype) are
stored once and come back as one Tensor; partial overlaps are stored separately.
Non-contiguous tensors are stored contiguous. Writes are crash-safe (dlkern._files).

``dlkern.load(path)`` rebuilds the object (Tensors on the CPU, or on ``map_location``)
from such a file, and also opens:
- any other safetensors file: a dict of name -> Tensor (bfloat16 upcast to float32);
- a ``torch.save`` file, without importing PyTorch and without running its pickle
  (dlkern._torch_zip: only the tensor rebuild functions are allowed).
A dlkern training checkpoint (.npz) is named in the error: dlkern.train.load_checkpoint
opens it.

safetensors is an optional dependency: ``pip install 'dlkern[io]'``.
"""

import json
import numbers
import os
import struct
from pathlib import Path

import numpy as np

from ._files import write_atomically
from ._torch_zip import is_torch_zip, load_torch_zip, open_zip
from .devices import array_namespace, cpu as _cpu, device as _get_device
from .interop import host_array
from .nn.parameter import Parameter
from .tensor import Tensor

_META = "dlkern"       # metadata entry holding the object's structure
_VERSION = 1
# The dtypes safetensors' NumPy API stores (by numpy name).
_STORABLE = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
             "uint8", "bool", "complex64"}
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401
    except ImportError:
        raise ImportError("dlkern.save/dlkern.load need the safetensors package for .safetensors files: "
                          "pip install 'dlkern[io]'") from None
    return safetensors


# ------------------------------------------------------------------------- saving
class _Arrays:
    """The arrays of one save: key -> contiguous host array, each memory stored once."""

    def __init__(self):
        self.by_key = {}
        self._by_memory = {}
        self._alive = []  # keeps every source array alive, so no address is reused mid-save

    def store(self, array, path, source=None):
        """The key of host `array`; `source` is the device array it was copied from
        (the copies of one device array have different addresses, the source not)."""
        if array.dtype.name not in _STORABLE:
            raise TypeError(f"dlkern.save: {_where(path)} has dtype {array.dtype}, which safetensors can't store")
        self._alive.append(array if source is None else source)
        if source is not None:
            memory = ("device", id(source))
        else:
            memory = (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)
        key = self._by_memory.get(memory)
        if key is None:
            key = base = ".".join(str(p) for p in path) or "tensor"
            n = 1
            while key in self.by_key:  # e.g. {"a.b": x, "a": {"b": y}}
                n += 1
                key = f"{base}#{n}"
            # copy(order="C") as np.ascontiguousarray would turn a 0-d array 1-d
            self.by_key[key] = array if array.flags.c_contiguous else array.copy(order="C")
            self._by_memory[memory] = key
        return key


def _where(path):
    return "the object" if not path else "entry " + repr(".".join(str(p) for p in path))


def _encode(value, path, arrays):
    """The JSON form of `value`; its arrays go to `arrays`."""
    if isinstance(value, Tensor):
        source = None if value.device is _cpu else value.data
        out = {"__tensor__": arrays.store(host_array(value), path, source)}
        if value.requires_grad:
            out["requires_grad"] = True
        if isinstance(value, Parameter):
            out["parameter"] = True
        return out
    if isinstance(value, np.ndarray):
        return {"__ndarray__": arrays.store(value, path)}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dlpack__") and not isinstance(value, (str, bytes)):  # a PyTorch tensor, ...
        return {"__tensor__": arrays.store(host_array(value, f"dlkern.save: {_where(path)}"), path)}
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not (k is None or isinstance(k, (str, bool, numbers.Number, tuple))):
                raise TypeError(f"dlkern.save: {_where(path)} has a dict key of type {type(k).__name__}")
            items.append([_encode(k, path, arrays), _encode(v, path + [k], arrays)])
        return {"__dict__": items}
    if isinstance(value, (list, tuple)):
        tag = "__tuple__" if isinstance(value, tuple) else "__list__"
        return {tag: [_encode(v, path + [i], arrays) for i, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:  # a bare device array (a CUDA array outside a Tensor): stored from the host
        host = array_namespace(value).to_host(value)
    except TypeError:
        pass
    else:
        return {"__tensor__": arrays.store(host, path, value)}
    hint = "; save its state_dict() instead" if hasattr(value, "state_dict") else ""  # a Module, an optimizer
    raise TypeError(f"dlkern.save: can't store {_where(path)}, a {type(value).__name__}; tensors, arrays, dicts, "
                    f"lists, tuples, numbers, strings and None can be saved{hint}")


def save(obj, f):
    """Write `obj` (a Tensor, an array, or nested dicts/lists/tuples of them and plain
    values) to the safetensors file `f` (a path). See the module docstring."""
    path = _path("save", f)
    st = _safetensors()
    arrays = _Arrays()
    structure = json.dumps({"version": _VERSION, "object": _encode(obj, [], arrays)})
    # "format": "pt" tells PyTorch-side loaders (transformers) the tensors follow
    # PyTorch's layout conventions, which a dlkern state_dict does.
    metadata = {"format": "pt", _META: structure}
    write_atomically(path, lambda tmp: st.numpy.save_file(arrays.by_key, tmp, metadata=metadata))


def _path(op, f):
    if not isinstance(f, (str, os.PathLike)):
        raise TypeError(f"dlkern.{op}: f must be a file path (str or os.PathLike), got {type(f).__name__}; "
                        f"file objects are not supported")
    return Path(f)


# ------------------------------------------------------------------------- loading
def _target(map_location):
    if map_location is None:
        return _cpu
    if callable(map_location) or isinstance(map_location, dict):
        raise TypeError("dlkern.load: map_location must be a device ('cpu', 'cuda', a dlkern device); "
                        "functions and dicts are not supported")
    return _get_device(map_location)


class _Decoder:
    def __init__(self, arrays, target, path):
        self.arrays, self.target, self.path = arrays, target, path
        self.made = {}  # one object per stored array and kind: tied weights stay tied

    def array(self, key):
        if not isinstance(key, str) or key not in self.arrays:
            raise ValueError(f"dlkern.load: {self.path} is damaged: its structure names a missing tensor {key!r}")
        return self.arrays[key]

    def tensor(self, node):
        key = node["__tensor__"]
        memo = (key, bool(node.get("requires_grad")), bool(node.get("parameter")))
        if memo not in self.made:
            t = Tensor._make(self.array(key), _cpu, False, None)
            if self.target is not _cpu:
                t = t.to(self.target)
            if memo[2]:
                t = Parameter(t, requires_grad=memo[1])
            elif memo[1]:
                t.requires_grad_(True)
            self.made[memo] = t
        return self.made[memo]

    def __call__(self, node):
        if isinstance(node, dict):
            if "__tensor__" in node:
                return self.tensor(node)
            if "__ndarray__" in node:
                return self.array(node["__ndarray__"])
            if "__dict__" in node:
                return {self(k): self(v) for k, v in node["__dict__"]}
            if "__list__" in node:
                return [self(v) for v in node["__list__"]]
            if "__tuple__" in node:
                return tuple(self(v) for v in node["__tuple__"])
            raise ValueError(f"dlkern.load: {self.path} is damaged: unknown structure entry {sorted(node)}")
        return node


def _bfloat16_entry(path, key):
    """A BF16 safetensors entry as float32 (NumPy has no bfloat16), read by the format's
    header: an 8-byte little-endian length, the JSON header, then the data."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        entry = json.loads(fh.read(n))[key]
        start, end = entry["data_offsets"]
        fh.seek(8 + n + start)
        raw = np.frombuffer(fh.read(end - start), "<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def _load_safetensors(path, target):
    st = _safetensors()
    arrays = {}
    try:
        with st.safe_open(str(path), framework="np") as fh:
            metadata = fh.metadata() or {}
            for key in fh.keys():
                dtype = fh.get_slice(key).get_dtype()
                if dtype == "BF16":
                    arrays[key] = _bfloat16_entry(path, key)
                else:
                    try:
                        arrays[key] = fh.get_tensor(key)
                    except TypeError as exc:
                        raise TypeError(f"dlkern.load: {path} entry {key!r} has dtype {dtype}, which NumPy "
                                        f"can't hold ({exc})") from None
    except st.SafetensorError as exc:
        raise ValueError(f"dlkern.load: {path} is not a readable safetensors file ({exc})") from exc
    decode = _Decoder(arrays, target, path)
    if _META not in metadata:  # written by another library: its flat name -> tensor map
        return {key: decode({"__tensor__": key}) for key in arrays}
    try:
        structure = json.loads(metadata[_META])
    except json.JSONDecodeError as exc:
        raise ValueError(f"dlkern.load: {path} has unreadable dlkern metadata ({exc})") from exc
    if not isinstance(structure, dict) or structure.get("version") != _VERSION or "object" not in structure:
        raise ValueError(f"dlkern.load: {path} was written by another dlkern format version "
                         f"({structure.get('version') if isinstance(structure, dict) else '?'}); "
                         f"this dlkern reads version {_VERSION}")
    return decode(structure["object"])


def _moved(obj, target):
    """`obj` (a torch.save result) with its tensors on `target`, shared ones still shared."""
    if target is _cpu:
        return obj
    done = {}

    def move(v):
        if isinstance(v, Tensor):
            if id(v) not in done:
                done[id(v)] = v.to(target)
            return done[id(v)]
        if isinstance(v, dict):
            return type(v)((k, move(x)) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return type(v)(move(x) for x in v)
        return v

    return move(obj)


def load(f, map_location=None, *, weights_only=None):
    """The object saved in `f` (a path): a dlkern.save file, another safetensors file or
    a torch.save file (see the module docstring).
    map_location: None or 'cpu', or another device to put the tensors on. weights_only
    is accepted for PyTorch's signature: loading never runs code from the file anyway."""
    path = _path("load", f)
    target = _target(map_location)
    if not path.is_file():
        raise FileNotFoundError(f"dlkern.load: {path} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04":
        with open_zip(path) as archive:
            names = archive.namelist()
            if is_torch_zip(names):
                return _moved(load_torch_zip(path, archive), target)
        if "__meta__.npy" in names:  # dlkern.train sits above this module: named, not imported
            raise ValueError(f"dlkern.load: {path} is a dlkern training checkpoint; open it with "
                             f"dlkern.train.load_checkpoint")
        raise ValueError(f"dlkern.load: {path} is a zip but neither a torch.save file nor a dlkern checkpoint")
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER:
        return _load_safetensors(path, target)
    if head[:2] == b"\x80\x02":
        raise ValueError(f"dlkern.load: {path} looks like a legacy (pre-1.6, non-zip) torch.save file, which is "
                         f"not supported; re-save it with a current PyTorch's torch.save")
    raise ValueError(f"dlkern.load: {path} is not a safetensors file, a torch.save file or a dlkern checkpoint")
