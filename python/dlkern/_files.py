"""Crash-safe file writes shared by dlkern.save and the training checkpoints.

A save writes a temporary file (``<name>.XXXXXXXX.tmp``) in the target's directory,
flushes it to disk and renames it over the target, so an interrupted save never leaves
a broken file behind. A save killed before the rename leaves its temporary file; the
next successful save of the same path removes such leftovers (only files of exactly
that pattern, and only ones older than its own temporary file).
"""

import os
import re
import tempfile
from pathlib import Path

# tempfile.mkstemp's names: prefix + 8 characters of this alphabet + suffix.
_TMP_RANDOM = r"[a-z0-9_]{8}"


def _remove_stale_temporaries(path: Path, own_started: float) -> None:
    """Delete `<name>.XXXXXXXX.tmp` siblings of `path` left by interrupted saves: exactly
    mkstemp's pattern for this file name, last written before `own_started` (a save
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


def _current_umask() -> int:
    """The process umask (read by setting it and setting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path, write) -> Path:
    """Make `path` by calling write(temporary_path) and renaming the result over it
    (creating the directory if needed); on any failure the temporary file is removed and
    `path` is untouched."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=directory)
    own_started = os.fstat(fd).st_mtime
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file 0600; the result gets the mode open() would give it
        # (0666 less the umask), as PyTorch's torch.save and every plain write do.
        os.chmod(tmp, 0o666 & ~_current_umask())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _remove_stale_temporaries(path, own_started)
    return path
