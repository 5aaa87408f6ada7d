"""The thread adapter: a pool of daemon threads that can leave a stuck item behind.

Why not ``ThreadPoolExecutor``: a thread cannot be killed, so an item past its ``timeout``
must be given up on — its future failed at once, its thread abandoned to finish ``fn`` alone
and a fresh thread started in its place — which an executor with a fixed set of threads cannot
do. Its threads are also joined at interpreter exit, so a script stopped by Ctrl-C would wait
for the items still running; these threads are daemons, and the interpreter does not wait.
"""

from __future__ import annotations

import functools
import itertools
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from parmap._adapters import Adapter, settle
from parmap._chunk import Chunk
from parmap._cpus import default_workers
from parmap._errors import ItemTimeoutError
from parmap._job import Job
from parmap._result import ChunkResult
from parmap._stopwatch import Stopwatch, poll_interval
from parmap._threadcaps import cap_threads_here
from parmap._wire import Marks
from parmap._worker import run_chunk

__all__ = ["ThreadAdapter"]

_Queued = tuple[Job, Chunk, "Future[ChunkResult]"]  # a chunk for the threads, and its future
_names = itertools.count()


def _limit(job: Job) -> float | None:
    """The job's timeout; None when it sets no limit (none, or an infinite one)."""
    return job.timeout if job.timeout and job.timeout != math.inf else None


class _Worker:
    __slots__ = ("abandoned", "gone", "mark", "task", "thread")

    def __init__(self, target: Callable[[_Worker], None]) -> None:
        # The items it runs (with a timeout), from run_chunk; their "chunk" is its count of
        # chunks taken: it tells an item from the one at the same position of the last chunk.
        self.mark = Marks()
        self.task: _Queued | None = None
        self.abandoned = False  # its item timed out: the thread exits once fn returns
        self.gone = threading.Event()  # the thread ended, or was abandoned: nothing left to wait for
        self.thread = threading.Thread(
            target=target, args=(self,), name=f"parmap-thread-{next(_names)}", daemon=True
        )


class _Pool:
    """What the threads of one run of the adapter, from start to shutdown, share.

    Each thread keeps its own run's pool: one still busy after ``shutdown(wait=False)`` never
    takes chunks from, nor counts as a thread of, the pool that a later ``start`` makes.
    """

    __slots__ = ("caps", "idle", "live", "queue", "running", "stop", "stopwatch", "watchdog")

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self.idle = threading.Semaphore(0)  # one release per thread waiting for a chunk
        self.live: list[_Worker] = []  # threads not yet ended nor abandoned
        self.running = True  # until shutdown; then nothing is queued behind its Nones
        self.stop = threading.Event()  # ends the watchdog
        self.stopwatch = Stopwatch()
        self.watchdog: threading.Thread | None = None
        self.caps: Any = None  # native pools capped while this run's threads compute (free-threaded)


def _overdue_item(stopwatch: Stopwatch, worker: _Worker, now: float) -> int | None:
    """The position of the item ``worker`` runs if it is past its timeout, else None."""
    task = worker.task  # first: the worker sets its mark before its task
    limit = None if task is None else _limit(task[0])
    if limit is None:
        return None
    run, position, count = worker.mark.read()
    # -1: no item started yet; count 0: the items ran and their results are being handed over.
    if position < 0 or count == 0:
        return None
    return position if stopwatch.overdue(worker, (run, position), limit, now) else None


def _drain(tasks: queue.SimpleQueue[_Queued | None]) -> list[_Queued]:
    drained: list[_Queued] = []
    while True:
        try:
            task = tasks.get_nowait()
        except queue.Empty:
            return drained
        if task is not None:
            drained.append(task)


