"""The driver of one map: the generator that the caller's results come out of.

It runs in the caller's thread, as a generator, so nothing happens until results are asked
for, and it reads the input only as far as a bounded window of chunks needs::

    items ──islice──► Chunk ──adapter.submit──► Future ─done─► SimpleQueue ─► caller's thread
       ▲                                                                          │
       └──────────── read more only when a chunk has been delivered ◄─────────────┘

The window counts chunks submitted and not yet delivered (with ``ordered=True`` a finished
chunk waits in it for those before it), so memory stays bounded by ``window x chunk size``
whatever the input's length. A map that returns a list keeps every result anyway: there, a
finished chunk leaves the window at once, and no worker waits for one that is late. What a
map holds between its futures and this generator (chunks, parts, failures, retries, the
journal) is a :class:`~parmap._map.MapState`.

Every exit (exhausted, an exception, ``close()``, garbage collection) leaves through the
``finally`` that cancels what is outstanding, shuts down an adapter the driver started and
writes what the journal holds.
"""

from __future__ import annotations

import itertools
import logging
import os
import types
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import wait
from typing import Any, Literal, cast

from parmap._adapters import Adapter
from parmap._chunking import ChunkSizer
from parmap._claims import claim, release
from parmap._job import Job
from parmap._journal import MapJournal, identity
from parmap._map import MapState, Stop
from parmap._result import COROUTINE_HINT
from parmap._retry import Retries
from parmap._slot import Slot, deliver

__all__ = ["Use", "drive", "input_length"]

#: How a map uses its adapter. "own": parmap made it for this map, which alone uses it: the map
#: gives it the one-call hints (expect, share_input, drain), starts it and shuts it down.
#: "claim": the caller's adapter instance: started for the map if it is not running, and shut
#: down by the last map that claimed it (see _claims.py). "borrow": used as it is (an executor).
Use = Literal["own", "claim", "borrow"]

log = logging.getLogger("parmap")


def input_length(items: Iterable[Any]) -> int | None:
    """``len(items)`` when the input has one (a list, a range), else None (a generator)."""
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


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
    stop: Stop | None = None,
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
    matched (None: by input index). ``stop``: set from another thread, it ends the map at its
    next wait for a result (:class:`~parmap._map.MapStopped` is raised from here, after the
    cleanup every way out has).
    """
    total = input_length(items)
    source = iter(items) if source is None else source  # first: bad input starts no worker
    started: list[Sequence[Any] | None] = []  # what _start gave, if this map started the adapter

    def start() -> None:
        started.append(_start(adapter, items, total, chunksize, fixed_input=fixed_input))

    if use == "claim":
        claim(adapter, start)  # (an instance that is not running: this map starts it)
    state: MapState | None = None
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
            first=adapter.first_chunk,
        )
        state = MapState(
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
            stop=stop,
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
    state: MapState, source: Iterator[Any], *, ordered: bool
) -> Generator[tuple[int, list[Any]], None, None]:
    """The map's loop: keep the window full, take results as they finish, deliver them."""
    window = 2 * state.adapter.workers
    keep_going = state.job.keep_going
    exhausted = False
    checked = state.adapter.runs_coroutines  # (there, fn's coroutines are awaited)
    while True:
        exhausted = exhausted or not state.fill(source, window)
        if not state.slots:
            return
        seq, slot = state.absorb(*state.next_done())
        if slot is None:
            continue
        if not checked and slot.values:
            checked = True  # the first result tells: fn returns coroutines, or it does not
            if isinstance(slot.values[0], types.CoroutineType):
                raise _coroutine_results(state, slot)
        if slot.failed and not keep_going:
            exhausted = True  # the map ends at this failure: read no more input
            if ordered:
                state.drop_after(seq)
        for ready in state.deliverable(seq, slot, ordered=ordered):
            yield from deliver(ready, keep_going=keep_going)


def _coroutine_results(state: MapState, slot: Slot) -> TypeError:
    """The error for a plain fn that returns coroutines (a lambda around an ``async def``).

    Those coroutines would never run: they are closed here, none left to warn "never awaited".
    """
    values = [held.values for held in state.slots.values()]
    running = [future for future in state.owners if not future.cancel()]  # (those not started never run)
    wait(running, timeout=5)  # making a coroutine takes no time: these end at once
    values += [f.result().values for f in running if f.done() and f.exception() is None]
    for value in itertools.chain.from_iterable(values):
        if isinstance(value, types.CoroutineType):
            value.close()
    name = getattr(state.job.fn, "__qualname__", None) or repr(state.job.fn)
    mode = type(state.adapter).__name__
    msg = (
        f"fn {name} returned a coroutine (item {slot.chunk.start} of the input), in {mode}: {COROUTINE_HINT}"
    )
    return TypeError(msg)
