"""The job: ``fn`` and a call's options, shared by every chunk of one ``pmap`` call.

A :class:`Job` is pickled at most once per call: its payload is computed on first use and
cached, and workers keep the rebuilt job by token (:func:`restore_job`), so ``fn`` is
unpickled once per worker.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from parmap._serialize import dumps_by_value, dumps_code, loads

__all__ = ["Job", "restore_job"]

_tokens = itertools.count()
_CACHE_SIZE = 8  # a worker serves one call at a time, a reusable pool a few in a row


class Job:
    """``fn`` and how to call it, shared by every chunk of one ``pmap`` call.

    Args:
        fn: the function to apply.
        star: call ``fn(*item)`` instead of ``fn(item)``.
        initializer: run once in each worker (thread or process) before its first item.
        initargs: arguments of ``initializer``.
        keep_going: ``on_error="return"``: a failed item does not stop its chunk.
        timeout: seconds one item may run (enforced by adapters that can).
        lock: what ``parmap.lock()`` returns in ``fn`` (from :meth:`Adapter.share_lock`).
    """

    __slots__ = (
        "_payload",
        "fn",
        "initargs",
        "initializer",
        "keep_going",
        "lock",
        "star",
        "timeout",
        "token",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        star: bool = False,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        keep_going: bool = False,
        timeout: float | None = None,
        lock: object = None,
    ) -> None:
        self.fn = fn
        self.star = star
        self.initializer = initializer
        self.initargs = initargs
        self.keep_going = keep_going  # on_error="return": run every item of a chunk
        self.timeout = timeout  # seconds per item, enforced by adapters that can
        self.lock = lock  # what parmap.lock() returns in fn: from Adapter.share_lock
        self.token = f"{os.getpid()}-{id(self):x}-{next(_tokens)}"
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        """The pickled job, computed once (cloudpickle: lambdas and closures travel too)."""
        if self._payload is None:
            options = (self.star, self.keep_going, self.timeout, self.lock)
            job = (self.fn, self.initializer, self.initargs, options)
            plain = not self.initargs and (self.lock is None or isinstance(self.lock, str))
            self._payload = dumps_code(job, self.fn, self.initializer) if plain else dumps_by_value(job)
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
    fn, initializer, initargs, (star, keep_going, timeout, lock) = loads(payload)
    job = Job(fn, star=star, initializer=initializer, initargs=initargs)
    job.keep_going, job.timeout, job.lock = keep_going, timeout, lock
    job.token = token
    job._payload = payload  # noqa: SLF001 - re-pickling it (nested executors) stays free
    with _jobs_lock:
        _jobs[token] = job
        while len(_jobs) > _CACHE_SIZE:
            _jobs.popitem(last=False)
    return job
