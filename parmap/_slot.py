"""One chunk of a map's input as the driver tracks it, from its first part to its delivery.

A :class:`Slot` is completed by one or more parts (re-runs after a failure, retries); it holds
the values in input order, which items failed for good, and what each try of an item raised.
The exceptions a caller sees are dressed here: the input index, the worker's traceback as the
cause, and the notes.
"""

from __future__ import annotations

import reprlib
from collections.abc import Generator
from typing import Any

from parmap._chunk import Chunk
from parmap._errors import ParmapError, RemoteTraceback

__all__ = ["NOT_RUN", "Slot", "add_note", "deliver", "explained"]

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 120
NOT_RUN: Any = object()  # an item after a failure that stopped its chunk (on_error="raise")


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note`` on 3.11+; on 3.10 the note is kept in ``__notes__`` all the same."""
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        try:
            exc.__notes__ = notes  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__
            return
    notes.append(note)


def explained(exc: BaseException, tb: str | None, note: str) -> BaseException:
    """``exc`` with the worker-side traceback as its cause (if it crossed processes) and a note."""
    if tb and exc.__traceback__ is None and exc.__cause__ is None:
        exc.__cause__ = RemoteTraceback(tb)
    add_note(exc, note)
    return exc


class Slot:
    """One chunk of the input, completed by one or more parts (re-runs after a failure)."""

    __slots__ = ("chunk", "failed", "keys", "parts", "tries", "values")

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.values: list[Any] = []  # filled in place, or replaced by the first complete part
        self.failed: set[int] = set()  # positions whose value is the exception of that item
        self.parts = 0  # parts in flight, and retries waiting for their time
        self.tries: dict[int, list[BaseException]] | None = None  # position -> what each try raised
        self.keys: list[str] | None = None  # each item's key in the map's journal, if it has one

    def store(self, offset: int, values: list[Any]) -> None:
        """Put a part's values in place; a whole chunk's list is taken as it is (no copy)."""
        size = len(self.chunk.items)
        if not self.values and offset == 0 and len(values) == size:
            self.values = values
            return
        if len(self.values) != size:
            self.values = [NOT_RUN] * size
        self.values[offset : offset + len(values)] = values

    def fail(self, pos: int, exc: BaseException, tb: str | None) -> None:
        item = _repr.repr(self.chunk.items[pos])
        if isinstance(exc, ParmapError):  # what the caller reads: an input index, no offsets
            exc.index = self.chunk.start + pos
            exc.__dict__.pop("position", None)
            exc.__dict__.pop("span", None)
        if len(self.values) != len(self.chunk.items):
            self.values = [NOT_RUN] * len(self.chunk.items)
        self.values[pos] = explained(
            exc, tb, f"parmap: raised on item {self.chunk.start + pos} of the input: {item}"
        )
        earlier = None if self.tries is None else self.tries.get(pos)
        if earlier:
            raised = "; ".join(f"try {n}: {type(e).__name__}: {e}" for n, e in enumerate(earlier, 1))
            add_note(exc, f"parmap: tried {len(earlier) + 1} times; the earlier tries raised: {raised}")
        self.failed.add(pos)

    def tried(self, pos: int, exc: BaseException) -> int:
        """Record that the item at ``pos`` failed with ``exc``; how many tries it has had."""
        if self.tries is None:
            self.tries = {}
        errors = self.tries.setdefault(pos, [])
        errors.append(exc)
        return len(errors)


def deliver(slot: Slot, *, keep_going: bool) -> Generator[tuple[int, list[Any]], None, None]:
    """Yield a complete slot's values; with on_error="raise", stop at its first failure."""
    if not slot.failed or keep_going:
        yield slot.chunk.start, slot.values
        return
    first = min(slot.failed)
    if first:
        yield slot.chunk.start, slot.values[:first]
    raise slot.values[first]
