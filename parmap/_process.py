"""The process adapter: worker processes that parmap owns, one duplex pipe each.

Why not ``ProcessPoolExecutor``: it cannot say which chunk a worker holds, and one dead
worker breaks the whole pool. Here every worker runs one chunk at a time, so the adapter always
knows what each holds, and a dead worker costs only its chunk::

    caller thread                      collector thread                    worker processes
    ─────────────                      ────────────────                    ────────────────
    submit(job, chunk)
      pickle items (errors → future)
      idle worker? ── send frames ───────────────────────────────────────► run chunk
      else queue it; spawn if needed   wait(pipes + sentinels) ◄── result ─┘
                                       next queued chunk ─── send ────────► run chunk
                                       resolve the future
                                       sentinel fired: fail its chunk,
                                       start a replacement if work is queued

Frames caller → worker: a header ``(chunk_id, start, token, has_job, shared, budget)``, the
job (``fn`` and initializer, pickled once per call) only the first time that worker sees the
call, then the pickled items, unless ``shared`` (their count) says the worker reads them from
its own copy of the input (see ``share_input``); or ``b"stop"``. ``budget``: seconds after which
the worker returns the items it ran so far. Worker → caller: ``b"ready"`` once, then one frame
per chunk, ``(chunk_id, values, failed, elapsed, error, error_tb)`` in one pickle
(``ChunkResult.encode``). A chunk is only ever sent to a worker that waits for one, so neither
side can block the other.

The rooms: this module is the public face (options, start, submit, shutdown);
``_process_pool.py`` holds one run's workers and queue and decides where each chunk goes;
``_collector.py`` is the thread that reports results and deaths; ``_launch.py`` starts and
reaps processes; ``_workers.py`` is one worker as the caller sees it; ``_wire.py`` the frames;
``_process_worker.py`` the worker's side.

Start method: ``forkserver`` where it exists (Linux and other POSIX but macOS), else
``spawn``; on Linux, a caller running a single thread forks its first workers itself (see
``start``). Plain ``fork`` copies the caller's threads' locks in whatever state they are in
(Python 3.12+ warns about it); a fork server is a clean single-threaded process, and forking
from it is fast. ``PARMAP_START_METHOD`` or ``start_method=`` chooses another.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from multiprocessing.synchronize import SemLock
from typing import Any

from parmap._adapters import Adapter, SerialAdapter, picklable_lock
from parmap._chunk import Chunk, SharedItems, dump_items
from parmap._collector import Collector
from parmap._cpus import available_cpus, default_workers
from parmap._cpython import made_for_fork
from parmap._errors import SerializationError
from parmap._job import Job
from parmap._launch import can_fork_now, default_start_method
from parmap._oslock import HAS_RECORD_LOCKS, make_pool_lock
from parmap._process_pool import ProcessPool
from parmap._result import ChunkResult
from parmap._threadcaps import thread_caps
from parmap._worker import INHERITED_LOCK, in_worker_process
from parmap._workers import SentChunk

__all__ = ["ProcessAdapter", "default_start_method"]

log = logging.getLogger("parmap")

#: The most worker processes one pool runs at once, whatever ``workers`` says: a slot of
#: progress marks is reserved per process at start, so ``workers=10**9`` must not reserve 10**9.
MOST_PROCESSES = 4096

_running_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()
_exit_hook = threading.Lock()  # registers _end_pools_at_exit once


def _end_pools_at_exit() -> None:
    """Stop every pool still running (a lazy map never finished) when the interpreter exits.

    Registered after multiprocessing's own exit hook, so it runs first: that one sends SIGTERM
    to daemonic children and then joins them without a limit, for ever if a worker ignores it.
    """
    for pool in list(_running_pools):
        try:
            pool.close(wait=False, cancel=True)
        except Exception:  # noqa: PERF203 - one pool's failure must not keep the others running
            log.exception("parmap: could not stop a process pool at exit")


class ProcessAdapter(Adapter):
    """Runs chunks in worker processes that it starts, watches and replaces.

    Args:
        workers: the most processes to run at once (4096 at most, whatever the value);
            default: the CPUs this process may use (``PARMAP_WORKERS`` overrides). Processes
            start on demand, so a short input starts only as many as it needs; but a pool that
            forks its workers from a single-threaded caller on Linux starts them all at once
            (see :meth:`start`).
        start_method: ``"forkserver"``, ``"spawn"`` or ``"fork"``; default: see
            :func:`default_start_method`.
        lock: a ``multiprocessing`` lock for ``parmap.lock()`` in this pool's workers; by
            default the pool makes its own. A process lock reaches a worker only when the
            worker starts, so it is chosen per pool, not per call.
        max_tasks_per_worker: replace a worker after it has run this many items (for ``fn``
            that leaks); a chunk that would take a worker past it goes to a fresh worker.
    """

    chunk_seconds = 0.05
    supports_timeout = True
    recycles_workers = True
    starts_processes = True

    def __init__(
        self,
        workers: int | None = None,
        *,
        start_method: str | None = None,
        lock: object = None,
        max_tasks_per_worker: int | None = None,
    ) -> None:
        self._max = workers or default_workers("process")
        self._at_once = min(self._max, MOST_PROCESSES)
        self._fork_first = start_method is None  # see start()
        self._fork_now: bool | None = None  # decided early by share_input()
        self._shared: Any = None  # the one-call map's input, which forked workers hold
        self._expected: int | None = None
        self._one_call = False
        self.start_method = start_method or default_start_method()
        if self.start_method not in multiprocessing.get_all_start_methods():
            known = multiprocessing.get_all_start_methods()
            msg = f"start_method must be one of {known}, got {self.start_method!r}"
            raise ValueError(msg)
        self._ids = itertools.count()
        self._lock_wanted = False
        self._lock_given = lock  # the caller's process lock, or None: the pool makes one
        self.max_chunk = max_tasks_per_worker
        self._run: ProcessPool | None = None  # between start and shutdown
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @classmethod
    def for_mode(
        cls,
        workers: int | None,
        *,
        max_tasks: int | None,
        items: Iterable[Any],  # noqa: ARG003
        modes: Callable[[str, int | None], Adapter],  # noqa: ARG003
    ) -> Adapter:
        if in_worker_process():
            # A worker of a process map is one of N busy CPUs already: running nested maps
            # serially keeps the process count bounded (no fork bomb).
            log.debug("parmap: nested process map inside a worker runs serially")
            return SerialAdapter()
        return cls(workers, max_tasks_per_worker=max_tasks)

    @property
    def workers(self) -> int:
        """The most worker processes this adapter runs at once."""
        return self._max

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._run is not None

    def share_lock(self, lock: object) -> object:
        """The pool's process lock (handed to each worker as it starts), or a picklable lock."""
        run_lock = None if self._run is None else self._run.lock
        if lock is True or lock is self._lock_given or (run_lock is not None and lock is run_lock):
            self._lock_wanted = True
            return INHERITED_LOCK
        if isinstance(lock, SemLock):  # a process lock: it can only be inherited
            if self.running or self._lock_given is not None:
                msg = (
                    "this pool's workers already have their lock: pass this lock when creating the pool, "
                    "ProcessAdapter(lock=...), or use lock=True"
                )
                raise ValueError(msg)
            if made_for_fork(lock) and self.start_method != "fork":
                context = f"multiprocessing.get_context({self.start_method!r}).Lock()"
                msg = (
                    f"lock={lock!r} was made for the fork start method and cannot reach "
                    f"{self.start_method} workers: make it with {context}, or use lock=True"
                )
                raise ValueError(msg)
            self._lock_given = lock
            self._lock_wanted = True
            return INHERITED_LOCK
        return picklable_lock(lock, "pass the process lock to the pool: ProcessAdapter(lock=...)")

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and monitoring)."""
        run = self._run
        if run is None:
            return []
        with run.guard:
            return [w.proc.pid for w in run.workers]

    def expect(self, chunks: int | None) -> None:
        """Start no more than ``chunks`` workers up front (a hint from a one-call map)."""
        self._expected = chunks
        self._one_call = True

    def share_input(self, items: Sequence[Any]) -> bool:
        """True when this pool will fork its workers from the caller: they then hold ``items``.

        Chunks of :class:`SharedItems` then cost the caller no pickling and no touching of
        the items (after a fork, each page the caller touches is copied); the worker checks
        them as the pipe would have (see :func:`parmap._chunk.inherited_chunk`). A worker
        started later (a replacement) gets them pickled, as usual.
        """
        if self._run is not None or not (self._one_call and self._fork_first):
            return False
        self._fork_now = can_fork_now()
        self._shared = items if self._fork_now else None
        return self._fork_now

    def start(self) -> None:
        """Start the collector thread; worker processes start when chunks arrive.

        Fast path: with the default start method on Linux, a caller that runs a single thread
        forks its first workers right here, before the collector thread exists, as
        ``multiprocessing``'s fork start does (a few ms instead of a fork server's start-up).
        Later workers (replacements, growth) come from the usual start method.
        """
        if self._run is not None:
            return
        ctx: Any = multiprocessing.get_context(self.start_method)  # typeshed lacks .Process
        # Each worker records which item it runs, so a death or a hang names that item.
        # Twice the slots of the workers: a retiring worker keeps its slot until it has exited.
        # A one-call map of a few chunks needs few (multiprocessing keeps the memory for reuse).
        needed = max(self._expected or self._at_once, available_cpus())
        # A record lock costs a temporary file (~0.1 ms): every pool has one, so that a map that
        # shares a one-call pool (see _claims.py) can ask for it too. A multiprocessing lock (no
        # fcntl: Windows) costs ~1 ms and a resource tracker: a one-call map makes one only if asked.
        needs_lock = (
            self._lock_given is not None or self._lock_wanted or not self._one_call or HAS_RECORD_LOCKS
        )
        lock = (self._lock_given or make_pool_lock(ctx)) if needs_lock else None
        fork_now = self._fork_first and (can_fork_now() if self._fork_now is None else self._fork_now)
        self._fork_now = None
        run = ProcessPool(
            ctx,
            most=self._max,
            at_once=self._at_once,
            slots=2 * min(self._at_once, needed),
            lock=lock,
            owns_lock=lock is not None and lock is not self._lock_given,
            shared=self._shared,
            max_chunk=self.max_chunk,
            thread_caps=thread_caps(self._max),
        )
        if fork_now:
            run.fork_first(min(self._at_once, self._expected or self._at_once))
        collector = Collector(run)
        self._run = run
        # The collector holds the run, not this adapter: dropped without shutdown, it is collected.
        self._finalizer = weakref.finalize(self, run.abandon)
        self._finalizer.atexit = False  # at exit, _end_pools_at_exit stops the run
        collector.thread.start()
        with _exit_hook:
            if not _running_pools:  # (unregister first: one registration, however many starts)
                atexit.unregister(_end_pools_at_exit)
                atexit.register(_end_pools_at_exit)
            _running_pools.add(run)

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Queue ``chunk``; it goes to the first idle worker. Items are pickled here and now."""
        run = self._run
        shared = (
            chunk.items
            if run is not None and isinstance(chunk.items, SharedItems) and chunk.items.seq is run.shared
            else None
        )
        try:
            items = None if shared is not None else dump_items(chunk)
        except SerializationError as exc:
            future: Future[ChunkResult] = Future()
            future.set_exception(exc)
            return future
        if run is None or run.closing:
            msg = "ProcessAdapter.submit() called when the adapter is not running"
            raise RuntimeError(msg)
        task = SentChunk(next(self._ids), job, chunk, items, shared)
        run.submit(task)
        return task.future

    def drain(self) -> None:
        """A one-call map has sent its whole input: stop each worker once nothing is queued for it.

        Its exit then overlaps the rest of the map instead of adding to the shutdown. A worker
        whose marks show that it ran its part to the end is stopped as soon as the result
        arrives, before it is unpickled; one whose part comes back unfinished or failed stays
        for the re-run; re-runs of another worker's part run on the workers left or, if none
        is, a new one.
        """
        if self._one_call and self._run is not None:
            self._run.drain()

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Stop the workers.

        With ``wait`` (and no ``cancel``), queued and running chunks finish first, then each
        worker is told to exit and joined. With ``cancel`` or without ``wait``, unfinished
        chunks are cancelled and the workers terminated at once. Either way, a worker still
        running ``STOP_GRACE`` seconds after it was told to end is killed (and a warning logged).
        """
        run = self._run
        if run is None:
            return
        run.close(wait=wait, cancel=cancel)
        self._run = None
        if self._finalizer is not None:
            self._finalizer.detach()
        self._shared = None
        self._one_call, self._expected = False, None  # the hints were for that map only
        with _exit_hook:
            _running_pools.discard(run)
