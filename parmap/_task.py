"""What travels between the driver and the workers: a job (one per call), chunks and results.

A :class:`Job` is pickled at most once per call: its payload is computed on first use and
cached, and workers keep the rebuilt job by token, so ``fn`` is unpickled once per worker.
"""

from __future__ import annotations

import itertools
import os
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from parmap._errors import SerializationError
from parmap._serialize import dumps, dumps_by_value, dumps_code, loads

__all__ = [
    "Chunk",
    "ChunkResult",
    "Job",
    "SharedItems",
    "format_exception",
    "inherited_chunk",
    "portable_exception",
    "rebuild_chunk",
    "rebuild_result",
    "restore_job",
]

_tokens = itertools.count()
_CACHE_SIZE = 8  # a worker serves one call at a time, a reusable pool a few in a row


class Job:
    """``fn`` and how to call it, shared by every chunk of one ``pmap`` call.

    Args:
        fn: the function to apply.
        star: call ``fn(*item)`` instead of ``fn(item)``.
        initializer: run once in each worker (thread or process) before its first item.
        initargs: arguments of ``initializer``.
        keep_going: ``on_error="return"``: a failed item does not stop its chunk.
        timeout: seconds one item may run (enforced by adapters that can).
        lock: what ``parmap.lock()`` returns in ``fn`` (from :meth:`Adapter.share_lock`).
    """

    __slots__ = (
        "_payload",
        "fn",
        "initargs",
        "initializer",
        "keep_going",
        "lock",
        "star",
        "timeout",
        "token",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        star: bool = False,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        keep_going: bool = False,
        timeout: float | None = None,
        lock: object = None,
    ) -> None:
        self.fn = fn
        self.star = star
        self.initializer = initializer
        self.initargs = initargs
        self.keep_going = keep_going  # on_error="return": run every item of a chunk
        self.timeout = timeout  # seconds per item, enforced by adapters that can
        self.lock = lock  # what parmap.lock() returns in fn: from Adapter.share_lock
        self.token = f"{os.getpid()}-{id(self):x}-{next(_tokens)}"
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        """The pickled job, computed once (cloudpickle: lambdas and closures travel too)."""
        if self._payload is None:
            options = (self.star, self.keep_going, self.timeout, self.lock)
            job = (self.fn, self.initializer, self.initargs, options)
            plain = not self.initargs and (self.lock is None or isinstance(self.lock, str))
            self._payload = dumps_code(job, self.fn, self.initializer) if plain else dumps_by_value(job)
        return self._payload

    def __reduce__(self) -> tuple[Callable[[str, bytes | None], Job], tuple[str, bytes]]:
        return restore_job, (self.token, self.payload())


_jobs: OrderedDict[str, Job] = OrderedDict()
_jobs_lock = threading.Lock()


def restore_job(token: str, payload: bytes | None) -> Job:
    """Rebuild a job in a worker, unpickling its payload only the first time a token is seen.

    ``payload`` may be None when the sender knows this worker has the job already.
    """
    with _jobs_lock:
        job = _jobs.get(token)
        if job is not None:
            _jobs.move_to_end(token)
            return job
    if payload is None:
        msg = f"job {token} is unknown in this worker (its fn failed to load earlier)"
        raise LookupError(msg)
    fn, initializer, initargs, (star, keep_going, timeout, lock) = loads(payload)
    job = Job(fn, star=star, initializer=initializer, initargs=initargs)
    job.keep_going, job.timeout, job.lock = keep_going, timeout, lock
    job.token = token
    job._payload = payload  # noqa: SLF001 - re-pickling it (nested executors) stays free
    with _jobs_lock:
        _jobs[token] = job
        while len(_jobs) > _CACHE_SIZE:
            _jobs.popitem(last=False)
    return job


@dataclass(slots=True)
class Chunk:
    """Consecutive items of the input; ``start`` is the input index of the first.

    ``broken`` says why the items could not be unpickled where the chunk arrived (then
    ``items`` is empty and running the chunk reports that as a chunk-level error).
    ``budget``: seconds after which a worker may stop between items and return the values
    of those it ran (the driver runs the rest as a new part); 0 runs every item.
    """

    start: int
    items: Sequence[Any]  # a list, or SharedItems for a pool whose workers hold the input
    broken: str | None = None
    budget: float = 0.0

    def __reduce__(self) -> tuple[Callable[[int, bytes], Chunk], tuple[int, bytes]]:
        # Any executor that pickles chunks gets parmap's pickling: cloudpickle where pickle fails.
        return rebuild_chunk, (self.start, dump_items(self))


def _unpicklable_item(chunk: Chunk) -> SerializationError:
    """The error for a chunk that could not be pickled, naming (by position) the first bad item."""
    for pos, item in enumerate(chunk.items):
        try:
            dumps(item)
        except (KeyboardInterrupt, GeneratorExit):  # noqa: PERF203 - only runs once pickling failed
            raise
        except BaseException as exc:  # noqa: BLE001
            error = SerializationError(
                f"item {chunk.start + pos} could not be pickled to send it to a worker process: "
                f"{type(exc).__name__}: {exc}"
            )
            error.position = pos
            return error
    return SerializationError(
        f"items {chunk.start}..{chunk.start + len(chunk.items) - 1} could not be pickled"
    )


def dump_items(chunk: Chunk) -> bytes:
    """Pickle a chunk's items; if one cannot be, raise a SerializationError naming it (by position)."""
    try:
        return dumps(chunk.items)
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException:  # noqa: BLE001 - even SystemExit from a __reduce__ is this item's error
        raise _unpicklable_item(chunk) from None


