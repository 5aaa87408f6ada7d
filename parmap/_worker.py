"""Code that runs inside workers: a chunk runner for every mode, and the process worker loop.

``run_chunk`` runs in a worker thread, a worker process, an executor's worker or (serial mode)
the caller's thread. ``process_worker`` is the main function of the processes that
:class:`parmap.ProcessAdapter` owns; its wire protocol is described in ``_process.py``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from parmap._errors import SerializationError
from parmap._serialize import dumps, loads
from parmap._task import Chunk, ChunkResult, Job, restore_job

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["in_worker_process", "process_worker", "run_chunk"]

READY = b"ready"
STOP = b"stop"

_local = threading.local()
_in_worker_process = False


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


def run_chunk(job: Job, chunk: Chunk) -> ChunkResult:
    """Apply ``job.fn`` to each item of ``chunk``, stopping at the first exception."""
    started = time.perf_counter()
    values: list[Any] = []
    append = values.append
    fn = job.fn
    try:
        _ensure_initialized(job)
        if job.star:
            for item in chunk.items:
                append(fn(*item))
        else:
            for item in chunk.items:
                append(fn(item))
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from fn must reach the caller too
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return ChunkResult(values, exc, tb, time.perf_counter() - started)
    return ChunkResult(values, None, None, time.perf_counter() - started)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def encode_result(chunk_id: int, result: ChunkResult) -> bytes:
    """Pickle a chunk's result; what cannot be pickled becomes a SerializationError in its place."""
    with contextlib.suppress(Exception):  # on failure, find the culprit below and say which
        return dumps((chunk_id, result))
    if result.error is not None:
        try:
            dumps(result.error)
        except Exception as why:  # noqa: BLE001
            err = result.error
            msg = f"fn raised {type(err).__name__}({err}), which could not be pickled: {_why(why)}"
            result.error = SerializationError(msg)
    for pos, value in enumerate(result.values):
        try:
            dumps(value)
        except Exception as why:  # noqa: BLE001, PERF203 - only runs once something failed
            msg = f"the result of fn ({type(value).__name__}) could not be pickled: {_why(why)}"
            result.values = result.values[:pos]
            result.error, result.error_tb = SerializationError(msg), None
            break
    return dumps((chunk_id, result))


def process_worker(conn: Connection) -> None:
    """Main loop of a worker process: read a chunk, run it, send its result, until told to stop.

    Each chunk arrives as 2 or 3 frames: a header ``(chunk_id, start, token, has_job)``, the
    job payload (only the first time this worker sees the token), and the pickled items.
    """
    global _in_worker_process  # noqa: PLW0603 - one flag per process, set once at start
    _in_worker_process = True
    # Ctrl-C goes to the caller, which ends the workers; a worker must not die half-way on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send_bytes(READY)
    while True:
        try:
            header = conn.recv_bytes()
            if header == STOP:
                return
            chunk_id, start, token, has_job = loads(header)
            job_bytes = conn.recv_bytes() if has_job else None
            payload = conn.recv_bytes()
        except (EOFError, OSError):  # the caller is gone: nothing left to do
            return
        try:
            job = restore_job(token, job_bytes)
        except Exception as exc:  # noqa: BLE001
            msg = f"fn or the initializer could not be unpickled in the worker: {_why(exc)}"
            result = ChunkResult(error=SerializationError(msg))
        else:
            try:
                chunk = Chunk(start, loads(payload))
            except Exception as exc:  # noqa: BLE001
                msg = f"the items could not be unpickled in the worker: {_why(exc)}"
                result = ChunkResult(error=SerializationError(msg))
            else:
                result = run_chunk(job, chunk)
        conn.send_bytes(encode_result(chunk_id, result))
