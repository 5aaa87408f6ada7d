"""What a worker made of a chunk (:class:`ChunkResult`), and exceptions made fit to travel.

An exception crosses back to the caller only in a form the caller can rebuild
(:func:`portable_exception`), with its traceback as text; a result that cannot be pickled
becomes a SerializationError in its item's place.
"""

from __future__ import annotations

import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parmap._errors import SerializationError
from parmap._serialize import dumps, loads

__all__ = [
    "COROUTINE_HINT",
    "ChunkResult",
    "describe_exception",
    "format_exception",
    "portable_exception",
    "rebuild_result",
]


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
                    if isinstance(value, types.CoroutineType):  # (a lambda around an async def)
                        value.close()  # never run: no "never awaited" warning in the worker
                        msg += f"; {COROUTINE_HINT}"
                    values[pos] = SerializationError(msg)
                    failed[pos] = ""
            return dumps((*head, values, failed, self.elapsed, error, self.error_tb))


#: What to do about a plain fn that returns coroutines: said by every mode that meets one.
COROUTINE_HINT = (
    "fn returned a coroutine, which only mode='async' awaits: make fn itself an async def (a lambda "
    "around one: use functools.partial of the async def) and use mode='async', or parmap.amap"
)


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
