"""Automatic chunk size: measure, then aim for a fixed amount of work per chunk.

The first chunks hold one item each, so a handful of heavy items (six gcd pairs) spread over
every worker. Each finished chunk reports the seconds its worker spent; from those the sizer
estimates the cost of one item and sizes the next chunks to take ``target`` seconds, so the
per-chunk overhead (a pipe round trip, a future) stays a small fraction of the work however
trivial the items are. Growth is limited per step (a cheap first item must not make one
giant chunk of expensive ones), and when the input's length is known no chunk takes more than
a share of what is left, so the last chunks shrink and the workers finish together.

``budgeted``: the workers stop a chunk that runs past its time budget and return what they
ran (``Chunk.budget``), the rest coming back as pieces (:meth:`ChunkSizer.piece`). A chunk
too large costs a round trip, not the balance, so neither the one-item start nor the growth
limit is needed: the first chunks are even shares of the input.
"""

from __future__ import annotations

__all__ = ["ChunkSizer"]

MAX_CHUNK = 100_000  # bounds the memory of one chunk whatever the estimate
# An input without len() may be unbounded and is consumed as a stream: smaller chunks keep the
# items and results in flight (window x chunk) to a few MB, at a negligible cost in round trips.
STREAM_MAX_CHUNK = 10_000
_GROWTH = 8  # at most this factor between consecutive chunk sizes
_TAIL_FLOOR = 20  # tail chunks hold at least target / this seconds of work
_DECAY = 0.75  # weight of the past in the per-item estimate: follows drifting costs


class ChunkSizer:
    """Chooses the size of the next chunk. Lives in the caller's thread, one per map."""

    __slots__ = (
        "_budgeted",
        "_ceiling",
        "_first",
        "_fixed",
        "_items",
        "_last",
        "_limit",
        "_remaining",
        "_seconds",
        "_target",
        "_workers",
    )

    def __init__(
        self,
        *,
        workers: int,
        target: float,
        fixed: int | None = None,
        total: int | None = None,
        limit: int | None = None,
        budgeted: bool = False,
        first: int = 1,
    ) -> None:
        self._fixed = fixed
        self._first = max(1, first)  # the size of chunks before any is measured
        self._budgeted = budgeted
        self._workers = max(1, workers)
        self._target = target
        self._remaining = total
        self._items = 0.0  # decayed count of items measured
        self._seconds = 0.0  # decayed seconds spent on them
        self._last = 1
        self._limit = limit or MAX_CHUNK  # the adapter's cap, which even a fixed size obeys
        self._ceiling = MAX_CHUNK if total is not None else STREAM_MAX_CHUNK

    def observe(self, items: int, seconds: float) -> None:
        """Record that a worker spent ``seconds`` on a chunk of ``items`` items."""
        if items > 0:
            self._items = self._items * _DECAY + items
            self._seconds = self._seconds * _DECAY + max(seconds, 0.0)

    @property
    def measured(self) -> bool:
        """True once a chunk's cost has been observed."""
        return self._items > 0

    def next_size(self) -> int:
        """How many items to put in the next chunk (always at least 1)."""
        if self._fixed is not None:
            size = self._fixed
        elif self._items == 0:
            size = self._first
            if self._budgeted and self._remaining is not None:
                size = max(1, self._remaining // (2 * self._workers))
        else:
            ideal, least = self._bounds()
            grown = ideal if self._budgeted else self._last * _GROWTH
            size = max(1, min(ideal, grown, self._ceiling))
            if self._remaining is not None:
                # Shrink towards the end so workers finish together, but not below a few ms of
                # work: a chunk of 3 trivial items costs a round trip and balances nothing.
                size = min(size, max(least, self._remaining // (2 * self._workers)), max(1, self._remaining))
        self._last = size = min(size, self._limit)
        return size

    def piece(self, outstanding: int) -> int:
        """The size of a piece of a chunk's rest, with ``outstanding`` items of the map not run."""
        if self._items == 0:  # (a part comes back having run at least one item: not expected)
            return max(1, min(outstanding // (2 * self._workers), self._limit))
        ideal, least = self._bounds()
        return max(1, min(ideal, max(least, outstanding // (2 * self._workers)), self._limit))

    def _bounds(self) -> tuple[int, int]:
        """Items per chunk that take ``target`` seconds, and the fewest worth a round trip."""
        per_item = self._seconds / self._items
        # Compared, not divided: a near-zero cost must not overflow int(target / cost).
        ideal = MAX_CHUNK if per_item * MAX_CHUNK <= self._target else int(self._target / per_item)
        floor = self._target / _TAIL_FLOOR
        least = MAX_CHUNK if per_item * MAX_CHUNK <= floor else max(1, int(floor / per_item))
        return ideal, least

    def taken(self, items: int) -> None:
        """Record that ``items`` more items left the input (for the tail rule)."""
        if self._remaining is not None:
            self._remaining = max(0, self._remaining - items)
