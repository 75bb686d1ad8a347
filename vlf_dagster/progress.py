"""Progress of long work on the terminal: the command line opens a display, the work says how far it got.

The work (simulation, imports, materialization) calls :func:`start` and :func:`advance`, which cost
nothing unless a command opened :func:`shown`.  Bars are tqdm's, on stderr, and tqdm draws nothing
when stderr is not a terminal (``disable=None``): logs, pipes and tests stay clean.  One display
per process, shared by the threads of the work (a module global, not a context variable: worker
threads would not see one).
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_active: "_Display | None" = None


class _Display:
    def __init__(self, command: str):
        self.command = command
        self.bar = None

    def start(self, total: int, unit: str, what: str) -> None:
        from tqdm import tqdm  # only when a command shows progress

        self.close()
        self.bar = tqdm(total=total, unit=unit, desc=f"{self.command}: {what}", disable=None, leave=False,
                        file=sys.stderr, unit_scale=True, dynamic_ncols=True, mininterval=0.5)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def shown(command: str) -> Iterator[None]:
    """Show the progress of the work done inside, labelled with ``command``."""
    global _active
    with _lock:
        previous, _active = _active, _Display(command)
    try:
        yield
    finally:
        with _lock:
            _active.close()
            _active = previous


def start(total: int, unit: str, what: str) -> None:
    """A new stage of the work: ``total`` ``unit`` to go (a bar replaces the stage before)."""
    with _lock:
        if _active is not None:
            _active.start(int(total), unit, what)


def advance(n: int = 1) -> None:
    with _lock:
        if _active is not None:
            _active.advance(int(n))


def echo(line: str) -> None:
    """Print a line of the command's own output above the bar (a plain print would tear it)."""
    with _lock:
        bar = _active.bar if _active is not None else None
    if bar is not None and not bar.disable:
        bar.write(line, file=sys.stdout)
    else:
        print(line, flush=True)
