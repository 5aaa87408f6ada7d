"""The driver of one map: chunks in flight, order, failures, and what the caller sees of them.

It runs in the caller's thread, as a generator, so nothing happens until results are asked
for, and it reads the input only as far as a bounded window of chunks needs::

    items ──islice──► Chunk ──adapter.submit──► Future ─done─► SimpleQueue ─► caller's thread
       ▲                                                                          │
       └──────────── read more only when a chunk has been delivered ◄─────────────┘

The window counts chunks submitted and not yet delivered (with ``ordered=True`` a finished
chunk waits in it for those before it), so memory stays bounded by ``window x chunk size``
whatever the input's length. A map that returns a list keeps every result anyway: there, a
finished chunk leaves the window at once, and no worker waits for one that is late.

Every exit (exhausted, an exception, ``close()``, garbage collection) leaves through the
``finally`` that cancels what is outstanding and shuts down an adapter the driver started.

A chunk can fail as a whole (its worker died, an item could not be unpickled). When the
adapter knows which item was running (``ParmapError.position``), that item alone gets the
error and the rest of the chunk runs again as a new part; when it does not, the chunk runs again
one item at a time, which isolates the culprit. Items of such a chunk may therefore run twice.

With ``journal=``, each chunk read is first looked up in the journal (``_journal.py``): the
items recorded as done are not sent, their recorded values complete the chunk as a part of
its own (delivered in place, as any other); every other item's result, and every final
failure, is recorded as it is absorbed.

With ``retries=``, an item that failed (by itself or with its worker) is tried again as a part
of its own, after a delay spent in a heap of the driver's, not in a worker: the map's loop
waits for the next result or the next retry that falls due, whichever comes first. Its chunk
stays in the window (it is not delivered) until the item succeeds or has no tries left.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import queue
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from itertools import islice
from typing import Any, Literal, cast

from parmap._adapters import Adapter
from parmap._chunk import Chunk, SharedItems
from parmap._chunking import ChunkSizer
from parmap._claims import claim, release
from parmap._errors import InitializerError
from parmap._job import Job
from parmap._journal import MapJournal, identity
from parmap._result import ChunkResult
from parmap._retry import Retries
from parmap._slot import Slot, deliver, explained

__all__ = ["Use", "drive", "input_length"]

#: How a map uses its adapter. "own": parmap made it for this map, which alone uses it: the map
#: gives it the one-call hints (expect, share_input, drain), starts it and shuts it down.
#: "claim": the caller's adapter instance: started for the map if it is not running, and shut
#: down by the last map that claimed it (see _claims.py). "borrow": used as it is (an executor).
Use = Literal["own", "claim", "borrow"]

log = logging.getLogger("parmap")


def _notify(
    done: queue.SimpleQueue[tuple[int, int, int, Future[ChunkResult]]],
    key: tuple[int, int, int],
    future: Future[ChunkResult],
) -> None:
    """Done-callback: runs in whichever thread finished the future; only enqueues."""
    done.put((*key, future))


def input_length(items: Iterable[Any]) -> int | None:
    """``len(items)`` when the input has one (a list, a range), else None (a generator)."""
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


class _Map:
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
            if due is None:
                return self.done.get()
            try:
                return self.done.get(timeout=max(0.0, due - now))
            except queue.Empty:
                if flush is not None and time.monotonic() >= flush:
                    self.journal.flush()  # type: ignore[union-attr]  # (results wait no longer than that)

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


def _start(
    adapter: Adapter, items: Iterable[Any], total: int | None, chunksize: int | None, *, fixed_input: bool
) -> Sequence[Any] | None:
    """Start an adapter the map owns; the input if its workers will read chunks from a copy."""
    adapter.expect(total if chunksize is None or total is None else -(-total // chunksize))
    shared = None
    if fixed_input and type(items) in (list, tuple, range):  # exactly: a subclass may be anything
        seq = cast("Sequence[Any]", items)
        shared = seq if adapter.share_input(seq) else None
    adapter.start()  # first: some adapters (a cluster) know their worker count only once started
    return shared


def drive(
    adapter: Adapter,
    job: Job,
    items: Iterable[Any],
    *,
    chunksize: int | None,
    ordered: bool,
    use: Use,
    source: Iterator[Any] | None = None,
    fixed_input: bool = False,
    eager: bool = False,
    retries: Retries | None = None,
    journal: str | os.PathLike[str] | None = None,
    key: Callable[[Any], object] | None = None,
) -> Generator[tuple[int, list[Any]], None, None]:
    """Run ``job`` over ``items`` on ``adapter``; yield ``(start, values)`` batches.

    ``start`` is the input index of ``values[0]``. Batches come in input order when
    ``ordered``, else as chunks finish. With ``job.keep_going`` (on_error="return") a failed
    item's exception stands in its place; otherwise the first failing item in delivery order
    ends the map: the values before it are yielded, then its exception is raised. Once a
    failure is seen, no more input is read and (in order) the chunks after it are cancelled.
    ``use``: whether the driver starts the adapter and shuts it down on every way out (see
    :data:`Use`). ``source``: ``iter(items)``, when the caller made it already.
    ``fixed_input``: nothing can change ``items`` before the map ends (no caller code runs
    meanwhile), so an adapter whose workers get a copy of a list, tuple or range may read
    the chunks from there. ``eager``: the caller keeps every result (a list is returned), so
    memory need not be bounded by chunks that wait for earlier ones. ``retries``: the policy
    for items that fail (None: none is tried again). ``journal``: the file that records the
    results, and from which a resumed map takes those already done; ``key``: how its items are
    matched (None: by input index).
    """
    total = input_length(items)
    source = iter(items) if source is None else source  # first: bad input starts no worker
    started: list[Sequence[Any] | None] = []  # what _start gave, if this map started the adapter

    def start() -> None:
        started.append(_start(adapter, items, total, chunksize, fixed_input=fixed_input))

    if use == "claim":
        claim(adapter, start)  # (an instance that is not running: this map starts it)
    state: _Map | None = None
    clean = False
    book: MapJournal | None = None
    try:
        if journal is not None:  # (first: a journal this map cannot use starts no worker)
            keys = "input index" if key is None else f"key {identity(key)}"
            fn = identity(job.fn) + (" (star)" if job.star else "")
            book = MapJournal(journal, fn=fn, keys=keys, keyed=key is not None)
        if use == "own":
            start()
        shared = started[0] if started else None
        # Workers that hold the input are sent positions, not items: a chunk too large costs them
        # nothing to receive, and they stop it at its time budget. So sizes need no ramp.
        budgeted = shared is not None and chunksize is None
        sizer = ChunkSizer(
            workers=adapter.workers,
            target=adapter.chunk_seconds,
            fixed=chunksize,
            total=total,
            limit=adapter.max_chunk,
            budgeted=budgeted,
        )
        state = _Map(
            adapter,
            job,
            sizer,
            shared,
            eager=eager,
            owned=bool(started),
            budgeted=budgeted,
            retries=retries,
            journal=book,
            key=key,
        )
        yield from _run(state, source, ordered=ordered)
        clean = True
    finally:
        for future in state.owners if state is not None else ():
            future.cancel()
        try:
            if use == "own":
                adapter.shutdown(wait=clean, cancel=not clean)
            elif use == "claim":
                release(adapter, clean=clean)
        finally:
            if book is not None:
                book.close()  # what waits in memory is written, on every way out


def _run(
    state: _Map, source: Iterator[Any], *, ordered: bool
) -> Generator[tuple[int, list[Any]], None, None]:
    """The map's loop: keep the window full, take results as they finish, deliver them."""
    window = 2 * state.adapter.workers
    keep_going = state.job.keep_going
    exhausted = False
    while True:
        exhausted = exhausted or not state.fill(source, window)
        if not state.slots:
            return
        seq, slot = state.absorb(*state.next_done())
        if slot is None:
            continue
        if slot.failed and not keep_going:
            exhausted = True  # the map ends at this failure: read no more input
            if ordered:
                state.drop_after(seq)
        for ready in state.deliverable(seq, slot, ordered=ordered):
            yield from deliver(ready, keep_going=keep_going)
