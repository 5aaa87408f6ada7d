"""Per-item timers for ``timeout=``, read off the progress marks that workers write."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["Stopwatch", "poll_interval"]


def poll_interval(timeouts: Iterable[float]) -> float | None:
    """How often to look at the marks: a tenth of the shortest timeout, within [5 ms, 250 ms]."""
    shortest = min(timeouts, default=None)
    if shortest is None:
        return None
    # Compared before dividing: an int too large for a float (10**400) cannot be divided.
    return 0.25 if shortest >= 2.5 else max(0.005, shortest / 10)


class Stopwatch:
    """Knows since when each worker has shown the same mark (the same item of the same chunk).

    An item counts as started when its mark is first seen, so it may be caught up to one poll
    interval late; never early.
    """

    def __init__(self) -> None:
        self._seen: dict[Hashable, tuple[Hashable, float]] = {}

    def overdue(self, worker: Hashable, mark: Hashable, timeout: float, now: float) -> bool:
        """True when ``worker`` has shown ``mark`` for longer than ``timeout`` seconds (inf: never)."""
        seen = self._seen.get(worker)
        if seen is None or seen[0] != mark:
            self._seen[worker] = (mark, now)
            return False
        return now - seen[1] > timeout

    def forget(self, worker: Hashable) -> None:
        """``worker`` is idle or gone."""
        self._seen.pop(worker, None)
