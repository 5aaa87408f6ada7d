"""The main loop of the worker processes that :class:`parmap.ProcessAdapter` starts.

Reads chunks from its pipe, runs them with ``run_chunk`` (``_worker.py``), sends the results
back, until told to stop or until its caller is gone. The frames are described in ``_wire.py``.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from parmap._chunk import inherited_chunk, rebuild_chunk
from parmap._cpython import exit_hooks
from parmap._errors import InitializerError, SerializationError
from parmap._job import restore_job
from parmap._result import ChunkResult, describe_exception, format_exception
from parmap._threadcaps import apply_in_worker
from parmap._wire import LINGER, READY, STOP, Header, Marks
from parmap._worker import enter_worker_process, run_chunk

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["process_worker"]


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

    The frames are described in ``_wire.py``; ``shared`` is the caller's input as it was when
    this worker was forked (None unless it was).
    ``progress`` is shared memory where the worker, in its ``slot``, writes its ``Marks``.
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
    enter_worker_process(shared_lock)
    # Ctrl-C goes to the caller, which ends the workers; a worker must not die half-way on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    marks = Marks.in_buffer(progress, slot) if progress is not None else None
    _exit_with_caller(conn)
    conn.send_bytes(READY)
    _serve(conn, marks, shared)
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


def _serve(conn: Connection, marks: Marks | None, shared: Sequence[Any] | None) -> None:
    """Run chunks as they come until told to stop, or until the caller is gone."""
    while True:
        try:
            frame = conn.recv_bytes()
            if frame == STOP:
                return
            header = Header.decode(frame)
            job_bytes = conn.recv_bytes() if header.has_job else None
            payload = conn.recv_bytes() if header.shared < 0 else (shared, header.shared)
        except (EOFError, OSError):  # the caller is gone: nothing left to do
            return
        if marks is not None:
            marks.begin(header.chunk_id)
        result = _run(header, job_bytes, payload, marks=marks)
        conn.send_bytes(result.encode(header.chunk_id))  # one pickle: what it can, naming what it cannot
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
    hooks = exit_hooks()
    if hooks is None:  # (private names: without them, the normal exit)
        return
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    finalize, run_exit_handlers = hooks
    finalize()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(0)


def _run(
    header: Header, job_bytes: bytes | None, payload: bytes | tuple[Any, int], *, marks: Marks | None
) -> ChunkResult:
    start = header.start
    try:
        job = restore_job(header.token, job_bytes)
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
    chunk.budget = header.budget
    chunk.attempt = header.attempt
    return run_chunk(job, chunk, progress=None if marks is None else marks.cells, slot=Marks.POSITION)
