"""Checkpoints as .npz files: every array stored as itself, everything else (numbers,
strings, nesting, dict key types) in one JSON document beside them.

Saving writes a temporary file (``<name>.XXXXXXXX.tmp``) in the same directory, flushes
it to disk and renames it over the target, so an interrupted save never leaves a broken
checkpoint behind. A save killed before the rename leaves its temporary file; the next
successful save of the same path removes such leftovers (only files of exactly that
pattern, and only ones older than its own temporary file).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..device import array_namespace
from ..tensor import Tensor

_META_KEY = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, truncated, not a checkpoint, or one
    whose contents do not fit what it is loaded into (another model, missing entries)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (a FileNotFoundError too)."""


# tempfile.mkstemp's names: prefix + 8 characters of this alphabet + suffix.
_TMP_RANDOM = r"[a-z0-9_]{8}"


def _remove_stale_temporaries(path: Path, own_started: float) -> None:
    """Delete `<name>.XXXXXXXX.tmp` siblings of `path` left by interrupted saves: exactly
    mkstemp's pattern for this checkpoint name, last written before `own_started` (a save
    running beside this one keeps writing its file, so it stays newer)."""
    pattern = re.compile(re.escape(path.name) + r"\." + _TMP_RANDOM + r"\.tmp")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < own_started:
                os.unlink(entry.path)
        except OSError:  # gone already, or not ours to remove: leave it
            pass


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
        arrays[key] = np.ascontiguousarray(value)
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
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=directory)
    own_started = os.fstat(fd).st_mtime
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _remove_stale_temporaries(path, own_started)
    return path


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

