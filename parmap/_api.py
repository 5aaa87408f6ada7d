"""``pmap``: the one entry point; the driver's batches become the caller's list or iterator.

Its options are checked, and its adapter picked, by ``_plan.py`` (shared with ``amap``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import closing
from typing import Any, Literal, TypeVar, overload

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # importing typing_extensions costs ~8 ms
    from typing_extensions import Unpack

from parmap._plan import Mode, OnError, Options, prepare
from parmap._progress import progress_bar
from parmap._retry import RetryOn

__all__ = ["pmap"]

R = TypeVar("R")
T = TypeVar("T")


# Overloads so that results keep fn's type: one item (T -> R) or a tuple of arguments
# (star=True), crossed with results as a list or an iterator, bare or with their input index;
# first for a coroutine function (mode="async": its results are what it returns, awaited).
@overload
def pmap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[False] = ...,
    lazy: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[False] = ...,
    lazy: Literal[True],
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[R]: ...
@overload
def pmap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[True],
    lazy: Literal[False] = ...,
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> list[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[True],
    lazy: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[False] = ...,
    lazy: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[False] = ...,
    lazy: Literal[True],
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[R]: ...
@overload
def pmap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[True],
    lazy: Literal[False] = ...,
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> list[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[True],
    lazy: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[[T], R],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[False] = ...,
    lazy: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[[T], R],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[False] = ...,
    lazy: Literal[True],
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[R]: ...
@overload
def pmap(
    fn: Callable[[T], R],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[True],
    lazy: Literal[False] = ...,
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> list[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[[T], R],
    items: Iterable[T],
    /,
    *,
    star: Literal[False] = ...,
    indexed: Literal[True],
    lazy: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[False] = ...,
    lazy: Literal[False] = ...,
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[False] = ...,
    lazy: Literal[True],
    callback: Callable[[R], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[R]: ...
@overload
def pmap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[True],
    lazy: Literal[False] = ...,
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> list[tuple[int, R]]: ...
@overload
def pmap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    /,
    *,
    star: Literal[True],
    indexed: Literal[True],
    lazy: Literal[True],
    callback: Callable[[tuple[int, R]], object] | None = ...,
    **options: Unpack[Options],
) -> Iterator[tuple[int, R]]: ...
def pmap(
    fn: Callable[..., Any],
    items: Iterable[Any],
    /,
    *,
    mode: Mode = "process",
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
    lazy: bool = False,
) -> list[Any] | Iterator[Any]:
    """Apply ``fn`` to every item of ``items`` in parallel; like ``list(map(fn, items))``.

    Args:
        fn: any callable: a function, lambda, closure, bound method or ``functools.partial``.
            In process mode it is pickled once per call (cloudpickle), not once per item.
        items: any iterable, including generators and unbounded iterators; it is read only as
            far as the chunks in flight need.
        mode: ``"process"`` (default; CPU-bound work), ``"thread"`` (I/O-bound work),
            ``"serial"`` (the caller's thread: debugging, tiny inputs), ``"async"`` (``fn`` is
            a coroutine function, ``async def``: many items awaited at once on an event loop
            of its own; from async code use :func:`parmap.amap`), ``"auto"`` (runs the
            first items in the caller for a few ms, then picks one of those three from their
            cost and CPU share; with ``initializer``, ``lock``, ``timeout`` or
            ``max_tasks_per_worker`` it is ``"process"``), an :class:`Adapter`
            (reused across calls while its ``with`` block is open), or any
            ``concurrent.futures.Executor`` you own (borrowed: never shut down by pmap).
        workers: how many workers; default: the CPUs this process may use (process mode) or
            CPUs + 4, at most 32 (thread mode). ``PARMAP_WORKERS`` overrides the default.
            In async mode: how many items may be in flight at once (default 100).
        ordered: True: results in input order. False: in completion order.
        callback: called with each result in the caller's thread, in delivery order, never
            concurrently with itself; an exception in it stops the map and propagates.
        chunksize: items per chunk; default: automatic (measured, see the docs).
        star: True: each item is a tuple of arguments, ``fn(*item)``.
        initializer: called as ``initializer(*initargs)`` once in each worker, before the
            first item that worker runs.
        initargs: arguments for ``initializer``.
        lock: True: every worker shares one lock, which ``fn`` (and the initializer) get with
            ``parmap.lock()`` — a process lock in process mode, a thread lock in thread mode.
            Or your own lock: a ``multiprocessing`` lock of the workers' start method (for a
            reusable pool, give it to the pool), a ``Manager().Lock()``, or any lock object
            for threads.
        on_error: ``"raise"``: the first failing item in delivery order (input order with
            ``ordered=True``, completion order without) stops the map, and
            its exception propagates after the results before it. ``"return"``: a failed
            item's exception object stands in its place and the map goes on.
        timeout: seconds one item may run. An item that runs longer fails with
            :class:`ItemTimeoutError` (a ``TimeoutError``) and the map goes on under
            ``on_error``: in process mode its worker is killed and replaced; in thread mode a
            fresh thread takes over and the stuck one finishes ``fn`` in the background. Serial
            mode and borrowed executors cannot interrupt ``fn`` and refuse a timeout.
        progress: True: a tqdm progress bar on stderr, counting items (the total is known when
            ``items`` has a length); or a dict of tqdm options; or your own tqdm bar. Needs the
            ``progress`` extra (``pip install 'parmap[progress]'``).
        max_tasks_per_worker: replace a worker after it has run this many items (for ``fn``
            that leaks memory or state); process and thread modes. Automatic chunks are capped
            at this size, and no worker ever runs more than this many items.
        retries: try a failed item again, up to this many more times (default 0). A retry
            waits ``retry_delay`` seconds (doubling with each try, jittered, at most 60 s)
            without holding a worker; a dead or stuck item's retry runs on a fresh worker.
            ``fn`` reads which try it runs with ``parmap.attempt()``. A retried item may have
            run partly before (at least once, not exactly once). The final failure's notes
            list what each try raised.
        retry_on: which failures are tried again: an exception type, a tuple of them, or a
            function of the exception returning whether to. Default: exceptions raised by
            ``fn``, :class:`WorkerDiedError` and :class:`ItemTimeoutError`; never
            :class:`SerializationError` or :class:`InitializerError`. ``KeyboardInterrupt``
            and ``SystemExit`` never are, whatever it says.
        retry_delay: seconds before the first retry of an item (default 0.1).
        journal: a file (SQLite) where results are recorded as they come. Run the same map
            again with the same journal, and the items it recorded as done are not run again:
            their recorded results come back in their place. Failures are recorded too, and
            run again. A journal made by another map, or used by a running one, is refused
            (:class:`JournalError`). Read one with :class:`parmap.Journal`.
        key: with ``journal``, how an item is matched with its record: ``key(item)`` (a
            string, number or tuple of them, unique per item), for an input that may change
            between runs (a directory walk); default: the item's input index.
        indexed: True: each result comes as ``(input_index, result)``.
        lazy: False: return a list. True: return an iterator that yields results as they
            arrive and reads ``items`` lazily (bounded memory for unbounded input); its
            workers start on the first ``next()`` and stop when it is exhausted, closed or
            garbage-collected.

    Returns:
        A list of results, or an iterator of them with ``lazy=True``.

    Raises:
        ValueError: an option is invalid (raised before any worker starts).
        Exception: with ``on_error="raise"``, the first exception raised by ``fn``, with its
            own type and a note naming the item; from another process, its traceback there is
            attached as ``__cause__``.
        WorkerDiedError: a worker process died while it ran an item (that item is named).
        SerializationError: an item, a result or an exception could not cross to or from a
            worker process (that item is named).
        InitializerError: the initializer raised, or ``fn`` could not be loaded in a worker;
            this ends the map whatever ``on_error`` says.
    """
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
        # An eager call without a callback runs no code of the caller's until it returns:
        # nothing can change a list input meanwhile, so forked workers may read it from their copy.
        fixed_input=not lazy and callback is None,
        eager=not lazy,
    )
    if lazy:
        return _stream(batches, callback, indexed=indexed, progress=progress, total=total)
    out: list[Any] = []
    with closing(batches), progress_bar(progress, total) as advance:
        for start, values in batches:
            delivered: list[Any] = list(enumerate(values, start)) if indexed else values
            if callback is not None:
                for value in delivered:
                    callback(value)
            out.extend(delivered)
            if advance is not None:
                advance(len(values))
    return out


def _stream(
    batches: Generator[tuple[int, list[Any]], None, None],
    callback: Callable[[Any], object] | None,
    *,
    indexed: bool,
    progress: object,
    total: int | None,
) -> Generator[Any, None, None]:
    """Flatten the driver's batches into results; runs in the consumer's thread."""
    with closing(batches), progress_bar(progress, total) as advance:
        for start, values in batches:
            if advance is not None:
                advance(len(values))
            delivered = enumerate(values, start) if indexed else values
            if callback is None:
                yield from delivered  # the common case, without a Python-level step per item
                continue
            for value in delivered:
                callback(value)
                yield value
