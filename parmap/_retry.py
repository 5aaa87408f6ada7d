"""Retries: which failures of an item are tried again, how long to wait first, and what to say.

The driver asks :meth:`Retries.wants` for each failure of an item. A retry is a one-item part
sent again after :meth:`Retries.delay` seconds; while it waits, no worker is held (the driver
keeps it in a heap, and other items run). What ``fn`` sees of it is ``parmap.attempt()``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from parmap._errors import ItemTimeoutError, ParmapError, WorkerDiedError

__all__ = ["MAX_DELAY", "Retries", "RetryOn", "check_retries", "never_retried"]

#: Seconds the wait before a try never exceeds, however many tries came before.
MAX_DELAY = 60.0
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool] | None


def never_retried(exc: BaseException) -> bool:
    """What no second try can change, whatever ``retry_on`` says: the caller stopping the map."""
    return not isinstance(exc, Exception)  # KeyboardInterrupt, SystemExit, GeneratorExit


def _default(exc: BaseException) -> bool:
    """What a second try can fix: fn's own exceptions, a worker's death, a timeout."""
    if isinstance(exc, WorkerDiedError | ItemTimeoutError):
        return True
    return not isinstance(exc, ParmapError)  # not SerializationError, InitializerError, ...


class Retries:
    """A map's retry policy: ``retries`` more tries of a failed item, for failures ``retry_on`` picks."""

    __slots__ = ("_match", "delay_s", "retries")

    def __init__(self, retries: int, retry_on: RetryOn = None, retry_delay: float = 0.1) -> None:
        self.retries = retries
        self.delay_s = retry_delay
        self._match: Callable[[BaseException], bool]
        if retry_on is None:
            self._match = _default
        elif isinstance(retry_on, type | tuple):
            kinds = retry_on
            self._match = lambda exc: isinstance(exc, kinds)
        else:
            self._match = retry_on

    def wants(self, exc: BaseException, tries: int) -> bool:
        """Whether an item that failed with ``exc`` after ``tries`` tries is tried again."""
        return tries <= self.retries and not never_retried(exc) and bool(self._match(exc))

    def delay(self, tries: int) -> float:
        """Seconds before the try after ``tries`` tries: doubling from ``retry_delay``, jittered, capped.

        The jitter (between half and all of the doubled delay) keeps items that failed together
        (a server that dropped every connection at once) from all coming back at once.
        """
        if self.delay_s <= 0:
            return 0.0
        doubled = self.delay_s * 2.0 ** min(tries - 1, 64)
        return min(MAX_DELAY, doubled) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrets


def check_retries(retries: object, retry_on: object, retry_delay: object) -> Retries | None:
    """The policy for ``pmap``'s options, None without retries; a clear error for a bad value."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        msg = f"retries must be a whole number of tries, 0 or more, got {retries!r}"
        raise ValueError(msg)
    if (
        isinstance(retry_delay, bool)
        or not isinstance(retry_delay, int | float)
        or not retry_delay >= 0  # (NaN too)
        or math.isinf(retry_delay)
    ):
        msg = f"retry_delay must be a number of seconds, 0 or more, got {retry_delay!r}"
        raise ValueError(msg)
    if not _valid_retry_on(retry_on):
        msg = (
            "retry_on must be an exception type, a tuple of them, or a function of the exception "
            f"that returns whether to try again, got {retry_on!r}"
        )
        raise TypeError(msg)
    if retries == 0:
        return None
    return Retries(retries, retry_on, float(retry_delay))  # type: ignore[arg-type]


def _valid_retry_on(value: Any) -> bool:
    def is_kind(kind: object) -> bool:
        return isinstance(kind, type) and issubclass(kind, BaseException)

    if value is None or is_kind(value):
        return True
    if isinstance(value, tuple):
        return all(is_kind(kind) for kind in value)
    return callable(value)
