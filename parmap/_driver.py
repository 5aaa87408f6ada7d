"""The driver of one map: chunks in flight, order, and what a failure looks like to the caller.

It runs in the caller's thread, as a generator, so nothing happens until results are asked
for, and it reads the input only as far as a bounded window of chunks needs::

    items ──islice──► Chunk ──adapter.submit──► Future ─done─► SimpleQueue ─► caller's thread
       ▲                                                                          │
       └──────────── read more only when a chunk has been delivered ◄─────────────┘

The window counts chunks submitted and not yet delivered (with ``ordered=True`` a finished
chunk waits in it for those before it), so memory stays bounded by ``window x chunk size``
whatever the input's length. Every exit (exhausted, an exception, ``close()``, garbage
collection) leaves through the ``finally`` that cancels what is outstanding and shuts down
an adapter the driver started.
"""

from __future__ import annotations

import functools
import queue
import reprlib
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from itertools import islice
from typing import Any

from parmap._adapters import Adapter
from parmap._chunking import ChunkSizer
from parmap._errors import RemoteTraceback
from parmap._task import Chunk, ChunkResult, Job

__all__ = ["drive"]

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 120


def _add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note`` on 3.11+; on 3.10 the note is kept in ``__notes__`` all the same."""
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        try:
            exc.__notes__ = notes  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__
            return
    notes.append(note)


def _failure(chunk: Chunk, result: ChunkResult) -> BaseException:
    """The exception of a failed item, with its input index, its value and the worker traceback."""
    exc = result.error
    assert exc is not None
    pos = len(result.values)
    if exc.__traceback__ is None and result.error_tb and exc.__cause__ is None:
        exc.__cause__ = RemoteTraceback(result.error_tb)  # it came from another process
    if pos < len(chunk.items):
        item = _repr.repr(chunk.items[pos])
        _add_note(exc, f"parmap: raised on item {chunk.start + pos} of the input: {item}")
    return exc


def _deliver(chunk: Chunk, future: Future[ChunkResult]) -> Iterator[tuple[int, list[Any]]]:
    """Yield a finished chunk's values, then raise its failure if it has one."""
    if future.cancelled():
        raise CancelledError
    exc = future.exception()
    if exc is not None:
        raise exc
    result = future.result()
    yield chunk.start, result.values
    if result.error is not None:
        raise _failure(chunk, result)


def _notify(done: queue.SimpleQueue[int], seq: int, _: Future[ChunkResult]) -> None:
    """Done-callback: runs in whichever thread finished the future; only enqueues."""
    done.put(seq)


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def drive(  # noqa: C901 - the one loop of the library; split, it would need shared state
    adapter: Adapter,
    job: Job,
    items: Iterable[Any],
    *,
    chunksize: int | None,
    ordered: bool,
    owned: bool,
) -> Generator[tuple[int, list[Any]], None, None]:
    """Run ``job`` over ``items`` on ``adapter``; yield ``(start, values)`` batches.

    ``start`` is the input index of ``values[0]``. Batches come in input order when
    ``ordered``, else as chunks finish. The first failing item (in delivery order) ends the map:
    the values before it are yielded, then its exception is raised. ``owned``: the driver
    starts the adapter and shuts it down on every way out.
    """
    source = iter(items)
    sizer = ChunkSizer(
        workers=adapter.workers, target=adapter.chunk_seconds, fixed=chunksize, total=_length(items)
    )
    window = 2 * adapter.workers
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    outstanding: dict[int, tuple[Chunk, Future[ChunkResult]]] = {}
    finished: set[int] = set()  # sequence numbers done but waiting for earlier ones
    next_seq = next_out = index = 0
    exhausted = clean = False
    if owned:
        adapter.start()
    try:
        while True:
            while not exhausted and len(outstanding) < window:
                batch = list(islice(source, sizer.next_size()))
                if not batch:
                    exhausted = True
                    break
                sizer.taken(len(batch))
                chunk = Chunk(index, batch)
                index += len(batch)
                future = adapter.submit(job, chunk)
                outstanding[next_seq] = (chunk, future)
                future.add_done_callback(functools.partial(_notify, done, next_seq))
                next_seq += 1
            if not outstanding:
                break
            seq = done.get()
            chunk, future = outstanding[seq]
            if not future.cancelled() and future.exception() is None:
                result = future.result()
                sizer.observe(len(result.values) + (result.error is not None), result.elapsed)
            if not ordered:
                del outstanding[seq]
                yield from _deliver(chunk, future)
                continue
            finished.add(seq)
            while next_out in finished:
                finished.remove(next_out)
                chunk, future = outstanding.pop(next_out)
                next_out += 1
                yield from _deliver(chunk, future)
        clean = True
    finally:
        for _, future in outstanding.values():
            future.cancel()
        if owned:
            adapter.shutdown(wait=clean, cancel=not clean)
