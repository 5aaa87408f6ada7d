"""Coroutine functions as ``fn``: which calls make coroutines, and which modes can await them.

Kept apart from ``_async.py`` (the mode itself), so that every ``pmap`` call can check ``fn``
without importing asyncio.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

__all__ = ["check_coroutine", "is_coroutine_function"]


def is_coroutine_function(fn: object) -> bool:
    """Whether calling ``fn`` makes a coroutine (``async def``, a partial of one, an async ``__call__``)."""
    if inspect.iscoroutinefunction(fn):  # (sees through functools.partial and methods)
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the method, not callable()
    return not inspect.isfunction(fn) and call is not None and inspect.iscoroutinefunction(call)


def check_coroutine(fn: Callable[..., object], *, runs_coroutines: bool, mode: object) -> None:
    """Refuse, before anything starts, a coroutine fn for a mode that cannot await it, and the reverse."""
    coroutine = is_coroutine_function(fn)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    if coroutine and not runs_coroutines:
        msg = (
            f"fn {name} is a coroutine function (async def), which mode={mode!r} cannot await: its calls "
            "would make coroutine objects that never run. Use mode='async' (from async code: "
            "parmap.amap), or a plain function"
        )
        raise TypeError(msg)
    if runs_coroutines and not coroutine:
        msg = (
            f"mode='async' runs coroutine functions (async def), and fn {name} is not one: use "
            "mode='thread' for blocking I/O, mode='process' for CPU work, or make fn an async def "
            "(a lambda around one is not: use functools.partial of the async def)"
        )
        raise TypeError(msg)