class ThreadAdapter(Adapter):
    """Runs chunks on threads of this process: for I/O-bound ``fn`` (and code that frees the GIL).

    Threads start on demand, up to ``workers``, and live from :meth:`start` to :meth:`shutdown`.
    Nothing is pickled. An adapter can be started again after a shutdown, and a running one
    can serve maps from several threads at once.

    Args:
        workers: the most threads at once; default: CPUs + 4, at most 32 (``PARMAP_WORKERS``
            overrides it).
        max_tasks_per_worker: replace a thread after it has run this many items (for ``fn``
            that leaks thread-local state).
    """

    chunk_seconds = 0.01
    supports_timeout = True
    recycles_workers = True

    def __init__(self, workers: int | None = None, *, max_tasks_per_worker: int | None = None) -> None:
        self._max = workers or default_workers("thread")
        self.max_chunk = max_tasks_per_worker
        # Guards _pool and, for every pool, live, running and watchdog, and its workers' task.
        self._lock = threading.Lock()
        self._pool: _Pool | None = None

    @classmethod
    def for_mode(
        cls,
        workers: int | None,
        *,
        max_tasks: int | None,
        items: Iterable[Any],  # noqa: ARG003
        modes: Callable[[str, int | None], Adapter],  # noqa: ARG003
    ) -> Adapter:
        return cls(workers, max_tasks_per_worker=max_tasks)

    @property
    def workers(self) -> int:
        """The most threads this adapter runs at once."""
        return self._max

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._pool is not None

    def start(self) -> None:
        """Get ready; threads start with the first chunks. Does nothing when already running."""
        with self._lock:
            if self._pool is None:
                self._pool = _Pool()
                self._pool.caps = cap_threads_here(self._max)

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Queue the chunk; start a thread if none is idle and fewer than ``workers`` run."""
        future: Future[ChunkResult] = Future()
        with self._lock:  # so that no chunk is queued behind the Nones of a shutdown
            pool = self._pool
            if pool is None:
                msg = "ThreadAdapter.submit() called when the adapter is not running"
                raise RuntimeError(msg)
            pool.queue.put((job, chunk, future))
            if not pool.idle.acquire(blocking=False) and len(pool.live) < self._max:
                self._spawn(pool)
            if _limit(job) is not None and pool.watchdog is None:
                pool.watchdog = threading.Thread(
                    target=self._watch, args=(pool,), name="parmap-watchdog", daemon=True
                )
                pool.watchdog.start()
        return future

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Stop the threads: with ``wait``, wait for them to finish their chunks and end.

        With ``cancel``, queued chunks are cancelled; else the threads run them first. Threads
        abandoned to a timed-out item are never waited for.
        """
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is None:
                return
            pool.running = False
            queued = _drain(pool.queue) if cancel else []
            for _ in pool.live:  # one each, behind the queued chunks
                pool.queue.put(None)
        for _, _, future in queued:
            future.cancel()
        if wait:
            self._join(pool)
        pool.stop.set()
        if pool.caps is not None:
            pool.caps.restore_original_limits()
        watchdog = pool.watchdog  # none starts after shutdown: submit refuses
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join()  # it sees stop within one poll interval (at most 0.25 s)

    # -- worker threads -------------------------------------------------------------------

    def _spawn(self, pool: _Pool) -> None:
        """Start a thread for ``pool`` (the caller holds the lock)."""
        worker = _Worker(functools.partial(self._work, pool))
        pool.live.append(worker)
        worker.thread.start()

    def _join(self, pool: _Pool) -> None:
        """Wait until every thread of ``pool`` has ended, or been abandoned to a timed-out item."""
        me = threading.current_thread()  # (a thread of the pool that shuts it down cannot wait for itself)
        while True:
            with self._lock:
                left = [w for w in pool.live if w.thread is not me]  # with replacements of abandoned ones
            if not left:
                return
            for worker in left:
                worker.gone.wait()  # its chunks end, or the watchdog gives up on its item
                if not worker.abandoned:
                    worker.thread.join()  # it has ended, or is about to

    def _work(self, pool: _Pool, me: _Worker) -> None:
        try:
            self._serve(pool, me)
        finally:
            with self._lock:
                if not me.abandoned:  # (an abandoned one was taken out already)
                    pool.live.remove(me)
                    pool.stopwatch.forget(me)
            me.gone.set()

    def _serve(self, pool: _Pool, me: _Worker) -> None:
        done = 0  # items run, for max_tasks_per_worker
        taken = 0  # chunks taken: the "chunk" of its marks
        while True:
            task = pool.queue.get()  # shutdown puts a None for each live thread
            if task is None:
                return
            job, chunk, future = task
            if (
                self.max_chunk
                and done
                and done + len(chunk.items) > self.max_chunk
                and self._retire(pool, task)
            ):
                return
            if future.set_running_or_notify_cancel():
                limit = _limit(job)
                taken += 1
                me.mark.begin(taken)
                me.task = task  # last: the watchdog reads the task first, then the mark
                # Marks only serve timeouts here (a thread cannot die): without one, none.
                try:
                    result = run_chunk(
                        job, chunk, progress=me.mark.cells if limit else None, slot=Marks.POSITION
                    )
                except BaseException as exc:  # noqa: BLE001 - GeneratorExit from fn: the chunk fails, not the thread
                    result = ChunkResult(error=exc)  # (a thread gone would leave its future pending)
                done += len(result.values)  # a chunk stopped at a failure counts the items it ran
                with self._lock:
                    me.task = None
                    if me.abandoned:  # its future already failed; a fresh thread took its place
                        return
                settle(future, result)
            pool.idle.release()

    def _retire(self, pool: _Pool, task: _Queued) -> bool:
        """Hand ``task`` to a fresh thread that takes this one's place; False once shut down."""
        with self._lock:
            if not pool.running:  # the queue ends in Nones: the task would be left behind them
                return False
            pool.queue.put(task)
            self._spawn(pool)
            return True

    def _watch(self, pool: _Pool) -> None:
        """Fail items that run past their timeout, and put fresh threads in their place."""
        while not pool.stop.is_set():
            with self._lock:
                limits = [t for w in pool.live if w.task and (t := _limit(w.task[0])) is not None]
            pool.stop.wait(poll_interval(limits) or 0.05)
            now = time.monotonic()
            timed_out = []
            with self._lock:
                for worker in list(pool.live):
                    position = _overdue_item(pool.stopwatch, worker, now)
                    if position is not None:
                        timed_out.append(self._abandon(pool, worker, position))
            for future, error in timed_out:
                settle(future, exc=error)  # outside the lock: the future's callbacks run here

    def _abandon(
        self, pool: _Pool, worker: _Worker, position: int
    ) -> tuple[Future[ChunkResult], ItemTimeoutError]:
        """Give up on ``worker``, whose item is overdue; its future's error (the caller holds the lock)."""
        assert worker.task is not None
        job, chunk, future = worker.task
        worker.abandoned = True
        pool.live.remove(worker)
        pool.stopwatch.forget(worker)
        worker.gone.set()
        # Even after shutdown: the fresh thread runs what is queued, then takes this one's None.
        self._spawn(pool)
        error = ItemTimeoutError(
            f"item {chunk.start + position} ran longer than timeout={job.timeout:g} s; its thread cannot be "
            "stopped and goes on in the background until fn returns (a fresh thread took its place)"
        )
        error.position = position
        return future, error
