"""How long the project's own code ran inside asset bodies, apart from Dagster around it.

``asset`` is ``dg.asset`` with the decorated function timed: a plain function from call to return,
a generator only while it runs (not while Dagster handles what it yielded).  Asset checks are not
timed: the benchmark counts them with orchestration.  ``bench/seed_scale.py`` reads the total of
a process to tell the project's compute from Dagster's share of the wall time.
"""

from __future__ import annotations

import functools
import inspect
import time

import dagster as dg

_seconds = 0.0


def compute_seconds() -> float:
    """Seconds spent in timed asset bodies in this process so far."""
    return _seconds


def _add(seconds: float) -> None:
    global _seconds
    _seconds += seconds


def timed(fn):
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            it = fn(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration as stop:
                    _add(time.perf_counter() - started)
                    return stop.value
                _add(time.perf_counter() - started)
                yield item
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(time.perf_counter() - started)
    return plain


def asset(**kwargs):
    """``@dg.asset(**kwargs)`` over the timed function."""
    return lambda fn: dg.asset(**kwargs)(timed(fn))


def multi_asset(**kwargs):
    """``@dg.multi_asset(**kwargs)`` over the timed function."""
    return lambda fn: dg.multi_asset(**kwargs)(timed(fn))
