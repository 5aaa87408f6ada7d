"""``mode="auto"``: run the first items in the caller, then pick serial, thread or process.

What it observes of the first items (run in the caller's thread for at least ``PROBE_SECONDS``
of wall time, or until the input ends) decides the rest::

    nothing left                               -> done (a 1-item map never starts a pool)
    per item < MIN_ITEM_SECONDS, or the rest
    is estimated under SERIAL_BELOW seconds    -> serial: a pool's start-up and the pickling
                                                  of every item would cost more than the work
    CPU time < IO_RATIO x wall time            -> thread: the items wait (I/O, sleep), and
                                                  threads wait in parallel without pickling
    otherwise                                  -> process: CPU-bound work on every core

An input without ``len()`` has no estimate of the rest: only the per-item cost decides. The
choice is logged (logger ``parmap``, level DEBUG) and kept in :attr:`AutoAdapter.chosen`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

from parmap._adapters import Adapter
from parmap._cpus import default_workers
from parmap._task import Chunk, ChunkResult, Job
from parmap._worker import run_chunk

__all__ = ["AutoAdapter"]

log = logging.getLogger("parmap")

PROBE_SECONDS = 0.002  # run items in the caller at least this long before choosing
MIN_ITEM_SECONDS = 5e-6  # below this, pickling an item and its result costs more than the item
SERIAL_BELOW = 0.03  # estimated seconds of work left under which no pool pays for itself
IO_RATIO = 0.5  # CPU seconds per wall second below which items mostly wait


def choose(per_item: float, cpu_ratio: float, remaining: int | None) -> str:
    """The mode for the rest of a map, from what the probe measured."""
    if remaining == 0:
        return "serial"
    if per_item < MIN_ITEM_SECONDS:
        return "serial"
    if remaining is not None and per_item * remaining < SERIAL_BELOW:
        return "serial"
    return "thread" if cpu_ratio < IO_RATIO else "process"


class AutoAdapter(Adapter):
    """Probes the first items in the caller's thread, then hands the rest to the mode it picks.

    Args:
        make: builds the adapter for a mode name ("serial", "thread" or "process").
        workers: the workers of the pool it picks (default: that pool's own default).
    """

    chunk_seconds = 0.02  # between a thread pool's 10 ms and a process pool's 50 ms

    def __init__(self, make: Callable[[str], Adapter], workers: int | None = None) -> None:
        self._make = make
        self._workers = workers
        self._inner: Adapter | None = None
        self._total: int | None = None
        self._expected = False
        self._items = 0
        self._wall = 0.0
        self._cpu = 0.0
        self._running = False
        self.chosen: str | None = None  #: the mode picked, once the probe is over

    @property
    def workers(self) -> int:
        """The most workers either pool would run: the driver keeps enough chunks in flight."""
        return self._workers or max(default_workers("process"), default_workers("thread"))

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._running

    def expect(self, chunks: int | None) -> None:
        """The input's length, when known (the first call wins: the driver's counts chunks)."""
        if not self._expected:
            self._total, self._expected = chunks, True

    def start(self) -> None:
        """Nothing starts until the probe has chosen."""
        self._running = True

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Run ``chunk`` in the caller while probing, else on the chosen adapter."""
        if self._inner is None and self._wall >= PROBE_SECONDS:
            self._choose()
        if self._inner is None or self.chosen == "serial":
            return self._run_here(job, chunk)
        return self._inner.submit(job, chunk)

    def _run_here(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        wall, cpu = time.perf_counter(), time.thread_time()
        result = run_chunk(job, chunk, in_caller=True)
        if self._inner is None:
            self._wall += time.perf_counter() - wall
            self._cpu += time.thread_time() - cpu
            self._items += len(chunk.items)
        future: Future[ChunkResult] = Future()
        future.set_result(result)
        return future

    def _choose(self) -> None:
        per_item = self._wall / max(1, self._items)
        remaining = None if self._total is None else max(0, self._total - self._items)
        self.chosen = choose(per_item, self._cpu / self._wall if self._wall else 1.0, remaining)
        log.debug(
            "parmap: mode='auto' chose %r after %d items (%.3g s each, %.0f%% CPU, %s left)",
            self.chosen,
            self._items,
            per_item,
            100 * self._cpu / self._wall if self._wall else 100,
            "?" if remaining is None else remaining,
        )
        inner = self._make(self.chosen)
        if self.chosen != "serial":
            inner.expect(remaining)
        inner.start()
        self._inner = inner

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Shut down the chosen pool, if one was started."""
        self._running = False
        if self._inner is not None:
            self._inner.shutdown(wait=wait, cancel=cancel)
