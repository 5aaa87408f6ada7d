"""Code that runs inside workers of every mode: the chunk runner and ``parmap.lock()``.

``run_chunk`` runs in a worker thread, a worker process (see ``_process_worker.py``), an
executor's worker or (serial mode) the caller's thread.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, MutableSequence
from typing import Any

from parmap._chunk import Chunk
from parmap._errors import InitializerError, LockUnavailableError, SerializationError
from parmap._job import Job
from parmap._result import ChunkResult, format_exception

__all__ = [
    "INHERITED_LOCK",
    "attempt",
    "enter_worker_process",
    "in_worker_process",
    "item_context",
    "lock",
    "run_chunk",
]

#: ``Job.lock`` value meaning "the lock this worker process received when it was started".
INHERITED_LOCK = "parmap:inherited-lock"

# Cheap items run in blocks with one progress mark each (see _run_items): a block that took less
# than this doubles, up to _MAX_BLOCK items.
_BLOCK_SECONDS = 0.001
_MAX_BLOCK = 1024

_local = threading.local()
# An item of mode="async" runs as a task on an event loop's thread, among many others: its
# lock and try number live in the task's context, not in the thread.
item_context: contextvars.ContextVar[tuple[Any, int]] = contextvars.ContextVar("parmap_item")
_in_worker_process = False
_inherited_lock: Any = None


def lock() -> Any:
    """The lock shared by every worker of the running ``pmap(..., lock=...)`` call.

    Call it inside ``fn`` (or the initializer); it runs in the worker. Use it as a context
    manager: ``with parmap.lock(): ...``. It is a process lock in process mode, a thread lock
    in thread mode, a re-entrant lock in serial mode, or the lock you passed as ``lock=``.

    Returns:
        The lock object (it has ``acquire``, ``release`` and works with ``with``).

    Raises:
        LockUnavailableError: no ``pmap(..., lock=...)`` call runs this code.
    """
    in_task = item_context.get(None)
    current = getattr(_local, "lock", None) if in_task is None else in_task[0]
    if current is None:
        msg = (
            "parmap.lock() is only available inside fn (or the initializer) of a pmap(..., lock=True) call; "
            "pass lock=True (or your own lock) to pmap"
        )
        raise LockUnavailableError(msg)
    return current


def attempt() -> int:
    """Which try of the current item this is, inside ``fn``: 1 on the first run, 2 on the first retry.

    Retries come with ``pmap(..., retries=N)``. Outside ``fn`` (or in a map without retries)
    it returns 1.
    """
    in_task = item_context.get(None)
    return int(getattr(_local, "attempt", 1) if in_task is None else in_task[1])


def in_worker_process() -> bool:
    """True inside a process started by parmap's process adapter."""
    return _in_worker_process


def enter_worker_process(shared_lock: Any) -> None:
    """This process is a worker of a process pool; ``shared_lock`` is the pool's lock (or None)."""
    global _in_worker_process, _inherited_lock  # noqa: PLW0603 - set once, when the process starts
    _in_worker_process = True
    _inherited_lock = shared_lock


