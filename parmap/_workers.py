"""The process pool's view of one worker process, and of a chunk sent to it.

A worker moves through three phases (:class:`Phase`); what it runs is its :class:`SentChunk`.
When it dies or is killed past a timeout, its progress marks (``_wire.Marks``) tell which
item it held: :meth:`WorkerHandle.death_error` turns them into the error the caller sees.
"""

from __future__ import annotations

import contextlib
import enum
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from parmap._chunk import Chunk, SharedItems, dump_items
from parmap._errors import ItemTimeoutError, ParmapError, SerializationError, WorkerDiedError
from parmap._job import Job
from parmap._launch import STOP_GRACE
from parmap._result import ChunkResult
from parmap._wire import STOP, Header

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from parmap._wire import Marks

__all__ = ["Phase", "SentChunk", "WorkerHandle"]


class SentChunk:
    """A chunk on its way through the pool: queued, sent to a worker, or being reported."""

    __slots__ = ("attempt", "budget", "chunk_id", "future", "items", "job", "shared", "size", "start")

    def __init__(
        self, chunk_id: int, job: Job, chunk: Chunk, items: bytes | None, shared: SharedItems | None = None
    ) -> None:
        self.chunk_id = chunk_id
        self.job = job
        self.start = chunk.start
        self.size = len(chunk.items)
        self.budget = chunk.budget
        self.attempt = chunk.attempt
        self.items = items  # pickled; None while only a worker holding the input has been needed
        self.shared = shared  # the items, in the input that workers forked from here hold
        self.future: Future[ChunkResult] = Future()

    def prepare_for(self, worker: WorkerHandle) -> bytes | None:
        """The job's payload if ``worker`` has not seen the job; the items pickled if it needs them.

        Raises:
            SerializationError: ``fn`` or the initializer, or an item, cannot be pickled.
        """
        job = None
        if self.job.token not in worker.jobs:
            try:
                job = self.job.payload()
            except Exception as exc:  # noqa: BLE001 - whatever the reason, fn cannot travel
                msg = f"fn or the initializer could not be pickled: {type(exc).__name__}: {exc}"
                raise SerializationError(msg) from None
        if self.items is None and not worker.inherits:
            assert self.shared is not None
            # a worker that does not hold the input (a replacement): the items travel
            self.items = dump_items(Chunk(self.start, self.shared))
        return job


class Phase(enum.Enum):
    STARTING = "starting"  # its process runs, it has not said "ready" yet
    READY = "ready"  # it said "ready": it takes chunks
    STOPPING = "stopping"  # told to stop (or its pipe broke): it takes none, and ends soon


class WorkerHandle:
    """One worker process: its pipe, its marks, its phase and the chunk it runs."""

    __slots__ = (
        "conn",
        "deadline",
        "done",
        "early",
        "inherits",
        "jobs",
        "marks",
        "note",
        "phase",
        "proc",
        "slot",
        "task",
        "timed_out",
    )

    def __init__(
        self, proc: Any, conn: Connection, slot: int, marks: Marks, *, inherits: bool, early: bool
    ) -> None:
        self.proc = proc
        self.conn = conn
        self.phase = Phase.STARTING
        self.inherits = inherits  # forked after share_input(): it holds the input
        # Forked: it runs the worker loop at once, so a chunk may be sent before its "ready"
        # (its only write before reading is that one short frame: neither side can block).
        self.early = early
        self.slot = slot  # index of its marks in the progress buffers
        self.marks = marks
        self.jobs: set[str] = set()  # tokens of the calls whose fn this worker has
        self.task: SentChunk | None = None
        # (position, count) of its marks when it was killed past its timeout: count 0 means it
        # had run its items and was sending their results
        self.timed_out: tuple[int, int] | None = None
        self.done = 0  # items it has run, for max_tasks_per_worker
        self.deadline: float | None = None  # told to stop: killed if still running then
        self.note = ""  # what the worker said of itself as it left (threads fn left running)

    @property
    def accepts(self) -> bool:
        """Whether a chunk may be sent to it (when idle)."""
        return self.phase is Phase.READY or (self.phase is Phase.STARTING and self.early)

    @property
    def idle(self) -> bool:
        """It takes a chunk now."""
        return self.task is None and self.accepts

    @property
    def live(self) -> bool:
        """Running or starting, not on its way out."""
        return self.phase is not Phase.STOPPING

    def send(self, task: SentChunk, job: bytes | None) -> bool:
        """Write the frames of ``task`` (``job``: pickled, if it has not seen it); False: pipe broken."""
        shared = task.size if task.items is None else -1
        try:
            header = Header(
                task.chunk_id, task.start, task.job.token, job is not None, shared, task.budget, task.attempt
            )
            self.conn.send_bytes(header.encode())
            if job is not None:
                self.conn.send_bytes(job)
            if task.items is not None:
                self.conn.send_bytes(task.items)
        except (OSError, ValueError):  # it is dying: its sentinel will tell the collector
            self.phase = Phase.STOPPING
            return False
        self.jobs.add(task.job.token)
        self.task = task
        return True

    def stop(self) -> None:
        """Tell it to exit once idle; it is killed if still running ``STOP_GRACE`` seconds later."""
        self.phase = Phase.STOPPING
        self.deadline = time.monotonic() + STOP_GRACE
        with contextlib.suppress(OSError):  # already gone: its sentinel will say so
            self.conn.send_bytes(STOP)

    def ran_all(self, task: SentChunk) -> bool:
        """Whether, per its marks, it ran every item of ``task`` (the result comes back complete)."""
        return self.marks.ran_all(task.chunk_id, task.size)

    def death_error(self, task: SentChunk, pid: int | None, how: str) -> ParmapError:
        """What its end means for the items of ``task`` it ran: a timeout or a death."""
        if self.timed_out is not None:
            return self._timeout_error(task, pid, *self.timed_out)
        lo, hi = self.marks.items(task.chunk_id, task.size) or (0, task.size)
        first, last = task.start + lo, task.start + hi - 1
        what = f"item {first}" if hi - lo == 1 else f"one of items {first}..{last}"
        error = WorkerDiedError(f"a worker process (pid {pid}) died ({how}) while running {what}")
        if hi - lo == 1:
            error.position = lo
        elif (lo, hi) != (0, task.size):
            error.span = (lo, hi)
        return error

    @staticmethod
    def _timeout_error(task: SentChunk, pid: int | None, pos: int, count: int) -> ParmapError:
        timeout = task.job.timeout
        if count:
            error: ParmapError = ItemTimeoutError(
                f"item {task.start + pos} ran longer than timeout={timeout:g} s; "
                f"its worker process (pid {pid}) was killed and replaced"
            )
            error.position = pos
            return error
        # It had run items 0 .. pos - 1 and was pickling and sending their results: whose
        # result was slow to pickle? Run them one at a time to find out (see the driver).
        last = task.start + pos - 1
        what = f"the result of item {last}" if pos == 1 else f"the results of items {task.start}..{last}"
        error = ItemTimeoutError(
            f"{what} took longer than timeout={timeout:g} s to pickle and send; "
            f"the worker process (pid {pid}) was killed and replaced"
        )
        if pos == 1:
            error.position = 0
        else:
            error.span = (0, pos)
        return error
