"""One map's plan: every option checked, the adapter picked, the driver's generator made.

Shared by ``pmap`` (``_api.py``) and ``amap`` (``_amap.py``): what they differ in is only how
the driver's batches reach the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from parmap._adapters import Adapter, ExecutorAdapter
from parmap._coroutines import check_coroutine, is_coroutine_function
from parmap._driver import Use, drive, input_length
from parmap._job import Job
from parmap._launch import default_start_method
from parmap._map import Stop
from parmap._options import check_journal, check_options, short
from parmap._registry import find_mode, known_modes, recycling_modes
from parmap._retry import RetryOn, check_retries
from parmap._worker import in_worker_process

if TYPE_CHECKING:
    import asyncio

__all__ = ["Mode", "OnError", "Options", "prepare"]

Mode = str | Adapter | Executor
OnError = Literal["raise", "return"]


def _adapter_for(
    mode: Mode,
    workers: int | None,
    max_tasks: int | None,
    *,
    items: Iterable[Any] = (),
    pool_only: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
) -> tuple[Adapter, Use]:
    """The adapter for ``mode`` and how this call uses it (see :data:`parmap._driver.Use`).

    ``pool_only``: the call has options that only a pool's workers honour (an initializer, a
    lock, a timeout), so a mode that may run items in the caller gives way to its ``pool_mode``.
    """
    entry = find_mode(mode) if isinstance(mode, str) else None
    if entry is not None and entry.pool_mode is not None and (pool_only or max_tasks is not None):
        entry = find_mode(entry.pool_mode)
    if max_tasks is not None and not (entry is not None and entry.recycles_workers):
        needs = " or ".join(f"mode={name!r}" for name in recycling_modes())
        msg = (
            f"max_tasks_per_worker={max_tasks!r} needs {needs} "
            f"(for a reusable pool, give it to the pool), got mode={mode!r}"
        )
        raise ValueError(msg)
    if isinstance(mode, Adapter):
        if workers is not None:
            msg = f"workers={workers!r} cannot be combined with an adapter instance: give it to the adapter"
            raise ValueError(msg)
        return mode, "claim"
    if isinstance(mode, Executor):
        return ExecutorAdapter(mode, workers), "borrow"
    if entry is None:
        msg = (
            f"mode must be one of {', '.join(map(repr, known_modes()))}, an Adapter or a "
            f"concurrent.futures.Executor, got {mode!r}"
        )
        raise ValueError(msg)
    if loop is not None and entry.runs_coroutines:
        from parmap._async import AsyncAdapter  # noqa: PLC0415 - asyncio only for the maps that need it

        return AsyncAdapter(workers, loop=loop), "own"
    return entry.make(workers, max_tasks, items), "own"


class Options(TypedDict, total=False):
    """The keyword options whose types do not depend on ``fn`` (see :func:`pmap`)."""

    mode: Mode
    workers: int | None
    ordered: bool
    chunksize: int | None
    initializer: Callable[..., object] | None
    initargs: tuple[Any, ...]
    lock: object
    on_error: OnError
    timeout: float | None
    progress: object
    max_tasks_per_worker: int | None
    retries: int
    retry_on: RetryOn
    retry_delay: float
    journal: str | os.PathLike[str] | None
    key: Callable[[Any], object] | None


def prepare(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *,
    mode: Mode,
    workers: int | None,
    ordered: bool,
    callback: Callable[[Any], object] | None,
    chunksize: int | None,
    star: bool,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    lock: object,
    on_error: OnError,
    timeout: float | None,
    progress: object,
    max_tasks_per_worker: int | None,
    retries: int,
    retry_on: RetryOn,
    retry_delay: float,
    journal: str | os.PathLike[str] | None,
    key: Callable[[Any], object] | None,
    fixed_input: bool,
    eager: bool,
    loop: asyncio.AbstractEventLoop | None = None,
    stop: Stop | None = None,
) -> tuple[Generator[tuple[int, list[Any]], None, None], int | None]:
    """The driver's generator of ``(start, values)`` batches for a map, and the input's length.

    Every option is checked here (bad input is refused before anything starts), and the
    adapter picked. Shared by :func:`pmap` and :func:`parmap.amap`. ``loop``: the caller's
    running loop, on which ``mode="async"`` runs the items (amap); ``stop``: ends the map
    from another thread.
    """
    timeout, initargs = check_options(
        fn=fn,
        callback=callback,
        initializer=initializer,
        initargs=initargs,
        workers=workers,
        chunksize=chunksize,
        max_tasks_per_worker=max_tasks_per_worker,
        progress=progress,
        on_error=on_error,
        timeout=timeout,
        lock=lock,
    )
    retry = check_retries(retries, retry_on, retry_delay)
    check_journal(journal, key)
    builtin = find_mode(mode, declared=False) if isinstance(mode, str) else None
    if builtin is not None and builtin.starts_processes and not in_worker_process():
        default_start_method()  # a bad PARMAP_START_METHOD: refused before any item runs
    pool_only = initializer is not None or lock not in (None, False) or timeout is not None
    try:
        source = iter(items)  # now: input that cannot be read starts no worker
    except TypeError as exc:
        msg = f"items must be iterable, got {short(items)} ({type(items).__name__}): {exc}"
        raise TypeError(msg) from exc
    if mode == "auto" and is_coroutine_function(fn):
        mode = "async"  # the one mode that can await fn
    adapter, use = _adapter_for(
        mode, workers, max_tasks_per_worker, items=items, pool_only=pool_only, loop=loop
    )
    check_coroutine(fn, runs_coroutines=adapter.runs_coroutines, mode=mode)
    if timeout is not None and not adapter.supports_timeout:
        msg = (
            f"timeout={timeout!r} cannot be enforced by {type(adapter).__name__}, which cannot interrupt fn: "
            "use mode='thread' or mode='process'"
        )
        raise ValueError(msg)
    shared_lock = None if lock is False or lock is None else adapter.share_lock(lock)
    keep_going = on_error == "return"
    job = Job(
        fn,
        star=star,
        initializer=initializer,
        initargs=tuple(initargs),
        keep_going=keep_going,
        timeout=timeout,
        lock=shared_lock,
    )
    batches = drive(
        adapter,
        job,
        items,
        chunksize=chunksize,
        ordered=ordered,
        use=use,
        source=source,
        fixed_input=fixed_input,
        eager=eager,
        retries=retry,
        journal=journal,
        key=key,
        stop=stop,
    )
    return batches, input_length(items)