def _ensure_initialized(job: Job) -> None:
    """Run the job's initializer once in this worker (thread) before its first item."""
    done: OrderedDict[str, None] | None = getattr(_local, "initialized", None)
    if done is None:
        done = _local.initialized = OrderedDict()
    if job.token in done:
        return
    if job.initializer is not None:
        job.initializer(*job.initargs)
    done[job.token] = None
    if len(done) > 64:  # only a bound on memory for long-lived executors
        done.popitem(last=False)


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _unready(job: Job, chunk: Chunk, *, in_caller: bool) -> ChunkResult | None:
    """The chunk's error if no item of it can run here, after running the initializer if due."""
    if chunk.broken is not None:
        return ChunkResult(error=SerializationError(chunk.broken))
    try:
        _ensure_initialized(job)
    except BaseException as exc:
        if isinstance(exc, GeneratorExit) or (in_caller and isinstance(exc, KeyboardInterrupt)):
            raise
        error = InitializerError(
            f"the initializer {_name(job.initializer)} raised {type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return ChunkResult(error=error, error_tb=format_exception(exc))
    return None


def run_chunk(
    job: Job,
    chunk: Chunk,
    *,
    in_caller: bool = False,
    progress: MutableSequence[int] | None = None,
    slot: int = 0,
) -> ChunkResult:
    """Apply ``job.fn`` to each item of ``chunk``; an exception takes its item's place.

    Args:
        job: the call's function and options.
        chunk: the items.
        in_caller: True in the caller's thread (serial mode), where a KeyboardInterrupt is the
            user's Ctrl-C and must propagate rather than count as the item's failure.
        progress: where to record which items run (``progress[slot]``: the position of the
            first, ``progress[slot + 1]``: how many; 1 for a slow item, and always with a
            timeout), so that the caller can name the item if the worker dies or hangs. Once
            the items have run: the count of items run, and 0. parmap's own workers pass the
            cells of their ``Marks`` (``_wire.py``).
        slot: the index of the position in ``progress``.

    Returns:
        One value per item run, in order (an item's exception in its place, its position in
        ``failed``); ``error`` set instead when the chunk could not run at all.
    """
    previous = getattr(_local, "lock", None), getattr(_local, "attempt", 1)  # (a nested serial map)
    shared = job.lock
    _local.lock = _inherited_lock if isinstance(shared, str) and shared == INHERITED_LOCK else shared
    _local.attempt = chunk.attempt
    try:
        return _run_items(job, chunk, in_caller=in_caller, progress=progress, slot=slot)
    finally:
        _local.lock, _local.attempt = previous


def _run_items(
    job: Job,
    chunk: Chunk,
    *,
    in_caller: bool,
    progress: MutableSequence[int] | None,
    slot: int,
) -> ChunkResult:
    started = time.perf_counter()
    unready = _unready(job, chunk, in_caller=in_caller)
    if unready is not None:
        return unready
    values: list[Any] = []
    failed: dict[int, str | None] = {}
    source = iter(chunk.items)
    calls = itertools.starmap(job.fn, source) if job.star else map(job.fn, source)
    if progress is None:  # the hot path: the loop runs in C (map), about 2x a Python for loop
        _call(calls, values, failed, None, keep_going=job.keep_going, in_caller=in_caller)
        return ChunkResult(values, failed, time.perf_counter() - started)
    # A mark per item would cost as much as a trivial item: items run in blocks through map,
    # one mark per block, doubling while a block takes under 1 ms. A slow item keeps a block
    # of its own; with a timeout (measured per item) every item does. Past the chunk's
    # budget, the items run so far are returned: the caller sends the rest again.
    block = 1
    deadline = time.perf_counter() + chunk.budget if chunk.budget > 0 else None  # after the initializer
    while True:
        first = len(values)
        progress[slot], progress[slot + 1] = first, block
        began = time.perf_counter()
        if not _call(calls, values, failed, block, keep_going=job.keep_going, in_caller=in_caller):
            break
        now = time.perf_counter()
        if deadline is not None and now >= deadline:
            break
        if not job.timeout and block < _MAX_BLOCK and now - began < _BLOCK_SECONDS:
            block *= 2
    # Count 0: every item that will run has run; its results are being handed over (pickled
    # and sent, in a process), which a timeout bounds too, but for no item in particular.
    progress[slot], progress[slot + 1] = len(values), 0
    return ChunkResult(values, failed, time.perf_counter() - started)


def _call(
    calls: Iterator[Any],
    values: list[Any],
    failed: dict[int, str | None],
    count: int | None,
    *,
    keep_going: bool,
    in_caller: bool,
) -> bool:
    """Run the next ``count`` calls (None: all) into ``values``; False once none are left to run.

    The position of an item is len(values) when it starts: values holds one entry per item run.
    """
    first = len(values)
    while True:
        try:
            # CPython's list.extend keeps what it appended before an exception, and the map
            # resumes after the failed item: so len(values) is that item's position.
            values.extend(calls if count is None else itertools.islice(calls, first + count - len(values)))
        except BaseException as exc:  # noqa: BLE001 - SystemExit is a result too
            _record(exc, values, failed, in_caller=in_caller)
            if not keep_going:
                return False
            if count is not None and len(values) - first >= count:
                return True
            continue
        return count is not None and len(values) - first == count


def _record(exc: BaseException, values: list[Any], failed: dict[int, str | None], *, in_caller: bool) -> None:
    """Put an item's exception in its place, or re-raise what must not be kept."""
    if isinstance(exc, GeneratorExit) or (in_caller and isinstance(exc, KeyboardInterrupt)):
        raise exc
    failed[len(values)] = None  # the traceback text is made only if the result is pickled
    values.append(exc)
