"""``amap``: ``pmap`` for async code, without blocking the event loop.

``async for result in amap(fn, items, mode=...)`` gives each result as it comes;
``await amap(fn, items, ...)`` the whole list. The options are ``pmap``'s; the map itself runs
off the loop (see ``_async_results.py``), and ``mode="async"`` runs coroutine functions on the
caller's own loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar, overload

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # importing typing_extensions costs ~8 ms
    from typing_extensions import Unpack

from parmap._async_results import AsyncMap
from parmap._coroutines import is_coroutine_function
from parmap._map import Stop
from parmap._plan import Mode, OnError, Options, prepare
from parmap._retry import RetryOn

__all__ = ["amap"]

R = TypeVar("R")
T = TypeVar("T")


# Results keep fn's type: an ``async def f(x: int) -> str`` gives str, as a plain ``f`` does;
# crossed with star= and indexed= as in pmap. (A coroutine function matches both of a pair's
# overloads; the first, which awaits it, wins.)
@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[R]: ...
@overload
def amap(
    fn: Callable[[T], R],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[R]: ...
@overload
def amap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[tuple[int, R]]: ...
@overload
def amap(
    fn: Callable[[T], R],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[tuple[int, R]]: ...
@overload
def amap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[R]: ...
@overload
def amap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[R]: ...
@overload
def amap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[tuple[int, R]]: ...
@overload
def amap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> AsyncMap[tuple[int, R]]: ...
def amap(
    fn: Callable[..., Any],
    items: Iterable[Any],
    /,
    *,
    mode: Mode | None = None,
    workers: int | None = None,
    ordered: bool = True,
    callback: Callable[[Any], object] | None = None,
    chunksize: int | None = None,
    star: bool = False,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
    lock: object = False,
    on_error: OnError = "raise",
    timeout: float | None = None,
    progress: object = False,
    max_tasks_per_worker: int | None = None,
    retries: int = 0,
    retry_on: RetryOn = None,
    retry_delay: float = 0.1,
    journal: str | os.PathLike[str] | None = None,
    key: Callable[[Any], object] | None = None,
    indexed: bool = False,
) -> AsyncMap[Any]:
    """``pmap`` for async code: ``await`` it for the list of results, or ``async for`` over it.

    Call it in a coroutine. The event loop is never blocked: the map runs in a thread of its
    own and its results reach the loop as they come. Every option means what it means for
    :func:`pmap`; the differences:

    Args:
        fn: a coroutine function (``async def``), run on this event loop by ``mode="async"``,
            or a plain function for the other modes.
        items: any iterable, read lazily as for ``pmap(lazy=True)``.
        mode: as for :func:`pmap`, and ``"async"``; default: ``"async"`` for a coroutine
            function, else ``"process"``.
        workers: with ``mode="async"``: how many items may be in flight at once (default 100).
        ordered: True: results in input order; False: as they finish.
        callback: called with each result on the event loop, as the result is delivered.
        chunksize: items per chunk; default: automatic.
        star: True: each item is a tuple of arguments, ``fn(*item)``.
        initializer: called once per worker before its first item (with ``mode="async"``:
            once per map, on the loop; a coroutine initializer is awaited).
        initargs: arguments for ``initializer``.
        lock: True: one lock shared by every item, ``parmap.lock()`` (with ``mode="async"``
            an ``asyncio.Lock``: ``async with parmap.lock():``), or your own.
        on_error: ``"raise"`` or ``"return"``, as for :func:`pmap`.
        timeout: seconds one item may run (with ``mode="async"``: the item's coroutine is
            cancelled, and the item fails with :class:`ItemTimeoutError`).
        progress: a tqdm bar, as for :func:`pmap`.
        max_tasks_per_worker: as for :func:`pmap` (process and thread modes).
        retries: tries more for a failed item, as for :func:`pmap`.
        retry_on: which failures are tried again.
        retry_delay: seconds before the first retry.
        journal: a file that records results; a map run again resumes from it.
        key: with ``journal``, how an item is matched with its record.
        indexed: True: each result comes as ``(input_index, result)``.

    Returns:
        An :class:`AsyncMap`: awaitable (the list of results) and an async iterator (each
        result as it comes; a slow consumer holds back the map, which then reads no more
        input). The map starts at the first ``await`` or ``async for`` step. Cancelling the
        task that consumes it (``task.cancel()``, ``asyncio.timeout``) stops the map: by the
        time the cancellation is raised, its worker processes are stopped, its coroutines
        cancelled and its own thread gone (thread workers, which cannot be stopped, end after
        the item they run). ``asyncio.create_task`` needs a coroutine: wrap the ``await``
        in an ``async def``, or use ``asyncio.ensure_future``.

    Raises:
        RuntimeError: called outside a running event loop (use :func:`pmap`).
        ValueError, TypeError: an option is invalid (raised at once, before anything starts);
            a coroutine function for a mode that cannot await it, or a plain one for
            ``mode="async"``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        msg = "amap() is for async code: call it in a coroutine (from sync code, use pmap)"
        raise RuntimeError(msg) from None
    if mode is None:
        mode = "async" if is_coroutine_function(fn) else "process"
    stop = Stop()
    batches, total = prepare(
        fn,
        items,
        mode=mode,
        workers=workers,
        ordered=ordered,
        callback=callback,
        chunksize=chunksize,
        star=star,
        initializer=initializer,
        initargs=initargs,
        lock=lock,
        on_error=on_error,
        timeout=timeout,
        progress=progress,
        max_tasks_per_worker=max_tasks_per_worker,
        retries=retries,
        retry_on=retry_on,
        retry_delay=retry_delay,
        journal=journal,
        key=key,
        fixed_input=False,  # other tasks run meanwhile, and may change the input
        eager=False,
        loop=loop,
        stop=stop,
    )
    return AsyncMap(batches, stop, loop, callback=callback, indexed=indexed, progress=progress, total=total)
