"""The thread adapter: a pool of daemon threads that can leave a stuck item behind.

Why not ``ThreadPoolExecutor``: a thread cannot be killed, so an item past its ``timeout``
must be given up on — its future failed at once, its thread abandoned to finish ``fn`` alone
and a fresh thread started in its place — which an executor with a fixed set of threads cannot
do. Its threads are also joined at interpreter exit, so a script stopped by Ctrl-C would wait
for the items still running; these threads are daemons, and the interpreter does not wait.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import Future

from parmap._adapters import Adapter, settle
from parmap._cpus import default_workers
from parmap._errors import ItemTimeoutError
from parmap._stopwatch import Stopwatch, poll_interval
from parmap._task import Chunk, ChunkResult, Job
from parmap._worker import run_chunk

__all__ = ["ThreadAdapter"]

_Task = tuple[Job, Chunk, "Future[ChunkResult]"]
_names = itertools.count()


class _Worker:
    __slots__ = ("abandoned", "mark", "task", "thread")

    def __init__(self) -> None:
        self.mark = [-1, 1]  # position of the item being run (with a timeout): written by run_chunk
        self.task: _Task | None = None
        self.abandoned = False  # its item timed out: the thread exits once fn returns
        self.thread: threading.Thread | None = None


class ThreadAdapter(Adapter):
    """Runs chunks on threads of this process: for I/O-bound ``fn`` (and code that frees the GIL).

    Threads start on demand, up to ``workers``, and live from :meth:`start` to :meth:`shutdown`.
    Nothing is pickled.

    Args:
        workers: the most threads at once; default: CPUs + 4, at most 32 (``PARMAP_WORKERS``
            overrides it).
        max_tasks_per_worker: replace a thread after it has run this many items (for ``fn``
            that leaks thread-local state).
    """

    chunk_seconds = 0.01
    supports_timeout = True

    def __init__(self, workers: int | None = None, *, max_tasks_per_worker: int | None = None) -> None:
        self._max = workers or default_workers("thread")
        self.max_chunk = max_tasks_per_worker
        self._lock = threading.Lock()
        self._live: list[_Worker] = []
        self._running = False

    @property
    def workers(self) -> int:
        """The most threads this adapter runs at once."""
        return self._max

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._running

    def start(self) -> None:
        """Get ready; threads start with the first chunks."""
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one release per thread waiting for a chunk
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._stopwatch = Stopwatch()
        self._running = True

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Queue the chunk; start a thread if none is idle and fewer than ``workers`` run."""
        if not self._running:
            msg = "ThreadAdapter.submit() called when the adapter is not running"
            raise RuntimeError(msg)
        future: Future[ChunkResult] = Future()
        self._queue.put((job, chunk, future))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._live) < self._max:
                    self._spawn()
                if job.timeout and self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, name="parmap-watchdog", daemon=True)
                    self._watchdog.start()
        return future

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Stop the threads: with ``wait`` they are joined once their current chunk is done.

        With ``cancel``, queued chunks are cancelled. Threads abandoned to a timed-out item are
        never waited for.
        """
        if not self._running:
            return
        self._running = False
        if cancel:
            while True:
                try:
                    task = self._queue.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[2].cancel()
        with self._lock:
            live = list(self._live)
        for _ in live:
            self._queue.put(None)
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join()
        if wait:
            for worker in live:
                assert worker.thread is not None
                worker.thread.join()

    # -- worker threads -------------------------------------------------------------------

    def _spawn(self) -> None:
        worker = _Worker()
        worker.thread = threading.Thread(
            target=self._work, args=(worker,), name=f"parmap-thread-{next(_names)}", daemon=True
        )
        self._live.append(worker)
        worker.thread.start()

    def _work(self, me: _Worker) -> None:
        done = 0  # items run, for max_tasks_per_worker
        while True:
            task = self._queue.get()
            if task is None:
                return
            job, chunk, future = task
            if self.max_chunk and done and done + len(chunk.items) > self.max_chunk:
                self._queue.put(task)  # it has done its share: a fresh thread takes this chunk
                self._retire(me)
                return
            if future.set_running_or_notify_cancel():
                me.mark[0] = -1
                me.task = task
                # Marks only serve timeouts here (a thread cannot die): without one, none.
                result = run_chunk(job, chunk, progress=me.mark if job.timeout else None)
                done += len(result.values)  # a chunk stopped at a failure counts the items it ran
                with self._lock:
                    me.task = None
                    if me.abandoned:  # its future already failed; a fresh thread took its place
                        return
                settle(future, result)
            self._idle.release()

    def _retire(self, me: _Worker) -> None:
        with self._lock:
            self._live.remove(me)
            if self._running:
                self._spawn()

    def _watch(self) -> None:
        """Fail items that run past their timeout, and put fresh threads in their place."""
        while not self._stop.is_set():
            with self._lock:
                timeouts = [w.task[0].timeout for w in self._live if w.task and w.task[0].timeout]
            self._stop.wait(poll_interval(timeouts) or 0.05)
            now = time.monotonic()
            with self._lock:
                for worker in list(self._live):
                    task = worker.task
                    if task is None or not task[0].timeout or worker.mark[0] < 0:
                        continue
                    mark = (id(task), worker.mark[0])
                    if self._stopwatch.overdue(worker, mark, task[0].timeout, now):
                        self._abandon(worker, task)

    def _abandon(self, worker: _Worker, task: _Task) -> None:
        job, chunk, future = task
        pos = worker.mark[0]
        worker.abandoned = True
        self._live.remove(worker)
        self._stopwatch.forget(worker)
        if self._running:
            self._spawn()
        error = ItemTimeoutError(
            f"item {chunk.start + pos} ran longer than timeout={job.timeout:g} s; its thread cannot be "
            "stopped and goes on in the background until fn returns (a fresh thread took its place)"
        )
        error.position = pos
        settle(future, exc=error)
