"""What travels between the driver and the workers: a job (one per call), chunks and results.

A :class:`Job` is pickled at most once per call: its payload is computed on first use and
cached, and workers keep the rebuilt job by token, so ``fn`` is unpickled once per worker.
"""

from __future__ import annotations

import itertools
import os
import threading
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

    __slots__ = ("_payload", "fn", "initargs", "initializer", "star", "token")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        star: bool = False,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.fn = fn
        self.star = star
        self.initializer = initializer
        self.initargs = initargs
        self.token = f"{os.getpid()}-{id(self):x}-{next(_tokens)}"
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        """The pickled job, computed once (cloudpickle: lambdas and closures travel too)."""
        if self._payload is None:
            self._payload = dumps_by_value((self.fn, self.star, self.initializer, self.initargs))
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
    fn, star, initializer, initargs = loads(payload)
    job = Job(fn, star=star, initializer=initializer, initargs=initargs)
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

    ``values`` holds the results of the first items in order. When ``error`` is set, the item
    at position ``len(values)`` raised it and the rest of the chunk did not run.
    """

    values: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    error_tb: str | None = None  # worker-side traceback text, for errors that cross processes
    elapsed: float = 0.0  # seconds the worker spent on the chunk, for chunk sizing

    def __reduce__(self) -> tuple[Callable[[bytes], ChunkResult], tuple[bytes]]:
        return _rebuild_result, (dumps((self.values, self.error, self.error_tb, self.elapsed)),)


def _rebuild_result(data: bytes) -> ChunkResult:
    return ChunkResult(*loads(data))
