"""A progress bar over a known number of steps (tqdm's, with its ETA) that the log lines
can print through without tearing it, or nothing at all: off a terminal, without tqdm
(an optional dependency: the `train` extra), with --no-progress, or on ranks other than 0.
"""

from __future__ import annotations

import sys


def tqdm_or_none(enabled):
    """tqdm's class when a bar should be drawn (`enabled` None: only when stderr is a
    terminal), else None."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class StepBar:
    """``update(n, **postfix)`` after each step, ``write(line)`` for log lines (printed above
    the bar, or plainly without one), ``close()`` at the end."""

    def __init__(self, total: int, desc: str, enabled=None, initial: int = 0, unit: str = "step"):
        tqdm = tqdm_or_none(enabled)
        self._bar = None if tqdm is None else tqdm(total=total, initial=initial, desc=desc, unit=unit,
                                                   leave=False, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
