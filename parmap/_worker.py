"""Code that runs inside workers: a chunk runner for every mode, and the process worker loop.

``run_chunk`` runs in a worker thread, a worker process, an executor's worker or (serial mode)
the caller's thread. ``process_worker`` is the main function of the processes that
:class:`parmap.ProcessAdapter` owns; its wire protocol is described in ``_process.py``.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import itertools
import multiprocessing.util
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any

from parmap._errors import InitializerError, LockUnavailableError, SerializationError
from parmap._serialize import loads
from parmap._task import (
    Chunk,
    ChunkResult,
    Job,
    describe_exception,
    format_exception,
    inherited_chunk,
    rebuild_chunk,
    restore_job,
)
from parmap._threadcaps import apply_in_worker

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = [
    "INHERITED_LOCK",
    "LINGER",
    "READY",
    "STOP",
    "in_worker_process",
    "lock",
    "process_worker",
    "run_chunk",
]

READY = b"ready"
STOP = b"stop"
#: A stopping worker's last frame when threads that fn started keep it from exiting: their names.
LINGER = b"linger:"
#: ``Job.lock`` value meaning "the lock this worker process received when it was started".
INHERITED_LOCK = "parmap:inherited-lock"

# Cheap items run in blocks with one progress mark each (see _run_items): a block that took less
# than this doubles, up to _MAX_BLOCK items.
_BLOCK_SECONDS = 0.001
_MAX_BLOCK = 1024

_local = threading.local()
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
    current = getattr(_local, "lock", None)
    if current is None:
        msg = (
            "parmap.lock() is only available inside fn (or the initializer) of a pmap(..., lock=True) call; "
            "pass lock=True (or your own lock) to pmap"
        )
        raise LockUnavailableError(msg)
    return current


def in_worker_process() -> bool:
    """True inside a process started by parmap's process adapter."""
    return _in_worker_process


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
            the items have run: the count of items run, and 0.
        slot: this worker's index in ``progress``.

    Returns:
        One value per item run, in order (an item's exception in its place, its position in
        ``failed``); ``error`` set instead when the chunk could not run at all.
    """
    previous = getattr(_local, "lock", None)  # a nested serial map restores its caller's lock
    shared = job.lock
    _local.lock = _inherited_lock if isinstance(shared, str) and shared == INHERITED_LOCK else shared
    try:
        return _run_items(job, chunk, in_caller=in_caller, progress=progress, slot=slot)
    finally:
        _local.lock = previous


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


def _exit_with_caller(conn: Connection) -> None:
    """End this worker as soon as its caller is gone, even while ``fn`` runs (POSIX).

    The worker's pipe is a socket pair: when the caller dies, its end closes and the socket
    reads as end-of-file. A daemon thread waits for the socket to become readable and peeks;
    data there is for the main thread (which reads it at once), end-of-file means exit.
    """
    if sys.platform == "win32":  # a named pipe, not a socket: the worker ends at its next read
        return
    sock = socket.socket(fileno=os.dup(conn.fileno()))

    def watch() -> None:
        while True:
            select.select([sock], [], [])
            try:
                alive = sock.recv(1, socket.MSG_PEEK) != b""
            except OSError:
                alive = False
            if not alive:
                os._exit(1)
            time.sleep(0.05)  # a frame waits for the main thread: give it time to take it

    # Not threading.Thread: its start() waits until the new thread runs, which on a busy CPU
    # can take milliseconds, and the first chunk waits for this worker meanwhile.
    _thread.start_new_thread(watch, ())


def process_worker(
    conn: Connection,
    progress: Any = None,
    slot: int = 0,
    shared_lock: Any = None,
    *,
    inherited: tuple[Connection | None, ...] = (),
    thread_caps: Mapping[str, str | None] | None = None,
    shared: Sequence[Any] | None = None,
    spawned: bool = False,
) -> None:
    """Main loop of a worker process: read a chunk, run it, send its result, until told to stop.

    Each chunk arrives as 1 to 3 frames: a header ``(chunk_id, start, token, has_job, size,
    budget)``, the job payload (only the first time this worker sees the token), and the pickled items,
    unless ``size`` is not negative: then the chunk is the ``size`` items at ``start`` of
    ``shared``, the caller's input as it was when this worker was forked.
    ``progress`` is shared memory where the worker records ``chunk_id`` at ``3 * slot``, and
    the position and count of the items it runs at ``3 * slot + 1`` and ``3 * slot + 2``.
    ``shared_lock`` is the pool's lock, which a process lock can only reach by being handed
    over when the process starts.
    ``inherited``: the caller's connections a forked worker got a copy of, closed here.
    ``thread_caps``: the environment that caps numerical libraries' thread pools.
    ``spawned``: a fresh interpreter (the spawn start method), which ends without its teardown
    (see ``_end_without_teardown``).
    """
    apply_in_worker(thread_caps or {})
    for other in inherited:
        if other is not None:
            other.close()
    global _in_worker_process, _inherited_lock  # noqa: PLW0603 - set once, when the process starts
    _in_worker_process = True
    _inherited_lock = shared_lock
    # Ctrl-C goes to the caller, which ends the workers; a worker must not die half-way on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    marks = memoryview(progress).cast("B").cast("q") if progress is not None else None
    _exit_with_caller(conn)
    conn.send_bytes(READY)
    _serve(conn, marks, slot, shared)
    _say_what_lingers(conn)
    if spawned:
        _end_without_teardown()


def _say_what_lingers(conn: Connection) -> None:
    """Tell the caller which threads of fn's keep this worker from exiting (the exit waits for them).

    The caller kills a worker that has not exited a grace period after it was told to stop;
    this is what its warning then names.
    """
    lingering = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    if lingering:
        with contextlib.suppress(OSError, ValueError):  # the caller is gone: nobody to tell
            conn.send_bytes(LINGER + f"fn left non-daemon threads running: {', '.join(lingering)}".encode())


def _serve(conn: Connection, marks: Any, slot: int, shared: Sequence[Any] | None) -> None:
    """Run chunks as they come until told to stop, or until the caller is gone."""
    while True:
        try:
            header = conn.recv_bytes()
            if header == STOP:
                return
            chunk_id, start, token, has_job, size, budget = loads(header)
            job_bytes = conn.recv_bytes() if has_job else None
            payload = conn.recv_bytes() if size < 0 else (shared, size)
        except (EOFError, OSError):  # the caller is gone: nothing left to do
            return
        if marks is not None:
            marks[3 * slot], marks[3 * slot + 1] = chunk_id, -1
        result = _run(token, job_bytes, start, payload, budget, marks=marks, slot=slot)
        conn.send_bytes(result.encode(chunk_id))  # one pickle: what it can, naming what it cannot
        # Free the chunk now, not when the next one replaces it: the next reuses its memory
        # (each fresh page costs a fault), and a worker told to stop exits without it.
        del result, payload, job_bytes


def _end_without_teardown() -> None:
    """End a spawned worker as forked and fork-server workers end: exit handlers, then ``_exit``.

    A spawned interpreter's teardown after its last chunk (its modules and objects, and waking
    this worker's watch thread) took 15-30 ms here, and the caller waits for it. What the
    normal exit does that matters still happens: multiprocessing's finalizers (as after a
    process's target returns), ``atexit`` handlers (``logging`` flushes its handlers there),
    and the standard streams are flushed. Not when ``fn`` left a thread of its own running:
    the normal exit waits for those.
    """
    # (Private, in every Python this supports; without them, the normal exit.)
    finalize = getattr(multiprocessing.util, "_exit_function", None)  # what _bootstrap runs
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # what the interpreter's exit runs
    if finalize is None or run_exit_handlers is None:
        return
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    finalize()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(0)


def _run(
    token: str,
    job_bytes: bytes | None,
    start: int,
    payload: bytes | tuple[Any, int],
    budget: float,
    *,
    marks: Any,
    slot: int,
) -> ChunkResult:
    try:
        job = restore_job(token, job_bytes)
    except Exception as exc:  # noqa: BLE001
        msg = f"fn or the initializer could not be unpickled in the worker: {describe_exception(exc)}"
        return ChunkResult(error=InitializerError(msg), error_tb=format_exception(exc))
    if isinstance(payload, tuple):
        try:
            chunk = inherited_chunk(*payload[:1], start, payload[1])
        except SerializationError as exc:  # an item that could not have been sent here
            return ChunkResult(error=exc)
    else:
        chunk = rebuild_chunk(start, payload)
    chunk.budget = budget
    return run_chunk(job, chunk, progress=marks, slot=3 * slot + 1)
