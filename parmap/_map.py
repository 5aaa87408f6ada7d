"""The state of one map between the adapter's futures and the caller's generator (``_driver.py``).

A :class:`MapState` reads the input into chunks (:meth:`MapState.fill`), keeps the window of
chunks in flight, takes each finished part into its chunk's :class:`~parmap._slot.Slot`
(:meth:`MapState.absorb`), runs again what a chunk-level failure left undone, and says which
chunks can be delivered.

A chunk can fail as a whole (its worker died, an item could not be unpickled). When the
adapter knows which item was running (``ParmapError.position``), that item alone gets the
error and the rest of the chunk runs again as a new part; when it does not, the chunk runs again
one item at a time, which isolates the culprit. Items of such a chunk may therefore run twice.

With ``journal=``, each chunk read is first looked up in the journal (``_journal.py``): the
items recorded as done are not sent, their recorded values complete the chunk as a part of
its own (delivered in place, as any other); every other result, and every final failure, is
recorded as it is absorbed.

With ``retries=``, an item that failed (by itself or with its worker) is tried again as a part
of its own, after a delay spent in a heap of the map's, not in a worker: the map's loop waits
for the next result or the next retry that falls due, whichever comes first
(:meth:`MapState.next_done`). Its chunk stays in the window (it is not delivered) until the
item succeeds or has no tries left.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from itertools import islice
from typing import Any

from parmap._adapters import Adapter
from parmap._chunk import Chunk, SharedItems
from parmap._chunking import ChunkSizer
from parmap._errors import InitializerError
from parmap._job import Job
from parmap._journal import MapJournal
from parmap._result import ChunkResult
from parmap._retry import Retries
from parmap._slot import Slot, explained

__all__ = ["MapState", "MapStopped", "Stop"]

log = logging.getLogger("parmap")


def _notify(
    done: queue.SimpleQueue[tuple[int, int, int, Future[ChunkResult]]],
    key: tuple[int, int, int],
    future: Future[ChunkResult],
) -> None:
    """Done-callback: runs in whichever thread finished the future; only enqueues."""
    done.put((*key, future))


class MapStopped(Exception):  # noqa: N818 - not an error: a request, carried out
    """Raised in a map's driver when its :class:`Stop` was set: the driver's ``finally`` cleans up."""


_STOP: Future[ChunkResult] = Future()  # put in a map's queue of finished parts: end the map


class Stop:
    """Ends a running map from another thread (``amap``'s consumer was cancelled or closed).

    The map's driver waits on its queue of finished parts; a request puts a mark in that
    queue, so the driver wakes at once and raises :class:`MapStopped` (no polling).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[int, int, int, Future[ChunkResult]]] | None = None
        self.requested = False

    def attach(self, done: queue.SimpleQueue[tuple[int, int, int, Future[ChunkResult]]]) -> None:
        with self._lock:
            self._queue = done
            if self.requested:
                done.put((-1, 0, 0, _STOP))

    def set(self) -> None:
        """Ask the map to end; it does at its next wait for a result (any thread)."""
        with self._lock:
            if self.requested:
                return
            self.requested = True
            if self._queue is not None:
                self._queue.put((-1, 0, 0, _STOP))


