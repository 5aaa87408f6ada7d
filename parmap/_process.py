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

Start method: ``forkserver`` where it exists (Linux and other POSIX but macOS), else
``spawn``; on Linux, a caller running a single thread forks its first workers itself (see
``start``). Plain ``fork`` copies the caller's threads' locks in whatever state they are in
(Python 3.12+ warns about it); a fork server is a clean single-threaded process, and forking
from it is fast. ``PARMAP_START_METHOD`` or ``start_method=`` chooses another.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import mmap
import multiprocessing
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import SemLock
from typing import Any

from parmap._adapters import Adapter, picklable_lock, settle
from parmap._cpus import available_cpus, default_workers
from parmap._cpython import made_for_fork
from parmap._errors import SerializationError, WorkerDiedError
from parmap._launch import (
    STOP_GRACE,
    await_exit,
    can_fork_now,
    default_start_method,
    describe_exit,
    preload_in_fork_server,
    stop_processes,
)
from parmap._oslock import HAS_RECORD_LOCKS, ProcessLock, make_pool_lock
from parmap._process_worker import process_worker
from parmap._serialize import loads
from parmap._stopwatch import Stopwatch, poll_interval
from parmap._task import Chunk, ChunkResult, Job, SharedItems, describe_exception, dump_items
from parmap._threadcaps import capped_environ, thread_caps
from parmap._wire import LINGER, READY, STOP, Header, Marks
from parmap._worker import INHERITED_LOCK
from parmap._workers import Phase, SentChunk, WorkerHandle

__all__ = ["ProcessAdapter", "default_start_method"]

log = logging.getLogger("parmap")

# How often the collector looks at the exit codes of busy or stopping workers: a child that fn
# forked holds copies of its worker's pipes, so a worker's end may never show on them.
_LIVENESS_SECONDS = 0.5
#: The most worker processes one pool runs at once, whatever ``workers`` says: a slot of
#: progress marks is reserved per process at start, so ``workers=10**9`` must not reserve 10**9.
MOST_PROCESSES = 4096

_running_pools: weakref.WeakSet[ProcessAdapter] = weakref.WeakSet()
_exit_hook = threading.Lock()  # registers _end_pools_at_exit once


def _exiting() -> bool:
    """True once the interpreter shuts down (its main thread has finished)."""
    return not threading.main_thread().is_alive()


