"""What travels between the driver and the workers: a job (one per call), chunks and results.

A :class:`Job` is pickled at most once per call: its payload is computed on first use and
cached, and workers keep the rebuilt job by token, so ``fn`` is unpickled once per worker.
"""

from __future__ import annotations

import itertools
import os
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parmap._serialize import dumps, dumps_by_value, loads

__all__ = ["Chunk", "ChunkResult", "Job", "restore_job"]

_tokens = itertools.count()
_CACHE_SIZE = 8  # a worker serves one call at a time, a reusable pool a few in a row


class Job:
    """``fn`` and how to call it, shared by every chunk of one ``pmap`` call."""

    __slots__ = ("_payload", "fn", "initargs", "initializer", "keep_going", "star", "timeout", "token")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        star: bool = False,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        keep_going: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.star = star
        self.initializer = initializer
        self.initargs = initargs
        self.keep_going = keep_going  # on_error="return": run every item of a chunk
        self.timeout = timeout  # seconds per item, enforced by adapters that can
        self.token = f"{os.getpid()}-{id(self):x}-{next(_tokens)}"
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        """The pickled job, computed once (cloudpickle: lambdas and closures travel too)."""
        if self._payload is None:
            options = (self.star, self.keep_going, self.timeout)
            self._payload = dumps_by_value((self.fn, self.initializer, self.initargs, options))
        return self._payload

    def __reduce__(self) -> tuple[Callable[[str, bytes | None], Job], tuple[str, bytes]]:
        return restore_job, (self.token, self.payload())


_jobs: OrderedDict[str, Job] = OrderedDict()
_jobs_lock = threading.Lock()


def restore_job(token: str, payload: bytes | None) -> Job:
    """Rebuild a job in a worker, unpickling its payload only the first time a token is seen.

    ``payload`` may be None when the sender knows this worker has the job already.
    """
    with _jobs_lock:
        job = _jobs.get(token)
        if job is not None:
            _jobs.move_to_end(token)
            return job
    if payload is None:
        msg = f"job {token} is unknown in this worker (its fn failed to load earlier)"
        raise LookupError(msg)
    fn, initializer, initargs, (star, keep_going, timeout) = loads(payload)
    job = Job(
        fn, star=star, initializer=initializer, initargs=initargs, keep_going=keep_going, timeout=timeout
    )
    job.token = token
    job._payload = payload  # noqa: SLF001 - re-pickling it (nested executors) stays free
    with _jobs_lock:
        _jobs[token] = job
        while len(_jobs) > _CACHE_SIZE:
            _jobs.popitem(last=False)
    return job


@dataclass(slots=True)
class Chunk:
    """Consecutive items of the input; ``start`` is the input index of the first."""

    start: int
    items: list[Any]

    def __reduce__(self) -> tuple[Callable[[int, bytes], Chunk], tuple[int, bytes]]:
        # Any executor that pickles chunks gets parmap's pickling: cloudpickle where pickle fails.
        return _rebuild_chunk, (self.start, dumps(self.items))


def _rebuild_chunk(start: int, items: bytes) -> Chunk:
    return Chunk(start, loads(items))


@dataclass(slots=True)
class ChunkResult:
    """What a worker made of a chunk.

    ``values`` holds one entry per item run, in order. An item whose ``fn`` raised has its
    exception in its place, and its position in ``failed`` (with the worker's traceback text,
    kept for exceptions that cross a process boundary). Unless the job keeps going after
    failures, a chunk stops at its first failure, so ``values`` may be shorter than the chunk.
    ``error`` is set when the chunk as a whole failed (its items could not be unpickled, the
    initializer raised, ``fn`` could not be loaded); ``values`` is then empty.
    """

    values: list[Any] = field(default_factory=list)
    failed: dict[int, str | None] = field(default_factory=dict)
    elapsed: float = 0.0  # seconds the worker spent on the chunk, for chunk sizing
    error: BaseException | None = None
    error_tb: str | None = None

    def __reduce__(self) -> tuple[Callable[[bytes], ChunkResult], tuple[bytes]]:
        # Tracebacks do not pickle: keep their text for the caller (made here, only when needed).
        failed = {pos: tb or format_exception(self.values[pos]) for pos, tb in self.failed.items()}
        state = (self.values, failed, self.elapsed, self.error, self.error_tb)
        return _rebuild_result, (dumps(state),)


def format_exception(exc: BaseException) -> str:
    """The traceback text of ``exc``, as the caller will see it under a RemoteTraceback."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _rebuild_result(data: bytes) -> ChunkResult:
    return ChunkResult(*loads(data))