class SharedItems(Sequence[Any]):
    """Items ``lo .. hi - 1`` of the caller's input, left where they are.

    A process pool that forked its workers from the caller after seeing the input gets these
    instead of lists: the workers read the items from their own copy of the input, so the
    caller neither touches (each touch of a page copies it after a fork) nor pickles them.
    Pickled, it is the list of its items.
    """

    __slots__ = ("hi", "lo", "seq")

    def __init__(self, seq: Sequence[Any], lo: int, hi: int) -> None:
        self.seq, self.lo, self.hi = seq, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            return SharedItems(self.seq, self.lo + lo, self.lo + max(lo, hi))
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            msg = "SharedItems index out of range"
            raise IndexError(msg)
        return self.seq[self.lo + position]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.seq[self.lo : self.hi])

    def __reduce__(self) -> tuple[Any, ...]:
        return list, (), None, iter(self)

    def __repr__(self) -> str:
        return f"SharedItems({self.lo}..{self.hi - 1} of a {type(self.seq).__name__})"


# Types whose values pickle and unpickle to equal, independent values: an item of these needs
# no round trip to behave as if it had travelled through a pipe.
_PLAIN = frozenset((int, float, complex, str, bytes, bool, type(None)))


def inherited_chunk(seq: Sequence[Any], start: int, size: int) -> Chunk:
    """In a worker that holds a copy of the input: the chunk of ``size`` items at ``start``.

    Plain items (numbers, strings, bytes) are used as they are; any other chunk makes the
    pickle round trip it would have made through the pipe, so that it behaves, and fails
    (an unpicklable item raises the SerializationError that names it), exactly the same.
    """
    part = seq[start : start + size]
    items = part if type(part) is list else list(part)
    if type(seq) is range or set(map(type, items)) <= _PLAIN:  # a range holds ints only
        return Chunk(start, items)
    return rebuild_chunk(start, dump_items(Chunk(start, items)))


def rebuild_chunk(start: int, items: bytes) -> Chunk:
    """Unpickle a chunk's items; a failure makes a broken chunk instead of killing the worker."""
    try:
        return Chunk(start, loads(items))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a __reduce__ may raise anything
        return Chunk(start, [], f"the items could not be unpickled in the worker: {describe_exception(exc)}")


@dataclass(slots=True)
class ChunkResult:
    """What a worker made of a chunk.

    ``values`` holds one entry per item run, in order. An item whose ``fn`` raised has its
    exception in its place, and its position in ``failed`` (with the worker's traceback text,
    kept for exceptions that cross a process boundary). Unless the job keeps going after
    failures, a chunk stops at its first failure, so ``values`` may be shorter than the chunk.
    ``error`` is set when the chunk as a whole failed (its items could not be unpickled, the
    initializer raised, ``fn`` could not be loaded); ``values`` is then empty.
    """

    values: list[Any] = field(default_factory=list)
    failed: dict[int, str | None] = field(default_factory=dict)
    elapsed: float = 0.0  # seconds the worker spent on the chunk, for chunk sizing
    error: BaseException | None = None
    error_tb: str | None = None

    def __reduce__(self) -> tuple[Callable[[bytes], ChunkResult], tuple[bytes]]:
        return rebuild_result, (self.encode(),)

    def encode(self, *head: Any) -> bytes:
        """``(*head, values, failed, elapsed, error, error_tb)`` pickled, in a form the caller can load.

        Tracebacks do not pickle: their text is kept for the caller (made here, only when
        needed), and an exception travels only in a form the caller can rebuild; a result that
        cannot be pickled is replaced by a SerializationError naming its type.
        """
        values, failed = (list(self.values) if self.failed else self.values), {}
        for pos, tb in self.failed.items():
            failed[pos] = tb or format_exception(values[pos])
            values[pos] = portable_exception(values[pos])
        error = None if self.error is None else portable_exception(self.error)
        try:
            return dumps((*head, values, failed, self.elapsed, error, self.error_tb))
        except (Exception, SystemExit):  # noqa: BLE001 - a result cannot be pickled: which one?
            values = list(values)
            for pos, value in enumerate(values):
                why = None if pos in failed else _pickling_error(value)
                if why is not None:
                    reason = describe_exception(why)
                    msg = f"the result of fn ({type(value).__name__}) could not be pickled: {reason}"
                    values[pos] = SerializationError(msg)
                    failed[pos] = ""
            return dumps((*head, values, failed, self.elapsed, error, self.error_tb))


def format_exception(exc: BaseException) -> str:
    """The traceback text of ``exc``, as the caller will see it under a RemoteTraceback."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def rebuild_result(data: bytes) -> ChunkResult:
    """Unpickle a chunk's result in the caller; a failure becomes the chunk's error, not a crash."""
    try:
        return ChunkResult(*loads(data))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a __reduce__ may raise anything
        return ChunkResult(
            error=SerializationError(
                f"the results could not be unpickled in the caller: {describe_exception(exc)}"
            )
        )


def _pickling_error(value: object) -> BaseException | None:
    try:
        dumps(value)
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        return exc
    return None


def describe_exception(exc: BaseException) -> str:
    """``TypeName: message``, for error messages that quote another error."""
    return f"{type(exc).__name__}: {exc}"


def portable_exception(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling and unpickling, else a SerializationError describing it."""
    try:
        loads(dumps(exc))
    except (Exception, SystemExit) as why:  # noqa: BLE001 - whatever breaks, say so clearly
        reason = describe_exception(why)
        msg = f"fn raised {type(exc).__name__}({exc}), which could not be sent back to the caller: {reason}"
        return SerializationError(msg)
    return exc
