"""What the caller and a worker process say to each other, and the marks a worker leaves.

One duplex pipe per worker. Caller → worker, per chunk: a :class:`Header` frame, then the job
(``fn`` and the initializer, pickled once per call) if ``has_job``, then the pickled items
unless ``shared`` is not negative: the chunk is then the ``shared`` items at ``start`` of the
input the worker holds (it was forked after the caller shared it). Or :data:`STOP`.
Worker → caller: :data:`READY` once, then one frame per chunk,
``(chunk_id, values, failed, elapsed, error, error_tb)`` in one pickle
(``ChunkResult.encode``); when told to stop while threads ``fn`` left keep it alive,
:data:`LINGER` and their names. A chunk is only sent to a worker that waits for one, so
neither side can block the other.

Beside the pipe, each worker writes its :class:`Marks` into memory it shares with the caller:
which items it runs, so that a death or a timeout names them.
"""

from __future__ import annotations

import mmap
from collections.abc import MutableSequence
from typing import Any, NamedTuple

from parmap._serialize import dumps, loads

__all__ = ["LINGER", "READY", "STOP", "Header", "MarkSlots", "Marks"]

READY = b"ready"
STOP = b"stop"
#: A stopping worker's last frame when threads that fn started keep it from exiting: their names.
LINGER = b"linger:"


class Header(NamedTuple):
    """The first frame of a chunk sent to a worker."""

    chunk_id: int
    start: int  # the index of the chunk's first item in the input
    token: str  # the call's job (see Job.token): the worker caches the job by it
    has_job: bool  # the job's frame follows (the first chunk of this call on this worker)
    shared: int  # -1: the pickled items follow; else how many items of the input it holds
    budget: float  # seconds after which the worker returns the items it ran so far (0: none)
    attempt: int  # which try of its items this is: what parmap.attempt() says in fn

    def encode(self) -> bytes:
        return dumps(tuple(self))

    @classmethod
    def decode(cls, frame: bytes) -> Header:
        return cls(*loads(frame))


class Marks:
    """One worker's progress marks: the chunk it runs, and which of its items run.

    Position and count of the items running; count 0: every item that will run has run and
    the results are being handed over. Three integers of memory shared with the caller (a
    process) or a plain list (a thread); written by the worker, read by the caller's
    collector or watchdog.
    """

    SIZE = 3  # integers per worker
    POSITION = 1  # the index of the position in ``cells``; the count follows it (as run_chunk writes them)
    __slots__ = ("cells",)

    def __init__(self, cells: MutableSequence[int] | None = None) -> None:
        self.cells: MutableSequence[int] = [0, -1, 1] if cells is None else cells

    @classmethod
    def in_buffer(cls, buffer: Any, slot: int) -> Marks:
        """The marks of worker ``slot`` in ``buffer`` (an mmap or a RawArray of 64-bit integers)."""
        cells: Any = memoryview(buffer).cast("B").cast("q")  # (typeshed: no MutableSequence)
        return cls(cells[cls.SIZE * slot : cls.SIZE * slot + cls.SIZE])

    @classmethod
    def buffer_bytes(cls, slots: int) -> int:
        return 8 * cls.SIZE * slots

    def begin(self, chunk_id: int) -> None:
        """A chunk arrived: no item of it runs yet."""
        self.cells[0], self.cells[1] = chunk_id, -1

    def read(self) -> tuple[int, int, int]:
        """``(chunk_id, position, count)``, as the worker last wrote them."""
        m = self.cells
        return m[0], m[1], m[2]

    def items(self, chunk_id: int, size: int) -> tuple[int, int] | None:
        """Positions ``lo .. hi - 1`` of the items running, if the marks name items of this chunk."""
        marked, lo, count = self.read()
        if marked != chunk_id or not 0 <= lo < size or count < 1:
            return None
        return lo, min(size, lo + count)

    def ran_all(self, chunk_id: int, size: int) -> bool:
        """Whether every item of chunk ``chunk_id`` has run (its result comes back complete)."""
        return self.read() == (chunk_id, size, 0)


class MarkSlots:
    """The memory a pool's workers write their marks in: one slot each, taken as a worker starts.

    An anonymous mapping for workers forked from the caller (made by :meth:`for_forks`), a
    ``multiprocessing`` RawArray for the others (made when first needed: it costs ~2 ms).
    """

    __slots__ = ("_count", "_ctx", "_forked", "_other", "free")

    def __init__(self, ctx: Any, count: int) -> None:
        self._ctx = ctx
        self._count = count
        self.free = list(range(count))
        self._forked: mmap.mmap | None = None
        self._other: Any = None

    def for_forks(self) -> None:
        self._forked = mmap.mmap(-1, Marks.buffer_bytes(self._count))

    def take(self, *, forked: bool) -> tuple[Any, int]:
        """A free slot (IndexError if none is) and the buffer it is in, for a worker starting."""
        if forked and self._forked is not None:
            return self._forked, self.free.pop()
        if self._other is None:  # (first: a failure here must not cost a slot)
            self._other = self._ctx.RawArray("q", Marks.SIZE * self._count)
        return self._other, self.free.pop()

    def release(self) -> None:
        """The run is over: drop the buffers (multiprocessing keeps a RawArray's memory for reuse)."""
        self._forked = self._other = None