def _end_pools_at_exit() -> None:
    """Stop every pool still running (a lazy map never finished) when the interpreter exits.

    Registered after multiprocessing's own exit hook, so it runs first: that one sends SIGTERM
    to daemonic children and then joins them without a limit, for ever if a worker ignores it.
    """
    for pool in list(_running_pools):
        try:
            pool.shutdown(wait=False, cancel=True)
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
        self._slots = 0  # progress-mark slots, two per worker that may run at once (see start)
        self._fork_first = start_method is None  # see start()
        self._fork_now: bool | None = None  # decided early by share_input()
        self._shared: Any = None  # the one-call map's input, which forked workers hold
        self._thread_caps: dict[str, str | None] = {}
        self._expected: int | None = None
        self.start_method = start_method or default_start_method()
        if self.start_method not in multiprocessing.get_all_start_methods():
            known = multiprocessing.get_all_start_methods()
            msg = f"start_method must be one of {known}, got {self.start_method!r}"
            raise ValueError(msg)
        self._guard = threading.Condition()
        self._pool: list[WorkerHandle] = []
        self._pending: deque[SentChunk] = deque()
        self._ids = itertools.count()
        self._collector: threading.Thread | None = None
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        # Shared (chunk_id, position, count) marks, one triple per worker slot: an anonymous mapping for
        # workers forked from here, a multiprocessing RawArray (made when first needed, it
        # costs ~2 ms) for the others.
        self._fork_progress: mmap.mmap | None = None
        self._progress: Any = None
        self._one_call = False
        self._lock_wanted = False
        self._free_slots: list[int] = []
        self._stopwatch = Stopwatch()
        self._lock_given = lock  # the caller's process lock, or None: the pool makes one
        self.max_chunk = max_tasks_per_worker
        self._shared_lock: Any = None
        self._closing = False  # no new submissions; workers stop once the queue is empty
        self._draining = False  # a one-call map sent all its input: idle workers may go (drain)
        self._killing = False  # workers are being terminated: deaths are expected
        self._started = False  # a worker has said "ready": workers can start
        self._failed_starts = 0  # workers that died before their "ready", since the last "ready"
        self._next_look = 0.0  # when the collector next looks at exit codes (see _check_ends)
        self._blind = False  # the collector waits for events only, no exit codes: idle workers
        self._broken: str | None = None  # why the collector thread failed: no chunk can run
        # Every chunk not settled yet, wherever it is (queued, running, being reported): if the
        # collector fails half-way through a report, none may be left waiting forever.
        self._unsettled: set[Future[ChunkResult]] = set()

    @property
    def workers(self) -> int:
        """The most worker processes this adapter runs at once."""
        return self._max

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._collector is not None

    def share_lock(self, lock: object) -> object:
        """The pool's process lock (handed to each worker as it starts), or a picklable lock."""
        if lock is True or lock is self._lock_given or lock is self._shared_lock:
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
        with self._guard:
            return [w.proc.pid for w in self._pool]

    def expect(self, chunks: int | None) -> None:
        """Start no more than ``chunks`` workers up front (a hint from a one-call map)."""
        self._expected = chunks
        self._one_call = True

    def share_input(self, items: Sequence[Any]) -> bool:
        """True when this pool will fork its workers from the caller: they then hold ``items``.

        Chunks of :class:`SharedItems` then cost the caller no pickling and no touching of
        the items (after a fork, each page the caller touches is copied); the worker checks
        them as the pipe would have (see :func:`parmap._task.inherited_chunk`). A worker
        started later (a replacement) gets them pickled, as usual.
        """
        if self._collector is not None or not (self._one_call and self._fork_first):
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
        if self._collector is not None:
            return
        self._ctx: Any = multiprocessing.get_context(self.start_method)  # typeshed lacks .Process
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        # Each worker records which item it runs, so a death or a hang names that item.
        # Twice the slots of the workers: a retiring worker keeps its slot until it has exited.
        # A one-call map of a few chunks needs few (multiprocessing keeps the memory for reuse).
        needed = max(self._expected or self._at_once, available_cpus())
        self._slots = 2 * min(self._at_once, needed)
        self._free_slots = list(range(self._slots))
        # A record lock costs a temporary file (~0.1 ms): every pool has one, so that a map that
        # shares a one-call pool (see _claims.py) can ask for it too. A multiprocessing lock (no
        # fcntl: Windows) costs ~1 ms and a resource tracker: a one-call map makes one only if asked.
        needs_lock = (
            self._lock_given is not None or self._lock_wanted or not self._one_call or HAS_RECORD_LOCKS
        )
        self._shared_lock = (self._lock_given or make_pool_lock(self._ctx)) if needs_lock else None
        self._closing = self._killing = self._draining = self._started = False
        self._failed_starts = 0
        self._thread_caps = thread_caps(self._max)
        fork_now = self._fork_first and (can_fork_now() if self._fork_now is None else self._fork_now)
        self._fork_now = None
        if fork_now:
            self._fork_progress = mmap.mmap(-1, Marks.buffer_bytes(self._slots))
            fork = multiprocessing.get_context("fork")
            for _ in range(min(self._at_once, self._expected or self._at_once)):
                self._spawn(fork)
        self._collector = threading.Thread(target=self._collect, name="parmap-collector", daemon=True)
        self._collector.start()
        with _exit_hook:
            if not _running_pools:  # (unregister first: one registration, however many starts)
                atexit.unregister(_end_pools_at_exit)
                atexit.register(_end_pools_at_exit)
            _running_pools.add(self)

    # -- caller's thread ------------------------------------------------------------------

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Queue ``chunk``; it goes to the first idle worker. Items are pickled here and now."""
        shared = (
            chunk.items if isinstance(chunk.items, SharedItems) and chunk.items.seq is self._shared else None
        )
        try:
            items = None if shared is not None else dump_items(chunk)
        except SerializationError as exc:
            future: Future[ChunkResult] = Future()
            future.set_exception(exc)
            return future
        task = SentChunk(next(self._ids), job, chunk, items, shared)
        with self._guard:
            if self._collector is None or self._closing:
                msg = "ProcessAdapter.submit() called when the adapter is not running"
                raise RuntimeError(msg)
            if self._broken is not None:  # nothing would collect its result: fail it now
                task.future.set_exception(WorkerDiedError(self._broken))
                return task.future
            self._unsettled.add(task.future)
            task.future.add_done_callback(self._unsettled.discard)
            # Behind the chunks queued before it: an idle worker takes the oldest.
            self._pending.append(task)
            idle = next((w for w in self._pool if w.idle), None)
            if idle is not None:
                self._feed(idle)
            if self._pending:
                self._grow()
            if task.job.timeout or (self._blind and idle is not None and idle.task is not None):
                # A collector waiting without a limit must start timing it, and looking at
                # the worker's exit code (a child fn forked may hold the pipes that would show it).
                self._blind = False
                self._wake()
        return task.future

    def drain(self) -> None:
        """A one-call map has sent its whole input: stop each worker once nothing is queued for it.

        Its exit then overlaps the rest of the map instead of adding to the shutdown. A worker
        whose marks show that it ran its part to the end is stopped as soon as the result
        arrives, before it is unpickled; one whose part comes back unfinished or failed stays
        for the re-run; re-runs of another worker's part run on the workers left or, if none
        is, a new one.
        """
        if not self._one_call:
            return
        with self._guard:
            self._draining = True
            for w in self._pool:
                if w.accepts:
                    self._retire_if_idle(w)  # (the lock is re-entrant)

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Stop the workers.

        With ``wait`` (and no ``cancel``), queued and running chunks finish first, then each
        worker is told to exit and joined. With ``cancel`` or without ``wait``, unfinished
        chunks are cancelled and the workers terminated at once. Either way, a worker still
        running ``STOP_GRACE`` seconds after it was told to end is killed (and a warning logged).
        """
        if self._collector is None:
            return
        with self._guard:
            self._closing = True
            if cancel or not wait:
                self._killing = True
                doomed = [*self._pending, *(w.task for w in self._pool if w.task is not None)]
                self._pending.clear()
                for w in self._pool:
                    w.task = None
            else:
                doomed = []
                self._stop_idle_workers()
                collector = self._collector
                while self._pool and collector.is_alive():  # a dead collector must not hang us
                    self._guard.wait(0.1)
        for task in doomed:
            task.future.cancel()
        self._stop_collector()
        # Left only when cancelled, or if the collector failed: all of them at once, so that
        # workers deaf to SIGTERM cost one grace period, not one each.
        deaf = stop_processes([w.proc for w in self._pool])
        if deaf:
            pids = ", ".join(str(p.pid) for p in deaf)
            log.warning("parmap: worker processes (pid %s) ignored SIGTERM and were killed", pids)
        for w in self._pool:
            self._reap(w)
        self._pool.clear()
        if isinstance(self._shared_lock, ProcessLock) and self._shared_lock is not self._lock_given:
            self._shared_lock.close()
        self._fork_progress = self._progress = self._shared_lock = self._shared = None
        self._one_call, self._expected = False, None  # the hints were for that map only
        with _exit_hook:
            _running_pools.discard(self)

    # -- always under self._guard ----------------------------------------------------------

    def _stop_idle_workers(self) -> None:
        """Closing: stop each worker that has nothing to run (the others stop once they finish)."""
        for w in self._pool:
            if w.task is not None or not w.live:
                continue
            if w.accepts:
                self._stop_worker(w)
            elif not self._pending:
                # Still starting (a spawned interpreter: tens of ms) with nothing left to run:
                # end it now rather than wait for its start to stop it.
                w.phase = Phase.STOPPING
                w.deadline = time.monotonic() + STOP_GRACE
                w.proc.terminate()
                self._poke()

    def _send(self, worker: WorkerHandle, task: SentChunk) -> bool:
        """Hand ``task`` to an idle worker; False if the pipe is broken (the worker is dying)."""
        if task.future.cancelled():
            return True  # nothing to do, and the worker stays idle for the next one
        if self.max_chunk and worker.done and worker.done + task.size > self.max_chunk:
            self._stop_worker(worker)  # it has done its share: a fresh worker takes this chunk
            return False
        job = None
        if task.job.token not in worker.jobs:
            try:
                job = task.job.payload()
            except Exception as exc:  # noqa: BLE001 - fn itself cannot travel: say so, per chunk
                msg = f"fn or the initializer could not be pickled: {type(exc).__name__}: {exc}"
                settle(task.future, exc=SerializationError(msg))
                return True
        if task.items is None and not worker.inherits:
            assert task.shared is not None
            try:  # a worker that does not hold the input (a replacement): the items travel
                task.items = dump_items(Chunk(task.start, task.shared))
            except SerializationError as exc:
                settle(task.future, exc=exc)
                return True
        shared = task.size if task.items is None else -1
        try:
            header = Header(task.chunk_id, task.start, task.job.token, job is not None, shared, task.budget)
            worker.conn.send_bytes(header.encode())
            if job is not None:
                worker.conn.send_bytes(job)
            if task.items is not None:
                worker.conn.send_bytes(task.items)
        except (OSError, ValueError):  # its sentinel will tell the collector
            worker.phase = Phase.STOPPING
            return False
        worker.jobs.add(task.job.token)
        worker.task = task
        self._stopwatch.forget(worker.slot)
        return True

    def _feed(self, worker: WorkerHandle) -> None:
        """Give an idle worker the next queued chunk, or tell it to exit when closing."""
        while self._pending and worker.task is None and worker.live:
            if not self._send(worker, self._pending[0]):
                return
            self._pending.popleft()
        if worker.task is None and worker.live and self._closing and not self._pending:
            self._stop_worker(worker)

    def _stop_worker(self, worker: WorkerHandle) -> None:
        worker.phase = Phase.STOPPING
        worker.deadline = time.monotonic() + STOP_GRACE
        with contextlib.suppress(OSError):  # already gone: its sentinel will say so
            worker.conn.send_bytes(STOP)
        self._poke()

    def _poke(self) -> None:
        """Off the collector thread: wake it, so that its next wait counts a new deadline."""
        if threading.current_thread() is not self._collector:
            self._wake()

    def _grow(self) -> None:
        """Start a worker if queued chunks outnumber the workers already starting."""
        if _exiting():
            return  # multiprocessing ends our (daemonic) workers at exit: start no new ones
        # (starting and idle: each takes a queued chunk once it is up)
        starting = sum(1 for w in self._pool if w.phase is Phase.STARTING and w.task is None)
        live = sum(1 for w in self._pool if w.live)
        if self._draining and live:
            return  # re-runs at the end of a map wait for a live worker rather than a new one
        if len(self._pending) > starting and live < self._at_once and self._free_slots:
            try:
                self._spawn(self._ctx)
            except Exception as exc:  # noqa: BLE001 - out of processes, descriptors or memory
                self._cannot_spawn(exc, live=live)
                return
            if self._pool[-1].early:  # forked: it takes the oldest queued chunk now
                self._feed(self._pool[-1])
            self._wake()

    def _cannot_spawn(self, exc: Exception, *, live: int) -> None:
        """No worker could be started: the live workers take the queue, or its chunks fail now.

        The pool stays usable: the next chunk tries again.
        """
        why = f"could not start a worker process: {describe_exception(exc)}"
        log.warning("parmap: %s", why)
        if live:
            return
        doomed, self._pending = list(self._pending), deque()
        for task in doomed:  # (their callbacks only queue a note for the caller's driver)
            settle(task.future, exc=WorkerDiedError(why))

    def _spawn(self, ctx: Any) -> None:
        method = ctx.get_start_method()
        forked = method == "fork"
        if forked and self._fork_progress is not None:
            progress: Any = self._fork_progress
        else:
            if self._progress is None:
                self._progress = self._ctx.RawArray("q", Marks.SIZE * self._slots)
            progress = self._progress
        if method == "forkserver":
            preload_in_fork_server()  # (only on first use: ~1 ms of imports a forking pool never needs)
        parent, child = ctx.Pipe(duplex=True)
        slot = self._free_slots.pop()
        # A forked worker inherits every descriptor the caller has: it must close the caller's
        # ends of the pipes, or its own pipe never reads end-of-file when the caller dies.
        inherited = (parent, self._wake_r, self._wake_w, *(w.conn for w in self._pool)) if forked else ()
        shared = self._shared if forked else None  # fork copies it; any other start would pickle it
        proc = ctx.Process(
            target=process_worker,
            args=(child, progress, slot, self._shared_lock),
            kwargs={
                "inherited": inherited,
                "thread_caps": self._thread_caps,
                "shared": shared,
                "spawned": method == "spawn",
            },
            name="parmap-worker",
            daemon=True,
        )
        try:
            if forked:
                proc.start()
            else:  # a spawned worker, or the fork server it comes from, starts with the caps
                with capped_environ(self._thread_caps):
                    proc.start()
        except BaseException:
            parent.close()
            child.close()
            self._free_slots.append(slot)
            raise
        child.close()
        marks = Marks.in_buffer(progress, slot)
        self._pool.append(WorkerHandle(proc, parent, slot, marks, inherits=shared is not None, early=forked))

    def _wake(self) -> None:
        if self._wake_w is not None:
            self._wake_w.send_bytes(b"")

    # -- collector thread -----------------------------------------------------------------

    def _collect(self) -> None:
        try:
            while self._collect_once():
                pass
        except BaseException as exc:
            log.exception("parmap: the process collector thread failed; failing all chunks")
            with self._guard:
                self._broken = f"parmap's process collector failed: {describe_exception(exc)}"
                unsettled = list(self._unsettled)
                self._pending.clear()
                self._guard.notify_all()
            for future in unsettled:
                settle(future, exc=WorkerDiedError(self._broken))

    def _collect_once(self) -> bool:
        """Wait for the next event of any worker (or a deadline), and act on it; False: stop."""
        assert self._wake_r is not None
        with self._guard:
            if self._collector is None or _exiting():
                return False  # at interpreter exit, _end_pools_at_exit ends the workers
            by_conn = {w.conn: w for w in self._pool}
            by_sentinel = {w.proc.sentinel: w for w in self._pool}
            timeouts = [w.task.job.timeout for w in self._pool if w.task and w.task.job.timeout]
            deadlines = [w.deadline for w in self._pool if w.deadline is not None]
            watched = any(w.task is not None or not w.live for w in self._pool)
            self._blind = not watched and not timeouts  # (then submit() wakes it: see there)
        # Exit codes are looked at every _LIVENESS_SECONDS, and at each stop deadline.
        look = min([self._next_look, *deadlines]) if watched else None
        limits = [poll_interval(timeouts) or 0.0] if timeouts else []
        if look is not None:
            limits.append(max(0.0, look - time.monotonic()))
        ready = wait([self._wake_r, *by_conn, *by_sentinel], min(limits, default=None))
        if timeouts:
            self._kill_overdue()
        for obj in ready:
            if obj is self._wake_r:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
            elif obj in by_conn:
                self._read(by_conn[obj])
            else:
                self._gone(by_sentinel[obj])
        if look is not None and time.monotonic() >= look:
            self._check_ends()
        return True

    def _kill_overdue(self) -> None:
        """Kill each worker whose current item (or the sending of its results) is past the timeout."""
        now = time.monotonic()
        with self._guard:
            for w in self._pool:
                task = w.task
                if task is None or not task.job.timeout or w.timed_out is not None:
                    continue
                mark = w.marks.read()
                running = mark[0] == task.chunk_id and mark[1] >= 0
                if running and self._stopwatch.overdue(w.slot, mark, task.job.timeout, now):
                    w.timed_out = (mark[1], mark[2])
                    w.proc.kill()  # SIGKILL: a stuck item may ignore or block SIGTERM

    def _check_ends(self) -> None:
        """Workers that ended unseen (a child fn forked holds their pipes) or outstayed a stop."""
        now = time.monotonic()
        self._next_look = now + _LIVENESS_SECONDS
        with self._guard:
            pool = list(self._pool)
        for w in pool:
            if w.proc.exitcode is not None:
                if not wait([w.proc.sentinel], 0):  # else the next wait reports it as usual
                    log.warning(
                        "parmap: worker process (pid %s) ended, but a process that fn started in it "
                        "still holds its pipes (fn forked a child that outlives it)",
                        w.proc.pid,
                    )
                    self._gone(w)
            elif w.deadline is not None and now >= w.deadline:
                w.deadline = None
                why = w.note or (
                    "fn may have left a non-daemon thread or a child process running in it, "
                    "or made it ignore SIGTERM"
                )
                log.warning(
                    "parmap: worker process (pid %s) was still running %g s after it was told to stop "
                    "(%s); killed it",
                    w.proc.pid,
                    STOP_GRACE,
                    why,
                )
                w.proc.kill()

    def _read(self, worker: WorkerHandle) -> None:
        if worker not in self._pool:
            return
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._gone(worker)
            return
        if data.startswith(LINGER):  # its last words: what keeps it from exiting
            worker.note = data[len(LINGER) :].decode(errors="replace")
            return
        self._handle(worker, data)

    def _started_up(self, worker: WorkerHandle) -> None:
        """``worker`` said "ready": workers can start; give it a chunk."""
        with self._guard:
            if worker.phase is Phase.STARTING:
                worker.phase = Phase.READY
            self._started = True
            self._failed_starts = 0
            self._feed(worker)  # unless it was sent a chunk already (see WorkerHandle.early)

    def _handle(self, worker: WorkerHandle, data: bytes) -> None:
        if data == READY:
            self._started_up(worker)
            return
        with self._guard:
            task = worker.task
            if not self.max_chunk:  # feed it first: the result is unpickled while it runs
                worker.task = None
                self._next(worker)
                if self._draining and task is not None and worker.ran_all(task):
                    self._retire_if_idle(worker)  # now: its exit overlaps the unpickling
        if task is None:
            return
        try:
            _, *fields = loads(data)  # the worker's ChunkResult.encode(chunk_id)
            result = ChunkResult(*fields)
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a rebuild that raises SystemExit included
            last = task.start + task.size - 1
            msg = f"the results of items {task.start}..{last} could not be unpickled in the caller"
            error = SerializationError(f"{msg}: {type(exc).__name__}: {exc}")
            if self.max_chunk:
                self._count(worker, task.size)  # they ran: only their results were lost
            settle(task.future, exc=error)
            return
        if self.max_chunk:  # a part may come back unfinished: count only the items it ran
            self._count(worker, 0 if result.error is not None else len(result.values))
        if self._draining and len(result.values) == task.size and result.error is None:
            self._retire_if_idle(worker)  # nothing of its part comes back: it may go now
        settle(task.future, result)

    def _count(self, worker: WorkerHandle, ran: int) -> None:
        """With max_tasks_per_worker: add the items ``worker`` ran, then feed it (or retire it)."""
        with self._guard:
            worker.task = None
            worker.done += ran
            self._next(worker)

    def _next(self, worker: WorkerHandle) -> None:
        """A worker's chunk came back: give it the next, or start its successor if it retired."""
        self._feed(worker)
        if not worker.live and self._pending:
            self._grow()  # it retired (max_tasks_per_worker): start its successor

    def _retire_if_idle(self, worker: WorkerHandle) -> None:
        """Draining: stop ``worker`` if it has nothing to run and nothing is queued."""
        with self._guard:
            if worker.task is None and worker.live and not self._pending:
                self._stop_worker(worker)

    def _gone(self, worker: WorkerHandle) -> None:
        """A worker's process ended: report its chunk, replace it if work is queued."""
        if worker not in self._pool:
            return
        try:
            while worker.task is not None and worker.conn.poll():  # a result sent just before exit
                self._handle(worker, worker.conn.recv_bytes())
        except (EOFError, OSError):
            pass
        await_exit([worker.proc], time.monotonic() + STOP_GRACE)  # (its end showed: a moment at most)
        pid = worker.proc.pid
        how = describe_exit(worker.proc.exitcode)
        with self._guard:
            self._pool.remove(worker)
            task, worker.task = worker.task, None
            if task is not None and worker.phase is Phase.STARTING and not self._killing:
                self._pending.appendleft(task)  # sent before the worker started: it never ran
                task = None
            # Read its marks before its slot goes to a successor (a forked one writes at once).
            error = None if task is None else worker.death_error(task, pid, how)
            self._free_slots.append(worker.slot)
            failed_start = worker.phase is Phase.STARTING and not self._killing
            doomed = self._replace(failed_start=failed_start)
            self._guard.notify_all()
        self._reap(worker)
        if not worker.live and task is None:
            return
        if task is not None:
            settle(task.future, exc=error)
        for t in doomed:
            msg = (
                f"a worker process (pid {pid}) failed to start ({how}); its error is on stderr. "
                f"Under the {self.start_method!r} start method workers import the main module: "
                "guard the script's code with `if __name__ == '__main__':`, and run it from a file"
            )
            settle(t.future, exc=WorkerDiedError(msg))

    def _replace(self, *, failed_start: bool) -> list[SentChunk]:
        """After a worker's end: start another if work waits; the queued chunks, if none can start."""
        if failed_start:
            self._failed_starts += 1
        others = any(w.live for w in self._pool)  # running, or starting, workers
        if failed_start and (self._failed_starts > self._max or not (self._started or others)):
            # Workers cannot start at all: fail what waits for one, never respawn in a loop.
            doomed, self._pending = list(self._pending), deque()
            return doomed
        if self._pending and not self._killing and not (failed_start and others):
            self._grow()  # (after a failed start, the others show first whether any can start)
        return []

    # -- shutdown helpers -----------------------------------------------------------------

    def _stop_collector(self) -> None:
        collector = self._collector
        with self._guard:
            self._collector = None
            self._wake()
        if collector is not None and collector is not threading.current_thread():
            collector.join()
        for conn in (self._wake_r, self._wake_w):
            if conn is not None:
                conn.close()
        self._wake_r = self._wake_w = None

    @staticmethod
    def _reap(worker: WorkerHandle) -> None:
        """Wait (a grace period at most) for a worker that has ended or was told to; close it."""
        proc = worker.proc
        if await_exit([proc], time.monotonic() + STOP_GRACE):
            proc.kill()
            if await_exit([proc], time.monotonic() + STOP_GRACE):  # in the kernel: leave it
                log.warning("parmap: worker process (pid %s) could not be stopped", proc.pid)
        worker.conn.close()
        if proc.exitcode is not None and not _exiting():  # multiprocessing's exit hook joins it
            proc.close()
