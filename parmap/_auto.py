"""``mode="auto"``: run the first items in the caller, then pick serial, thread or process.

What it observes of the first items (run in the caller's thread for at least ``PROBE_SECONDS``
of wall time, or until the input ends) decides the rest::

    nothing left                               -> done (a 1-item map never starts a pool)
    per item < MIN_ITEM_SECONDS, or the rest
    is estimated under SERIAL_BELOW seconds    -> serial: a pool's start-up and the pickling
                                                  of every item would cost more than the work
    CPU time < IO_RATIO x wall time            -> thread: the items wait (I/O, sleep), and
                                                  threads wait in parallel without pickling
    the GIL is off (a free-threaded build)     -> thread: threads run Python code on every
                                                  core, with no pickling and no start-up
    the rest is estimated under FRESH_BELOW
    seconds, and workers would be fresh
    interpreters (spawn, or a fork server
    not started yet)                           -> serial: they take ~0.1 s to start
    otherwise                                  -> process: CPU-bound work on every core

A first chunk that mostly waited, briefly (``RECHECK_BELOW``), may have waited for a CPU of a
busy machine rather than on I/O: the next chunk is measured too, and the faster one counts.
An input without ``len()`` has no estimate of the rest: only the per-item cost decides. The
choice is logged (logger ``parmap``, level DEBUG) and kept in :attr:`AutoAdapter.chosen`.

A short input (at most ``SHORT`` items per CPU) could be a few heavy items, where running the
first one alone would cost a whole round. When the caller can fork cheaply (one thread, Linux),
a process pool starts at once: the first item runs in a probe thread of the caller while the
pool's workers take the next ones (at most one each); the rest wait for the choice, which the
probe thread makes and acts on as soon as its item is done (for process, it runs one more of
them itself while the workers take the others).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from parmap._adapters import Adapter, settle
from parmap._chunk import Chunk
from parmap._cpus import default_workers
from parmap._cpython import gil_enabled
from parmap._job import Job
from parmap._launch import can_fork_now, default_start_method, fork_server_used
from parmap._result import ChunkResult
from parmap._worker import run_chunk

__all__ = ["AutoAdapter"]

log = logging.getLogger("parmap")

PROBE_SECONDS = 0.002  # run items in the caller at least this long before choosing
MIN_ITEM_SECONDS = 5e-6  # below this, pickling an item and its result costs more than the item
SERIAL_BELOW = 0.03  # estimated seconds of work left under which no pool pays for itself
# ... and under which no process pool does when its workers are fresh interpreters, which take
# ~0.1 s to start (a spawned one imports the caller's main module): 2 workers must save that twice.
FRESH_BELOW = 0.2
IO_RATIO = 0.35  # CPU seconds per wall second below which items mostly wait
# A first chunk that mostly waited and took less than this may have waited for a CPU (a busy
# machine), not on I/O: one more chunk is measured, and the faster of the two counts.
RECHECK_BELOW = 0.01
SHORT = 4  # items per process worker up to which an input gets a head start


def choose(
    per_item: float, cpu_ratio: float, remaining: int | None, *, fresh: bool = False, gil: bool = True
) -> str:
    """The mode for the rest of a map, from what the probe measured.

    ``fresh``: a process pool's workers would start as fresh interpreters (see
    :func:`fresh_workers`). ``gil``: the interpreter runs with the GIL; without it (a
    free-threaded build) threads run CPU-bound Python code in parallel, so work that would go
    to processes goes to threads.
    """
    if remaining == 0:
        return "serial"
    if per_item < MIN_ITEM_SECONDS:
        return "serial"
    work = None if remaining is None else per_item * remaining
    if work is not None and work < SERIAL_BELOW:
        return "serial"
    if cpu_ratio < IO_RATIO or not gil:
        return "thread"
    if fresh and work is not None and work < FRESH_BELOW:
        return "serial"
    return "process"


def fresh_workers() -> bool:
    """Whether a process pool started now would wait ~0.1 s for each worker's interpreter.

    Not when its workers fork from this process, or from a fork server already running.
    """
    method = default_start_method()
    if method == "fork" or can_fork_now():
        return False
    if method == "forkserver":
        return not fork_server_used()  # (what parmap knows: it started the fork server)
    return True


class AutoAdapter(Adapter):
    """Probes the first items in the caller's thread, then hands the rest to the mode it picks.

    Args:
        make: builds the adapter for a mode name ("serial", "thread" or "process").
        workers: the workers of the pool it picks (default: that pool's own default).
    """

    chunk_seconds = 0.02  # between a thread pool's 10 ms and a process pool's 50 ms
    starts_processes = True
    pool_mode = "process"  # it may run items in the caller, which honours no pool-only option

    def __init__(self, make: Callable[[str], Adapter], workers: int | None = None) -> None:
        self._make = make
        self._workers = workers
        self._inner: Adapter | None = None
        self._total: int | None = None
        self._expected = False
        self._items = 0  # the items that _wall and _cpu measured
        self._wall = 0.0
        self._cpu = 0.0
        self._ran = 0  # the items run before the choice
        self._recheck: bool | None = None  # True: measure one more chunk (see RECHECK_BELOW)
        self._running = False
        self.chosen: str | None = None  #: the mode picked, once the probe is over
        # The head start of a short input: a process pool started at once, a probe thread,
        # and the chunks that wait for the choice (with the futures handed to the driver).
        self._early: Adapter | None = None
        self._early_chunks = 0
        self._probe: threading.Thread | None = None
        self._backlog: list[tuple[Job, Chunk, Future[ChunkResult]]] = []
        self._guard = threading.RLock()  # re-entrant: a future that fails at once calls back here
        self._go = threading.Event()  # the early workers have their chunks: the probe may run

    @classmethod
    def for_mode(
        cls,
        workers: int | None,
        *,
        max_tasks: int | None,  # noqa: ARG003 - a call with it runs in pool_mode instead
        items: Iterable[Any],
        modes: Callable[[str, int | None], Adapter],
    ) -> Adapter:
        from parmap._driver import input_length  # noqa: PLC0415 - the driver imports adapters

        auto = cls(lambda chosen: modes(chosen, workers), workers)
        auto.expect(input_length(items))
        return auto

    @property
    def workers(self) -> int:
        """The most workers either pool would run: the driver keeps enough chunks in flight."""
        if self._total is not None and self._total <= 1:
            return 1  # nothing to spread: not even worth counting the CPUs
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
        """Start a process pool now for a short input (see the module's doc), else nothing."""
        self._running = True
        if self._total is None or self._total <= 1:
            return
        cpus = default_workers("process")
        workers = self._workers or cpus
        # (workers= above the CPUs is meant for threads: no process pool that wide on a guess.
        # Without the GIL, CPU-bound work goes to threads, which need no head start.)
        if self._total <= SHORT * workers <= SHORT * cpus and can_fork_now() and gil_enabled():
            self._early = self._make("process")
            self._early.expect(self._total)
            self._early.start()

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Run ``chunk`` in the caller while probing, else on the chosen adapter."""
        if self._early is not None:
            with self._guard:
                if self.chosen is None:
                    return self._head_start(job, chunk)
        elif self._inner is None and self._wall >= PROBE_SECONDS and not self._recheck:
            self._choose()
        if self._inner is None or self.chosen == "serial":
            return self._run_here(job, chunk)
        return self._inner.submit(job, chunk)

    def _head_start(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Before the choice, for a short input: probe thread, then the early pool, then wait."""
        assert self._early is not None
        future: Future[ChunkResult] = Future()
        if self._probe is None:
            self._probe = threading.Thread(
                target=self._run_probe, args=(job, chunk, future), name="parmap-auto-probe", daemon=True
            )
            self._probe.start()
            early: Future[ChunkResult] | None = None
        elif self._early_chunks < self._early.workers:
            self._early_chunks += 1
            early = self._early.submit(job, chunk)
            early.add_done_callback(self._early_freed)
        else:
            self._backlog.append((job, chunk, future))
            early = None
        if self._early_chunks >= self._early.workers:
            self._go.set()
        return early if early is not None else future

    def _early_freed(self, _: Future[ChunkResult]) -> None:
        """A worker of the early pool is free before the choice: give it a waiting chunk."""
        with self._guard:
            if self.chosen is not None or not self._backlog or self._early is None:
                return
            job, chunk, waiting = self._backlog.pop(0)
            if waiting.cancelled():
                return
            early = self._early.submit(job, chunk)
        _relay(early, waiting)
        early.add_done_callback(self._early_freed)

    def _run_probe(self, job: Job, chunk: Chunk, future: Future[ChunkResult]) -> None:
        # A CPU-bound probe holds the GIL that handing chunks to the workers needs (~5 ms per
        # switch): it waits until they have theirs, or a few ms when fewer chunks come.
        self._go.wait(PROBE_SECONDS)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            result = run_chunk(job, chunk)
        except BaseException as exc:  # noqa: BLE001 - the driver gets it through the future
            settle(future, exc=exc)
            result = None
        # It shared the CPUs with the early workers: count the share it could have had as 100%.
        assert self._early is not None
        share = min(1.0, default_workers("process") / (1 + self._early_chunks))
        self._wall, self._cpu = (time.perf_counter() - wall) * share, time.thread_time() - cpu
        self._items = self._ran = len(chunk.items)
        with self._guard:
            if not self._running:  # the map was abandoned meanwhile: start nothing more
                if result is not None:
                    settle(future, result)
                return
            self._choose()
            backlog, self._backlog = self._backlog, []
        # CPU-bound: this thread takes one more waiting chunk itself, so that the caller's core
        # is not left idle while the workers catch up (few heavy items end together).
        mine = backlog.pop(0) if self.chosen == "process" and backlog else None
        for job_, chunk_, waiting in backlog:
            if not waiting.cancelled():
                _relay(self._submit_chosen(job_, chunk_), waiting)
        if result is not None:
            settle(future, result)
        if mine is not None and not mine[2].cancelled():
            try:
                settle(mine[2], run_chunk(mine[0], mine[1]))
            except BaseException as exc:  # noqa: BLE001 - as above
                settle(mine[2], exc=exc)

    def _submit_chosen(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        if self.chosen == "process" and self._early is not None:
            return self._early.submit(job, chunk)
        assert self._inner is not None
        if self.chosen == "serial":
            done: Future[ChunkResult] = Future()
            done.set_result(run_chunk(job, chunk))
            return done
        return self._inner.submit(job, chunk)

    def _run_here(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        wall, cpu = time.perf_counter(), time.thread_time()
        result = run_chunk(job, chunk, in_caller=True)
        if self._inner is None:
            self._measured(time.perf_counter() - wall, time.thread_time() - cpu, len(chunk.items))
        future: Future[ChunkResult] = Future()
        future.set_result(result)
        return future

    def _measured(self, wall: float, cpu: float, items: int) -> None:
        """Count a chunk the caller ran before the choice."""
        self._ran += items
        if self._recheck is None:  # the first chunk
            self._recheck = wall < RECHECK_BELOW and cpu < IO_RATIO * wall
        elif self._recheck:
            self._recheck = False
            if wall / max(1, items) < self._wall / max(1, self._items):
                self._wall = self._cpu = 0.0  # the first one waited for a CPU: forget it
                self._items = 0
        self._wall += wall
        self._cpu += cpu
        self._items += items

    def _choose(self) -> None:
        per_item = self._wall / max(1, self._items)
        remaining = None if self._total is None else max(0, self._total - self._ran)
        cpu_ratio = self._cpu / self._wall if self._wall else 1.0
        fresh = self._early is None and fresh_workers()
        self.chosen = choose(per_item, cpu_ratio, remaining, fresh=fresh, gil=gil_enabled())
        log.debug(
            "parmap: mode='auto' chose %r after %d items (%.3g s each, %.0f%% CPU, %s left)",
            self.chosen,
            self._ran,
            per_item,
            100 * self._cpu / self._wall if self._wall else 100,
            "?" if remaining is None else remaining,
        )
        if self.chosen == "process" and self._early is not None:
            self._inner = self._early
            return
        inner = self._make(self.chosen)
        if self.chosen != "serial":
            inner.expect(remaining)
        inner.start()
        self._inner = inner

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Shut down the pools it started (waiting for the probe thread, unless cancelling)."""
        with self._guard:
            self._running = False
            for _, _, waiting in self._backlog:
                waiting.cancel()
            self._backlog = []
        if self._probe is not None and wait and not cancel:
            self._probe.join()
        for adapter in {id(a): a for a in (self._inner, self._early) if a is not None}.values():
            adapter.shutdown(wait=wait, cancel=cancel)


def _relay(source: Future[ChunkResult], target: Future[ChunkResult]) -> None:
    """Complete ``target`` as ``source`` completes."""

    def copy(done: Future[ChunkResult]) -> None:
        if done.cancelled():
            target.cancel()
        elif (exc := done.exception()) is not None:
            settle(target, exc=exc)
        else:
            settle(target, done.result())

    source.add_done_callback(copy)
