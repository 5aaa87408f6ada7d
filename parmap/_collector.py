"""The collector: the one thread of a process pool's run that listens to its workers.

Each round has five phases, one method each:

1. :meth:`Collector._watch`: what to wait for, read under the pool's guard: every worker's
   pipe and sentinel, the timeouts of the items running, the stop deadlines.
2. :meth:`Collector._wait`: ``multiprocessing.connection.wait`` on all of it and the wake-up
   pipe, bounded by the nearest deadline (no bound only while every worker is idle: then the
   caller's thread wakes it).
3. :meth:`Collector._time_items`: kill each worker whose item is past its timeout.
4. :meth:`Collector._act`: for each pipe or sentinel that fired, a worker said "ready", sent a
   result (fed its next chunk first, then unpickled and reported), or ended (its chunk failed
   with what its progress marks say, a successor started if work is queued).
5. :meth:`Collector._look_at_ends`: every 0.5 s while any worker is busy or stopping, exit
   codes are read (a child ``fn`` forked may hold a worker's pipes, so its end may never show
   on them) and workers that outstayed a stop are killed.

It holds the run (:class:`~parmap._process_pool.ProcessPool`), never the adapter: an adapter
dropped without ``shutdown`` is collected, and the collector then ends the run itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Any

from parmap._adapters import settle
from parmap._errors import SerializationError, WorkerDiedError
from parmap._launch import (
    STOP_GRACE,
    await_exit,
    describe_exit,
    interpreter_exiting,
    reap,
    start_failure_message,
)
from parmap._process_pool import ProcessPool
from parmap._result import ChunkResult, describe_exception
from parmap._serialize import loads
from parmap._stopwatch import poll_interval
from parmap._wire import LINGER, READY
from parmap._workers import Phase, SentChunk, WorkerHandle

__all__ = ["Collector"]

log = logging.getLogger("parmap")

# How often the collector looks at the exit codes of busy or stopping workers: a child that fn
# forked holds copies of its worker's pipes, so a worker's end may never show on them.
_LIVENESS_SECONDS = 0.5


class _Watch:
    """What one round waits for (phase 1), taken under the guard."""

    __slots__ = ("by_conn", "by_sentinel", "look", "timeouts")

    def __init__(self, pool: ProcessPool, next_look: float) -> None:
        workers = pool.workers
        self.by_conn = {w.conn: w for w in workers}
        self.by_sentinel = {w.proc.sentinel: w for w in workers}
        self.timeouts = [w.task.job.timeout for w in workers if w.task and w.task.job.timeout]
        deadlines = [w.deadline for w in workers if w.deadline is not None]
        watched = any(w.task is not None or not w.live for w in workers)
        pool.blind = not watched and not self.timeouts  # (then submit() wakes it: see there)
        # Exit codes are looked at every _LIVENESS_SECONDS, and at each stop deadline.
        self.look = min([next_look, *deadlines]) if watched else None


class Collector:
    """Reports each worker's results and end to the pool it serves, on a thread of its own."""

    def __init__(self, pool: ProcessPool) -> None:
        self.pool = pool
        self._next_look = 0.0  # when exit codes are next looked at (phase 5)
        self.thread = threading.Thread(target=self._run, name="parmap-collector", daemon=True)
        pool.collector = self.thread

    def _run(self) -> None:
        pool = self.pool
        try:
            while self._round():
                pass
        except BaseException as exc:
            log.exception("parmap: the process collector thread failed; failing all chunks")
            with pool.guard:
                pool.broken = f"parmap's process collector failed: {describe_exception(exc)}"
                unsettled = list(pool.unsettled)
                pool.pending.clear()
                pool.guard.notify_all()
            for future in unsettled:
                settle(future, exc=WorkerDiedError(pool.broken))

    def _round(self) -> bool:
        """One round of the five phases; False: the run is over."""
        pool = self.pool
        if pool.abandoned:
            log.debug("parmap: a running process pool was dropped without shutdown: stopping it")
            pool.close(wait=False, cancel=True)
            return False
        with pool.guard:
            if pool.stopped or interpreter_exiting():
                return False  # at interpreter exit, _process.end_pools_at_exit ends the workers
            watch = _Watch(pool, self._next_look)
        ready = self._wait(watch)
        if watch.timeouts:
            self._time_items()
        self._act(watch, ready)
        if watch.look is not None and time.monotonic() >= watch.look:
            self._look_at_ends()
        return True

    def _wait(self, watch: _Watch) -> list[Any]:
        limits = [poll_interval(watch.timeouts) or 0.0] if watch.timeouts else []
        if watch.look is not None:
            limits.append(max(0.0, watch.look - time.monotonic()))
        return wait([self.pool.wake_r, *watch.by_conn, *watch.by_sentinel], min(limits, default=None))

    def _time_items(self) -> None:
        """Kill each worker whose current item (or the sending of its results) is past the timeout."""
        pool = self.pool
        now = time.monotonic()
        with pool.guard:
            for w in pool.workers:
                task = w.task
                if task is None or not task.job.timeout or w.timed_out is not None:
                    continue
                mark = w.marks.read()
                running = mark[0] == task.chunk_id and mark[1] >= 0
                if running and pool.stopwatch.overdue(w.slot, mark, task.job.timeout, now):
                    w.timed_out = (mark[1], mark[2])
                    w.proc.kill()  # SIGKILL: a stuck item may ignore or block SIGTERM

    def _act(self, watch: _Watch, ready: list[Any]) -> None:
        wake_r = self.pool.wake_r
        for obj in ready:
            if obj is wake_r:
                while wake_r.poll():
                    wake_r.recv_bytes()
            elif obj in watch.by_conn:
                self._read(watch.by_conn[obj])
            else:
                self._gone(watch.by_sentinel[obj])

    def _look_at_ends(self) -> None:
        """Workers that ended unseen (a child fn forked holds their pipes) or outstayed a stop."""
        now = time.monotonic()
        self._next_look = now + _LIVENESS_SECONDS
        with self.pool.guard:
            workers = list(self.pool.workers)
        for w in workers:
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

    # -- one worker's events ----------------------------------------------------------------

    def _read(self, worker: WorkerHandle) -> None:
        if worker not in self.pool.workers:
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
        pool = self.pool
        with pool.guard:
            if worker.phase is Phase.STARTING:
                worker.phase = Phase.READY
            pool.started = True
            pool.failed_starts = 0
            pool.feed(worker)  # unless it was sent a chunk already (see WorkerHandle.early)

    def _handle(self, worker: WorkerHandle, data: bytes) -> None:
        if data == READY:
            self._started_up(worker)
            return
        pool = self.pool
        with pool.guard:
            task = worker.task
            if not pool.max_chunk:  # feed it first: the result is unpickled while it runs
                pool.returned(worker, 0)
                if pool.draining and task is not None and worker.ran_all(task):
                    pool.retire_if_idle(worker)  # now: its exit overlaps the unpickling
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
            if pool.max_chunk:
                with pool.guard:
                    pool.returned(worker, task.size)  # they ran: only their results were lost
            settle(task.future, exc=error)
            return
        if pool.max_chunk:  # a part may come back unfinished: count only the items it ran
            with pool.guard:
                pool.returned(worker, 0 if result.error is not None else len(result.values))
        if pool.draining and len(result.values) == task.size and result.error is None:
            pool.retire_if_idle(worker)  # nothing of its part comes back: it may go now
        settle(task.future, result)

    def _gone(self, worker: WorkerHandle) -> None:
        """A worker's process ended: report its chunk, replace it if work is queued."""
        pool = self.pool
        if worker not in pool.workers:
            return
        try:
            while worker.task is not None and worker.conn.poll():  # a result sent just before exit
                self._handle(worker, worker.conn.recv_bytes())
        except (EOFError, OSError):
            pass
        await_exit([worker.proc], time.monotonic() + STOP_GRACE)  # (its end showed: a moment at most)
        pid = worker.proc.pid
        how = describe_exit(worker.proc.exitcode)
        with pool.guard:
            pool.workers.remove(worker)
            task, worker.task = worker.task, None
            if task is not None and worker.phase is Phase.STARTING and not pool.killing:
                pool.pending.appendleft(task)  # sent before the worker started: it never ran
                task = None
            # Read its marks before its slot goes to a successor (a forked one writes at once).
            error = None if task is None else worker.death_error(task, pid, how)
            pool.slots.free.append(worker.slot)
            failed_start = worker.phase is Phase.STARTING and not pool.killing
            doomed = self._replace(failed_start=failed_start)
            pool.guard.notify_all()
        reap(worker.proc, worker.conn)
        if not worker.live and task is None:
            return
        if task is not None:
            settle(task.future, exc=error)
        for t in doomed:
            msg = start_failure_message(f"a worker process (pid {pid})", how, pool.start_method)
            settle(t.future, exc=WorkerDiedError(msg))

    def _replace(self, *, failed_start: bool) -> list[SentChunk]:
        """After a worker's end: start another if work waits; the queued chunks, if none can start."""
        pool = self.pool
        if failed_start:
            pool.failed_starts += 1
        others = any(w.live for w in pool.workers)  # running, or starting, workers
        if failed_start and (pool.failed_starts > pool.most or not (pool.started or others)):
            # Workers cannot start at all: fail what waits for one, never respawn in a loop.
            doomed, pool.pending = list(pool.pending), deque()
            return doomed
        if pool.pending and not pool.killing and not (failed_start and others):
            pool.grow()  # (after a failed start, the others show first whether any can start)
        return []
