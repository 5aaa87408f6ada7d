"""Chunks: consecutive items of the input, how they are pickled, and how a worker rebuilds them.

A chunk's items cross to a process worker pickled (:func:`dump_items`, which names an item that
cannot be pickled), or not at all when the worker was forked holding the input
(:class:`SharedItems`, :func:`inherited_chunk`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from parmap._errors import SerializationError
from parmap._result import describe_exception
from parmap._serialize import dumps, loads

__all__ = ["Chunk", "SharedItems", "dump_items", "inherited_chunk", "rebuild_chunk"]


@dataclass(slots=True)
class Chunk:
    """Consecutive items of the input; ``start`` is the input index of the first.

    ``broken`` says why the items could not be unpickled where the chunk arrived (then
    ``items`` is empty and running the chunk reports that as a chunk-level error).
    ``budget``: seconds after which a worker may stop between items and return the values
    of those it ran (the driver runs the rest as a new part); 0 runs every item.
    ``attempt``: which try of its items this is (1: the first; a retry is a chunk of one item),
    what ``parmap.attempt()`` returns in ``fn``.
    """

    start: int
    items: Sequence[Any]  # a list, or SharedItems for a pool whose workers hold the input
    broken: str | None = None
    budget: float = 0.0
    attempt: int = 1

    def __reduce__(self) -> tuple[Callable[[int, bytes, int], Chunk], tuple[int, bytes, int]]:
        # Any executor that pickles chunks gets parmap's pickling: cloudpickle where pickle fails.
        return rebuild_chunk, (self.start, dump_items(self), self.attempt)


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


def rebuild_chunk(start: int, items: bytes, attempt: int = 1) -> Chunk:
    """Unpickle a chunk's items; a failure makes a broken chunk instead of killing the worker."""
    try:
        return Chunk(start, loads(items), attempt=attempt)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a __reduce__ may raise anything
        why = f"the items could not be unpickled in the worker: {describe_exception(exc)}"
        return Chunk(start, [], why, attempt=attempt)