class MapState:
    """The state of one map between the adapter's futures and the caller's generator."""

    def __init__(
        self,
        adapter: Adapter,
        job: Job,
        sizer: ChunkSizer,
        shared: Sequence[Any] | None,
        *,
        eager: bool,
        owned: bool = False,
        budgeted: bool = False,
        retries: Retries | None = None,
        journal: MapJournal | None = None,
        key: Callable[[Any], object] | None = None,
        stop: Stop | None = None,
    ) -> None:
        self.adapter = adapter
        self.retries = retries
        self.journal = journal
        self.key = key  # the journal's key of an item (None: its input index)
        self.replayed: set[Future[ChunkResult]] = set()  # parts made of recorded values
        # Retries waiting for their time: (when, tie-breaker, chunk, position, attempt).
        self.waiting: list[tuple[float, int, int, int, int]] = []
        self._ties = itertools.count()
        self.owned = owned  # the map started the adapter (others may share it: see _claims.py)
        self.job = job
        self.sizer = sizer
        self.shared = shared  # the input, when the adapter's workers read chunks from their copy
        self.budgeted = budgeted  # workers return a part unfinished past its budget (see budget())
        self.outstanding = len(shared) if shared is not None else 0  # items not run yet (budgeted)
        self.eager = eager  # every result is kept: chunks waiting for their turn do not count
        self.next_seq = 0  # sequence number of the next chunk read from the input
        self.next_out = 0  # sequence number of the next chunk to deliver in order
        self.index = 0  # input index of the next item read
        self.finished: set[int] = set()  # complete, but waiting for earlier chunks (in order)
        self.done: queue.SimpleQueue[tuple[int, int, int, Future[ChunkResult]]] = queue.SimpleQueue()
        self.slots: dict[int, Slot] = {}
        self.owners: dict[Future[ChunkResult], int] = {}  # futures in flight -> their chunk
        if stop is not None:
            stop.attach(self.done)

    def fill(self, source: Iterator[Any], window: int) -> bool:
        """Read and submit chunks until ``window`` are in flight; False once the input is exhausted.

        Exhausted is known as soon as a read comes back short: an owned adapter is told at
        once (``drain``), so that workers left without work can go while the others finish.
        """
        while len(self.slots) - (len(self.finished) if self.eager else 0) < window:
            size = self.sizer.next_size()
            batch: Sequence[Any]
            if self.shared is None:
                batch = list(islice(source, size))
            else:
                batch = SharedItems(self.shared, self.index, min(len(self.shared), self.index + size))
            if batch:
                self.sizer.taken(len(batch))
                slot = self.slots[self.next_seq] = Slot(Chunk(self.index, batch))
                if self.journal is None:
                    self.submit(self.next_seq, 0, len(batch))
                else:
                    self.resume(self.next_seq, slot)
                self.index += len(batch)
                self.next_seq += 1
            if len(batch) < size or (self.shared is not None and self.index == len(self.shared)):
                if self.owned:
                    self.adapter.drain()
                return False
        return True

    def deliverable(self, seq: int, slot: Slot, *, ordered: bool) -> list[Slot]:
        """The chunks that can be delivered now that ``slot`` (chunk ``seq``) changed."""
        if slot.parts:
            return []
        if not ordered:
            del self.slots[seq]
            return [slot]
        self.finished.add(seq)
        ready = []
        while self.next_out in self.finished:
            self.finished.remove(self.next_out)
            ready.append(self.slots.pop(self.next_out))
            self.next_out += 1
        return ready

    def submit(self, seq: int, offset: int, size: int, attempt: int = 1) -> None:
        """Run items ``offset .. offset + size - 1`` of chunk ``seq`` as one part."""
        slot = self.slots[seq]
        part = slot.chunk
        if size != len(part.items) or self.budgeted or attempt != 1:
            items = part.items if size == len(part.items) else part.items[offset : offset + size]
            part = Chunk(part.start + offset, items, None, self.budget() if self.budgeted else 0.0, attempt)
        future = self.adapter.submit(self.job, part)
        slot.parts += 1
        self.owners[future] = seq
        future.add_done_callback(functools.partial(_notify, self.done, (seq, offset, size)))

    def resume(self, seq: int, slot: Slot) -> None:
        """Send the items of a new chunk that the journal has not recorded; replay the others."""
        assert self.journal is not None
        items, start = slot.chunk.items, slot.chunk.start
        if self.key is not None:
            slot.keys = [repr(self.key(item)) for item in items]
        recorded = self.journal.recorded(start, slot.keys, len(items))
        if not recorded:
            self.submit(seq, 0, len(items))
            return
        for done, run in itertools.groupby(range(len(items)), key=recorded.__contains__):
            positions = list(run)
            if not done:
                self.submit(seq, positions[0], len(positions))
                continue
            future: Future[ChunkResult] = Future()
            future.set_result(ChunkResult([recorded[i] for i in positions]))
            slot.parts += 1
            self.owners[future] = seq
            self.replayed.add(future)
            future.add_done_callback(
                functools.partial(_notify, self.done, (seq, positions[0], len(positions)))
            )

    def drop_after(self, seq: int) -> None:
        """Forget the chunks after ``seq`` (a failure in ``seq`` ends the map before them)."""
        for later in [s for s in self.slots if s > seq]:
            del self.slots[later]
            self.finished.discard(later)
        for future in [f for f, s in self.owners.items() if s > seq]:
            future.cancel()
            del self.owners[future]

    def failed_item(self, seq: int, pos: int, exc: BaseException, tb: str | None) -> bool:
        """Item ``pos`` of chunk ``seq`` failed: schedule its next try (True), or fail it for good."""
        slot = self.slots[seq]
        if self.retries is not None:
            tries = slot.tried(pos, exc)
            if self.retries.wants(exc, tries):
                due = time.monotonic() + self.retries.delay(tries)
                heapq.heappush(self.waiting, (due, next(self._ties), seq, pos, tries + 1))
                slot.parts += 1  # (the chunk is not complete while a try waits)
                log.info(
                    "parmap: item %d failed (%s); try %d follows", slot.chunk.start + pos, exc, tries + 1
                )
                return True
            slot.tries[pos].pop()  # type: ignore[index]  # (the last is the error itself)
        if self.journal is not None:
            index = slot.chunk.start + pos
            self.journal.fail(str(index) if slot.keys is None else slot.keys[pos], index, exc, tb)
        slot.fail(pos, exc, tb)
        return False

    def next_done(self) -> tuple[int, int, int, Future[ChunkResult]]:
        """The next finished part; meanwhile, send the retries that fall due (no worker waits)."""
        while True:
            now = time.monotonic()
            while self.waiting and self.waiting[0][0] <= now:
                _, _, seq, pos, attempt = heapq.heappop(self.waiting)
                slot = self.slots.get(seq)
                if slot is None:  # dropped: a failure before it ended the map
                    continue
                slot.parts -= 1
                self.submit(seq, pos, 1, attempt)
            flush = None if self.journal is None else self.journal.flush_due()
            due = min(
                (t for t in (self.waiting[0][0] if self.waiting else None, flush) if t is not None),
                default=None,
            )
            try:
                got = self.done.get() if due is None else self.done.get(timeout=max(0.0, due - now))
            except queue.Empty:
                if flush is not None and time.monotonic() >= flush:
                    self.journal.flush()  # type: ignore[union-attr]  # (results wait no longer than that)
                continue
            if got[3] is _STOP:
                raise MapStopped
            return got

    def absorb(
        self, seq: int, offset: int, size: int, future: Future[ChunkResult]
    ) -> tuple[int, Slot | None]:
        """Take a finished part into its slot, re-running what a chunk-level failure left undone."""
        self.owners.pop(future, None)
        replayed = future in self.replayed
        self.replayed.discard(future)
        slot = self.slots.get(seq)
        if slot is None:  # dropped: its chunk comes after a failure
            return seq, None
        slot.parts -= 1
        if future.cancelled():
            raise CancelledError
        error, tb, result = future.exception(), None, None
        if error is None:
            result = future.result()
            error, tb = result.error, result.error_tb
        if error is not None:
            if isinstance(error, InitializerError):  # no item can run: the map cannot go on
                raise explained(error, tb, "parmap: raised while preparing a worker, before any item")
            self._split(seq, offset, size, error, tb)
            return seq, slot
        assert result is not None
        ran = len(result.values)
        self.sizer.observe(ran, result.elapsed)
        if self.journal is not None and not replayed:
            self.record(slot, offset, result)  # (first: a result it cannot take fails its item)
        slot.store(offset, result.values)
        final = [
            pos
            for pos, item_tb in result.failed.items()
            if not self.failed_item(seq, offset + pos, result.values[pos], item_tb)
        ]
        self.outstanding -= ran
        if ran < size and (self.job.keep_going or not final):  # stopped at its budget, or a retried failure
            offset, size = offset + ran, size - ran
            while size:  # the rest, in pieces sized from what is now known of the items' cost
                piece = min(size, self.sizer.piece(self.outstanding))
                self.submit(seq, offset, piece)
                offset, size = offset + piece, size - piece
        return seq, slot

    def record(self, slot: Slot, offset: int, result: ChunkResult) -> None:
        """Write a part's results to the journal (failures: once final, see failed_item)."""
        assert self.journal is not None
        values, keys, start = result.values, slot.keys, slot.chunk.start + offset
        ends = sorted({-1, *result.failed, len(values)})  # runs of results between the failures
        for before, after in itertools.pairwise(ends):
            lo, hi = before + 1, after
            if lo >= hi:
                continue
            part_keys = None if keys is None else keys[offset + lo : offset + hi]
            for pos, error in self.journal.record(start + lo, part_keys, values[lo:hi]).items():
                values[lo + pos] = error  # its result cannot be pickled: that item fails
                result.failed[lo + pos] = None

    def budget(self) -> float:
        """Seconds a worker may spend on a part: short while nothing is known of the items' cost."""
        target = self.adapter.chunk_seconds
        return 2 * target if self.sizer.measured else target / 5

    def _split(self, seq: int, offset: int, size: int, error: BaseException, tb: str | None) -> None:
        pos = getattr(error, "position", None)
        if size == 1:
            pos = 0
        if pos is None or not 0 <= pos < size:
            lo, hi = getattr(error, "span", None) or (0, size)
            if not 0 <= lo < hi <= size:
                lo, hi = 0, size
            # Which item? Run the suspects one by one to find out; if none fails again (a
            # worker killed from outside), the map goes on and this warning is all that is left.
            log.warning("parmap: %s; running those items again one at a time", error)
            if lo:
                self.submit(seq, offset, lo)
            for i in range(lo, hi):
                self.submit(seq, offset + i, 1)
            if hi < size:
                self.submit(seq, offset + hi, size - hi)
            return
        retried = self.failed_item(seq, offset + pos, error, tb)
        if pos:
            self.submit(seq, offset, pos)
        if (self.job.keep_going or retried) and pos + 1 < size:
            self.submit(seq, offset + pos + 1, size - pos - 1)
