"""One run of a process pool, from start to shutdown: its workers, its queue, where each chunk goes.

The caller's thread (``submit``, ``drain``, ``close``) and the collector thread
(``_collector.py``, which reports results and deaths) share a :class:`ProcessPool` under its
``guard``. The dispatch policy lives here: a chunk goes to the first idle worker, else waits
in the queue while a worker starts (up to ``at_once``); a worker that returns a chunk takes
the next; a worker that has run ``max_chunk`` items, or that a draining map no longer needs,
is stopped. Nothing here holds the :class:`~parmap.ProcessAdapter` that made it, so an adapter
dropped without ``shutdown`` is collected (its finalizer calls :meth:`ProcessPool.abandon`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from parmap._adapters import settle
from parmap._errors import SerializationError, WorkerDiedError
from parmap._launch import (
    STOP_GRACE,
    describe_exit,
    fork_server_exit,
    interpreter_exiting,
    reap,
    start_failure_message,
    start_worker,
    stop_processes,
)
from parmap._oslock import ProcessLock
from parmap._result import ChunkResult, describe_exception
from parmap._stopwatch import Stopwatch
from parmap._wire import Marks, MarkSlots
from parmap._workers import Phase, SentChunk, WorkerHandle

__all__ = ["ProcessPool"]

log = logging.getLogger("parmap")


class ProcessPool:
    """The state of one run, and the dispatch policy. Methods after ``close`` expect ``guard`` held."""

    def __init__(
        self,
        ctx: Any,
        *,
        most: int,
        at_once: int,
        slots: int,
        lock: Any,
        owns_lock: bool,
        shared: Sequence[Any] | None,
        max_chunk: int | None,
        thread_caps: dict[str, str | None],
    ) -> None:
        self.ctx = ctx
        self.start_method: str = ctx.get_start_method()
        self.most = most  # workers=: failed starts beyond it mean no worker can start
        self.at_once = at_once
        self.max_chunk = max_chunk
        self.lock = lock  # the process lock every worker inherits (None: none was needed)
        self._owns_lock = owns_lock
        self.shared = shared  # the one-call map's input, which workers forked from here hold
        self._thread_caps = thread_caps
        self.guard = threading.Condition()  # the pool's mutex (the user's lock is parmap.lock())
        self.workers: list[WorkerHandle] = []
        self.pending: deque[SentChunk] = deque()
        self.slots = MarkSlots(ctx, slots)
        self.stopwatch = Stopwatch()
        self.wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self.collector: threading.Thread | None = None  # set by the Collector it belongs to
        self.closing = False  # no new submissions; workers stop once the queue is empty
        self.draining = False  # a one-call map sent all its input: idle workers may go (drain)
        self.killing = False  # workers are being terminated: deaths are expected
        self.started = False  # a worker has said "ready": workers can start
        self.failed_starts = 0  # workers that died before their "ready", since the last "ready"
        self.blind = False  # the collector waits for events only, no exit codes: idle workers
        self.broken: str | None = None  # why the collector thread failed: no chunk can run
        self.stopped = False  # the collector is told to end (shutdown, or the adapter was dropped)
        self.abandoned = False  # the adapter was collected without shutdown: the collector ends it
        # Every chunk not settled yet, wherever it is (queued, running, being reported): if the
        # collector fails half-way through a report, none may be left waiting forever.
        self.unsettled: set[Future[ChunkResult]] = set()

    def fork_first(self, count: int) -> None:
        """Fork ``count`` workers from the caller now (it runs a single thread: see ProcessAdapter.start)."""
        self.slots.for_forks()
        fork = multiprocessing.get_context("fork")
        for _ in range(count):
            self.spawn(fork)

    def submit(self, task: SentChunk) -> None:
        """Queue ``task`` behind the chunks queued before it; an idle worker takes the oldest."""
        with self.guard:
            if self.broken is not None:  # nothing would collect its result: fail it now
                task.future.set_exception(WorkerDiedError(self.broken))
                return
            self.unsettled.add(task.future)
            task.future.add_done_callback(self.unsettled.discard)
            self.pending.append(task)
            idle = next((w for w in self.workers if w.idle), None)
            if idle is not None:
                self.feed(idle)
            if self.pending:
                self.grow()
            if task.job.timeout or (self.blind and idle is not None and idle.task is not None):
                # A collector waiting without a limit must start timing it, and looking at
                # the worker's exit code (a child fn forked may hold the pipes that would show it).
                self.blind = False
                self.wake()

    def drain(self) -> None:
        """A one-call map has sent its whole input: stop each worker once nothing is queued for it."""
        with self.guard:
            self.draining = True
            for w in self.workers:
                if w.accepts:
                    self.retire_if_idle(w)  # (the guard is re-entrant)

    def abandon(self) -> None:
        """The adapter was collected while running: have the collector end this run (any thread)."""
        self.abandoned = True
        with contextlib.suppress(OSError, ValueError):  # already shut down
            self.wake()

    def close(self, *, wait: bool, cancel: bool) -> None:
        """Stop the workers (see ProcessAdapter.shutdown); on the collector's thread when abandoned."""
        with self.guard:
            if self.stopped:
                return
            self.closing = True
            if cancel or not wait:
                self.killing = True
                doomed = [*self.pending, *(w.task for w in self.workers if w.task is not None)]
                self.pending.clear()
                for w in self.workers:
                    w.task = None
            else:
                doomed = []
                self._stop_idle_workers()
                while self.workers and self.collector is not None and self.collector.is_alive():
                    self.guard.wait(0.1)  # (a dead collector must not hang us)
        for task in doomed:
            task.future.cancel()
        self._stop_collector()
        # Left only when cancelled, or if the collector failed: all of them at once, so that
        # workers deaf to SIGTERM cost one grace period, not one each.
        deaf = stop_processes([w.proc for w in self.workers])
        if deaf:
            pids = ", ".join(str(p.pid) for p in deaf)
            log.warning("parmap: worker processes (pid %s) ignored SIGTERM and were killed", pids)
        for w in self.workers:
            reap(w.proc, w.conn)
        self.workers.clear()
        if self._owns_lock and isinstance(self.lock, ProcessLock):
            self.lock.close()
        self.slots.release()
        self.lock = self.shared = None

    def _stop_collector(self) -> None:
        with self.guard:
            self.stopped = True
            self.wake()
        collector = self.collector
        if collector is not None and collector is not threading.current_thread():
            collector.join()
        self.wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        """Wake the collector: its next wait counts a new deadline or a new worker."""
        self._wake_w.send_bytes(b"")

    # -- with self.guard held ---------------------------------------------------------------

    def _stop_idle_workers(self) -> None:
        """Closing: stop each worker that has nothing to run (the others stop once they finish)."""
        for w in self.workers:
            if w.task is not None or not w.live:
                continue
            if w.accepts:
                self.stop_worker(w)
            elif not self.pending:
                # Still starting (a spawned interpreter: tens of ms) with nothing left to run:
                # end it now rather than wait for its start to stop it.
                w.phase = Phase.STOPPING
                w.deadline = time.monotonic() + STOP_GRACE
                w.proc.terminate()
                self._poke()

    def _send(self, worker: WorkerHandle, task: SentChunk) -> bool:
        """Hand ``task`` to an idle worker; False if it cannot take it (retiring, or dying)."""
        if task.future.cancelled():
            return True  # nothing to do, and the worker stays idle for the next one
        if self.max_chunk and worker.done and worker.done + task.size > self.max_chunk:
            self.stop_worker(worker)  # it has done its share: a fresh worker takes this chunk
            return False
        try:
            job = task.prepare_for(worker)
        except SerializationError as exc:  # fn, or an item, cannot travel: say so, per chunk
            settle(task.future, exc=exc)
            return True
        if not worker.send(task, job):
            return False
        self.stopwatch.forget(worker.slot)
        return True

    def feed(self, worker: WorkerHandle) -> None:
        """Give an idle worker the next queued chunk, or tell it to exit when closing."""
        while self.pending and worker.task is None and worker.live:
            if not self._send(worker, self.pending[0]):
                return
            self.pending.popleft()
        if worker.task is None and worker.live and self.closing and not self.pending:
            self.stop_worker(worker)

    def returned(self, worker: WorkerHandle, ran: int) -> None:
        """``worker``'s chunk came back (``ran`` items of it counted): feed it, or start its successor."""
        worker.task = None
        worker.done += ran
        self.feed(worker)
        if not worker.live and self.pending:
            self.grow()  # it retired (max_tasks_per_worker): start its successor

    def retire_if_idle(self, worker: WorkerHandle) -> None:
        """Draining: stop ``worker`` if it has nothing to run and nothing is queued."""
        with self.guard:
            if worker.task is None and worker.live and not self.pending:
                self.stop_worker(worker)

    def stop_worker(self, worker: WorkerHandle) -> None:
        worker.stop()
        self._poke()

    def _poke(self) -> None:
        """Off the collector thread: wake it, so that its next wait counts a new deadline."""
        if threading.current_thread() is not self.collector:
            self.wake()

    def grow(self) -> None:
        """Start a worker if queued chunks outnumber the workers already starting."""
        if interpreter_exiting():
            return  # multiprocessing ends our (daemonic) workers at exit: start no new ones
        # (starting and idle: each takes a queued chunk once it is up)
        starting = sum(1 for w in self.workers if w.phase is Phase.STARTING and w.task is None)
        live = sum(1 for w in self.workers if w.live)
        if self.draining and live:
            return  # re-runs at the end of a map wait for a live worker rather than a new one
        if len(self.pending) > starting and live < self.at_once and self.slots.free:
            try:
                self.spawn(self.ctx)
            except Exception as exc:  # noqa: BLE001 - out of processes, descriptors or memory
                self._cannot_spawn(exc, live=live)
                return
            if self.workers[-1].early:  # forked: it takes the oldest queued chunk now
                self.feed(self.workers[-1])
            self.wake()

    def _cannot_spawn(self, exc: Exception, *, live: int) -> None:
        """No worker could be started: the live workers take the queue, or its chunks fail now.

        The pool stays usable: the next chunk tries again.
        """
        why = f"could not start a worker process: {describe_exception(exc)}"
        broken = isinstance(exc, ConnectionError | EOFError)  # (its server may be ending: wait a moment)
        forked_by_server = self.ctx.get_start_method() == "forkserver"
        ended = fork_server_exit(within=STOP_GRACE if broken else 0.0) if forked_by_server else None
        if ended is not None:  # the fork server died (see fork_server_exit): say why, as for a worker
            also = ": the fork server, which starts them, ended so"
            why = start_failure_message("a worker process", describe_exit(ended), "forkserver", also=also)
        log.warning("parmap: %s", why)
        if live:
            return
        doomed, self.pending = list(self.pending), deque()
        for task in doomed:  # (their callbacks only queue a note for the caller's driver)
            settle(task.future, exc=WorkerDiedError(why))

    def spawn(self, ctx: Any) -> None:
        """Start a worker under ``ctx``'s start method, in a free slot of progress marks."""
        forked = ctx.get_start_method() == "fork"
        marks, slot = self.slots.take(forked=forked)
        shared = self.shared if forked else None
        try:
            proc, conn = start_worker(
                ctx,
                marks,
                slot,
                self.lock,
                inherited=(self.wake_r, self._wake_w, *(w.conn for w in self.workers)),
                thread_caps=self._thread_caps,
                shared=shared,
            )
        except BaseException:
            self.slots.free.append(slot)
            raise
        worker = WorkerHandle(
            proc, conn, slot, Marks.in_buffer(marks, slot), inherits=shared is not None, early=forked
        )
        self.workers.append(worker)
