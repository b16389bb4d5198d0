"""Checkpoints as .npz files: every array stored as itself, everything else (numbers,
strings, nesting, dict key types) in one JSON document beside them.

Saving is crash-safe (dlkern._files.write_atomically: a temporary file renamed over the
target; leftovers of interrupted saves are removed by the next save).

This stays a .npz of its own rather than dlkern.save's safetensors file: the training
CLI then needs no optional package, and the existing checkpoints (and the default name
dlkern-gpt.npz) keep working.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .._files import write_atomically
from ..device import array_namespace
from ..tensor import Tensor

_META_KEY = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, truncated, not a checkpoint, or one
    whose contents do not fit what it is loaded into (another model, missing entries)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (a FileNotFoundError too)."""


def mismatch_error(path, what, exc) -> CheckpointError:
    """A one-line CheckpointError saying that checkpoint `path` does not fit `what`
    (e.g. "the mlp model"), from the exception raised while applying it."""
    if isinstance(exc, KeyError):
        detail = f"it has no {exc.args[0]!r} entry" if exc.args else "an entry is missing"
    else:
        detail = " ".join(str(exc).split())  # load_state_dict lists its problems on several lines
    if len(detail) > 400:
        detail = detail[:400] + " ..."
    return CheckpointError(f"checkpoint {path} does not fit {what}: {detail}")


def _encode(value, arrays):
    """JSON-able form of `value`; arrays move to `arrays` and leave a reference."""
    if isinstance(value, Tensor):
        value = value.detach().data
    try:
        value = array_namespace(value).to_host(value)  # arrays of every device are stored from the host
    except TypeError:
        pass  # not an array
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value  # np.save writes any layout (np.ascontiguousarray would turn 0-d arrays 1-d)
        return {"__array__": key}
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__tuple__" if isinstance(value, tuple) else "__list__": [_encode(v, arrays) for v in value]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save_checkpoint: cannot store a {type(value).__name__}")


def _decode(value, arrays):
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__dict__" in value:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__dict__"]}
        if "__list__" in value:
            return [_decode(v, arrays) for v in value["__list__"]]
        if "__tuple__" in value:
            return tuple(_decode(v, arrays) for v in value["__tuple__"])
    return value


def save_checkpoint(path, state: dict) -> Path:
    """Write `state` (nested dicts/lists of arrays, Tensors and plain values) to `path`."""
    path = Path(path)
    arrays = {}
    meta = json.dumps(_encode(state, arrays))
    arrays[_META_KEY] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return write_atomically(path, write)


def load_checkpoint(path) -> dict:
    """The state saved by save_checkpoint. FileNotFoundError if missing;
    CheckpointError if the file is damaged, truncated or not a dlkern checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged or truncated ({exc})") from exc
    if _META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} is not a dlkern checkpoint (no {_META_KEY} entry)")
    try:
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unreadable header ({exc})") from exc
    return _decode(meta, arrays)

