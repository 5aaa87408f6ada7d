"""``progress=``: a tqdm bar (the optional ``progress`` extra) that counts items, not chunks.

The bar is advanced once per delivered batch, in the caller's thread, so its cost does not grow
with the number of items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from parmap._extras import require

__all__ = ["check_progress", "progress_bar"]


def _tqdm() -> Any:
    return require("tqdm.auto", extra="progress", feature="progress=...").tqdm


def check_progress(progress: object) -> None:
    """Fail before any worker starts: a wrong type, or tqdm missing."""
    if progress is False or progress is None:
        return
    if not (progress is True or isinstance(progress, dict) or callable(getattr(progress, "update", None))):
        msg = f"progress must be True, False, a dict of tqdm options or a tqdm bar, got {progress!r}"
        raise TypeError(msg)
    if progress is True or isinstance(progress, dict):
        _tqdm()


@contextmanager
def progress_bar(progress: object, total: int | None) -> Iterator[Callable[[int], object] | None]:
    """Yield a function that advances the bar by n items (None without a bar); close a bar made here."""
    if progress is False or progress is None:
        yield None
        return
    if progress is True or isinstance(progress, dict):
        options = {"total": total, "unit": "item", **(progress if isinstance(progress, dict) else {})}
        bar = _tqdm()(**options)
        try:
            yield bar.update
        finally:
            bar.close()
        return
    bar = progress  # the caller's bar: fill in its total if it has none, and leave it open
    if getattr(bar, "total", None) is None and total is not None:
        bar.total = total  # type: ignore[attr-defined]
    yield bar.update  # type: ignore[attr-defined]
