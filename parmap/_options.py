"""The checks of ``pmap``'s options: each bad value refused before anything starts, named and shown."""

from __future__ import annotations

import math
import os
from typing import Any

from parmap._coroutines import is_coroutine_function
from parmap._progress import check_progress

__all__ = ["ON_ERROR", "check_journal", "check_options", "short"]

ON_ERROR = ("raise", "return")


def check_options(
    *,
    fn: object,
    callback: object,
    initializer: object,
    initargs: Any,
    workers: object,
    chunksize: object,
    max_tasks_per_worker: object,
    progress: object,
    on_error: object,
    timeout: object,
    lock: object,
) -> tuple[float | None, tuple[Any, ...]]:
    """Refuse a bad option with an error that names it; ``timeout`` and ``initargs`` normalised."""
    _callable("fn", fn, optional=False)
    _callable("callback", callback)
    if callback is not None and is_coroutine_function(callback):
        msg = (
            f"callback {getattr(callback, '__qualname__', callback)!r} is a coroutine function: a callback "
            "is called, not awaited, so it would never run; make it a plain function (it may start a task)"
        )
        raise TypeError(msg)
    _callable("initializer", initializer)
    _positive("workers", workers)
    _positive("chunksize", chunksize)
    _positive("max_tasks_per_worker", max_tasks_per_worker)
    check_progress(progress)
    if on_error not in ON_ERROR:
        msg = f"on_error must be one of {', '.join(map(repr, ON_ERROR))}, got {on_error!r}"
        raise ValueError(msg)
    seconds = _timeout(timeout)
    args = _initargs(initargs)
    _check_lock(lock)
    return seconds, args


def _positive(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        msg = f"{name} must be a positive integer or None, got {value!r}"
        raise ValueError(msg)


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _callable(name: str, value: object, *, optional: bool = True) -> None:
    if not callable(value) and not (optional and value is None):
        msg = f"{name} must be callable{' or None' if optional else ''}, got {value!r}"
        raise TypeError(msg)


def _initargs(value: Any) -> tuple[Any, ...]:
    """``initargs`` as a tuple; a TypeError naming it if it is no sequence of arguments.

    A string is refused too: ``initargs="db"`` would call ``initializer("d", "b")``.
    """
    if isinstance(value, tuple):
        return value
    why = "a string is not a sequence of arguments"
    if not isinstance(value, str | bytes | bytearray):
        try:
            args = iter(value)
        except TypeError as exc:
            why = str(exc)
        else:
            return tuple(args)
    msg = (
        f"initargs must be a tuple (or list) of arguments for the initializer, got {short(value)} "
        f"({type(value).__name__}): {why}; for one argument write initargs=(value,)"
    )
    raise TypeError(msg)


def _check_lock(lock: object) -> None:
    """``lock``: True, False, None or a lock object (``with parmap.lock():`` must work)."""
    if lock is True or lock is False or lock is None:
        return
    kind = type(lock)
    sync = hasattr(kind, "__enter__") and hasattr(kind, "__exit__")
    if not sync and not (hasattr(kind, "__aenter__") and hasattr(kind, "__aexit__")):  # (asyncio.Lock)
        msg = (
            f"lock must be True, False, None or a lock object (usable in a with or async with statement), "
            f"got {short(lock)} ({kind.__name__})"
        )
        raise TypeError(msg)


def _timeout(timeout: object) -> float | None:
    """``timeout`` in float seconds: one too large for a float is no limit (``inf``), like ``inf``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:  # (NaN too)
        msg = f"timeout must be a positive number of seconds or None, got {short(timeout)}"
        raise ValueError(msg)
    try:
        return float(timeout)
    except OverflowError:  # an int past 1.8e308 seconds
        return math.inf


def check_journal(journal: object, key: object) -> None:
    """``journal``: a path or None; ``key``: callable, and only with a journal."""
    if journal is not None and not isinstance(journal, str | os.PathLike):
        msg = f"journal must be a file path (str or os.PathLike) or None, got {short(journal)}"
        raise TypeError(msg)
    if key is not None:
        _callable("key", key)
        if journal is None:
            msg = "key= matches items with their records in a journal: it needs journal=PATH"
            raise ValueError(msg)
