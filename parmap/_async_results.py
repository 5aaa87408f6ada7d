"""What ``amap`` returns: results for async code, with ``async for``, or all at once with ``await``.

The map's driver is the same generator as ``pmap(lazy=True)``'s; here it runs in a thread of
its own (a *feeder*), so that the event loop never blocks on it. Each batch of results reaches
the loop with one ``call_soon_threadsafe``; the consumer's coroutine waits on a loop future::

    feeder thread: driver ──batch──► call_soon_threadsafe ──► loop: buffer ──► async for / await
                     ▲                                                      │
                     └──── a credit back per batch taken (async for) ◄──────┘

Backpressure: iterated, the feeder holds a few credits and takes a batch from the driver only
with one, so a slow consumer keeps the driver suspended at its ``yield`` (it then reads no
more input), as ``lazy=True`` does. Awaited, every result is kept anyway: no credits.

Ways out: the consuming task cancelled (``task.cancel()``, ``asyncio.timeout``), ``aclose()``,
the ``async with`` block left, or the map dropped: the feeder's :class:`~parmap._map.Stop` is
set, the driver wakes and ends through its cleanup (workers stopped), and the consumer awaits
the feeder's end before it lets the cancellation go on (nothing is left behind).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import types
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import ExitStack
from typing import Any, TypeVar

from parmap._map import MapStopped, Stop
from parmap._progress import progress_bar

__all__ = ["AsyncMap"]

log = logging.getLogger("parmap")

R = TypeVar("R")

_CREDITS = 2  # batches the feeder may hand over ahead of an iterating consumer
_YIELD_EVERY = 256  # results an iterating consumer takes before letting other tasks run
_END: Any = object()
_JOIN_SECONDS = 5.0  # for a thread that has said it ends: a bound, never reached


class _Feeder:
    """The thread that runs the driver and hands its batches to the loop."""

    def __init__(
        self,
        batches: Generator[tuple[int, list[Any]], None, None],
        stop: Stop,
        loop: asyncio.AbstractEventLoop,
        *,
        bounded: bool,
    ) -> None:
        self.batches = batches
        self.stop_hook = stop
        self.loop = loop
        self.credits = threading.Semaphore(_CREDITS) if bounded else None
        # Touched on the loop's thread only:
        self.buffer: collections.deque[Any] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.finished: asyncio.Future[None] = loop.create_future()
        self.thread = threading.Thread(target=self._run, name="parmap-amap", daemon=True)

    def stop(self) -> None:
        """End the map (any thread, a finalizer too): the driver wakes and cleans up."""
        self.stop_hook.set()
        if self.credits is not None:
            self.credits.release()

    def stopping(self) -> bool:
        return self.stop_hook.requested

    def _credit(self) -> bool:
        """Wait until the consumer takes a batch (True), or nobody will any more (False)."""
        assert self.credits is not None
        while not self.credits.acquire(timeout=0.5):
            if self.stopping() or self.loop.is_closed():
                return False
        return not self.stopping()

    # -- on the feeder thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            for batch in self.batches:
                if self.stopping():
                    break
                self._post(batch)
                if self.credits is not None and not self._credit():
                    break
            else:
                self._post(_END)
        except MapStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - fn's error and every other: the consumer raises it
            if not self.stopping():
                self._post(exc)
        finally:
            try:
                self.batches.close()  # (after a break: the driver's cleanup runs now)
            except BaseException:
                log.exception("parmap: amap's map raised while it stopped")
            self._post(None, finished=True)

    def _post(self, got: Any, *, finished: bool = False) -> None:
        try:
            self.loop.call_soon_threadsafe(self._finish if finished else self._arrive, got)
        except RuntimeError:  # the loop is closed: nobody is left to take results
            self.stop_hook.set()

    # -- on the loop's thread ---------------------------------------------------------------

    def _arrive(self, got: Any) -> None:
        self.buffer.append(got)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self, _: object) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        self._arrive(_END)  # (a consumer still waiting wakes: the map has ended)


class AsyncMap(Coroutine[Any, Any, list[R]], AsyncIterator[R]):
    """What :func:`parmap.amap` returns: awaitable (the list of results) and an async iterator.

    ``await`` it for the list, or ``async for`` over it for each result as it comes; use it
    once, one way. It is a coroutine too (``asyncio.create_task(amap(...))`` works): as a
    task, it gives the list. The map starts at the first ``await`` or ``async for`` step.
    To leave an ``async for`` early, close it: ``async with amap(...) as results:`` (or
    ``await results.aclose()``); a map dropped unclosed is stopped when it is
    garbage-collected.
    """

    def __init__(
        self,
        batches: Generator[tuple[int, list[Any]], None, None],
        stop: Stop,
        loop: asyncio.AbstractEventLoop,
        *,
        callback: Callable[[Any], object] | None,
        indexed: bool,
        progress: object,
        total: int | None,
    ) -> None:
        self._batches: Generator[tuple[int, list[Any]], None, None] | None = batches
        self._stop = stop
        self._loop = loop
        self._callback = callback
        self._indexed = indexed
        self._progress = progress
        self._total = total
        self._feeder: _Feeder | None = None
        self._bar = ExitStack()
        self._advance: Callable[[int], object] | None = None
        self._current: list[Any] = []
        self._next = 0  # position in _current of the next result
        self._since_yield = 0
        self._done = False
        self._coroutine: Coroutine[Any, Any, list[R]] | None = None

    def __del__(self) -> None:
        feeder = self.__dict__.get("_feeder")
        if feeder is not None and not self.__dict__.get("_done", True):
            feeder.stop()  # (the thread ends on its own; nothing here may wait)
        elif self.__dict__.get("_batches") is not None:  # as Python says of a coroutine never awaited
            warnings.warn(
                "an amap(...) was never awaited nor iterated: its map never ran (await it, or async for)",
                RuntimeWarning,
                stacklevel=2,
            )

    def _begin(self, *, bounded: bool) -> _Feeder:
        if self._batches is None:
            msg = "this amap(...) was awaited or iterated already: an amap result is used once"
            raise RuntimeError(msg)
        if asyncio.get_running_loop() is not self._loop:
            msg = "amap(...) must be awaited or iterated on the event loop that called amap"
            raise RuntimeError(msg)
        batches, self._batches = self._batches, None
        self._advance = self._bar.enter_context(progress_bar(self._progress, self._total))
        feeder = self._feeder = _Feeder(batches, self._stop, self._loop, bounded=bounded)
        feeder.thread.start()
        return feeder

    async def _next_batch(self, feeder: _Feeder) -> tuple[int, list[Any]]:
        """The next batch; StopAsyncIteration at the end; the map's error; stops the map if cancelled."""
        try:
            while not feeder.buffer:
                feeder.waiter = self._loop.create_future()
                await feeder.waiter
        except GeneratorExit:  # closed as a coroutine (close()): nothing may be awaited now
            self._done = True
            feeder.stop()
            self._bar.close()
            raise
        except BaseException:
            await self._end()
            raise
        got = feeder.buffer.popleft()
        if feeder.credits is not None:
            feeder.credits.release()
        if got is _END:
            await self._end()
            raise StopAsyncIteration
        if isinstance(got, BaseException):
            await self._end()
            raise got
        if self._advance is not None:
            self._advance(len(got[1]))
        return got  # type: ignore[no-any-return]

    async def _end(self) -> None:
        """Stop the map if it runs; wait, without blocking the loop, until its thread has ended."""
        if self._done:
            return
        self._done = True
        feeder = self._feeder
        try:
            if feeder is not None:
                feeder.stop()
                cancelled = None
                while not feeder.finished.done():
                    try:
                        await asyncio.shield(feeder.finished)
                    except asyncio.CancelledError as exc:  # noqa: PERF203 - asked again: still, nothing is left behind
                        cancelled = exc
                feeder.thread.join(_JOIN_SECONDS)  # (it has posted its last word: it is ending now)
                if cancelled is not None:
                    raise cancelled
        finally:
            self._bar.close()

    def __await__(self) -> Generator[Any, None, list[R]]:
        return self._collect().__await__()

    # As a coroutine (a task's): the one collecting run, made on the first send.

    def _as_coroutine(self) -> Coroutine[Any, Any, list[R]]:
        if self._coroutine is None:
            self._coroutine = self._collect()
        return self._coroutine

    def send(self, value: Any, /) -> Any:
        """Run the map until its next wait (what a task does with a coroutine)."""
        return self._as_coroutine().send(value)

    def throw(self, typ: Any, val: Any = None, tb: types.TracebackType | None = None, /) -> Any:
        """Raise an exception at the map's wait (a task's cancellation)."""
        if val is None and tb is None:
            return self._as_coroutine().throw(typ)
        exc = val if isinstance(val, BaseException) else typ(val)
        return self._as_coroutine().throw(exc.with_traceback(tb) if tb is not None else exc)

    def close(self) -> None:
        """Close it as a coroutine: a running map is told to stop (it ends in the background)."""
        if self._coroutine is not None:
            self._coroutine.close()
        elif self._batches is not None:  # never started: nothing ran, nothing to say
            self._batches = None

    async def _collect(self) -> list[R]:
        feeder = self._begin(bounded=False)
        out: list[Any] = []
        callback = self._callback
        while True:
            try:
                start, values = await self._next_batch(feeder)
            except StopAsyncIteration:
                return out
            delivered: list[Any] = list(enumerate(values, start)) if self._indexed else values
            if callback is not None:
                try:
                    for value in delivered:
                        callback(value)
                except BaseException:
                    await self._end()
                    raise
            out.extend(delivered)

    def __aiter__(self) -> AsyncMap[R]:
        return self

    async def __anext__(self) -> R:
        if self._next < len(self._current):
            value = self._current[self._next]
            self._next += 1
            self._since_yield += 1
            if self._since_yield >= _YIELD_EVERY:  # a long batch must not hold the loop
                self._since_yield = 0
                await asyncio.sleep(0)
        else:
            feeder = self._feeder or self._begin(bounded=True)
            values: list[Any] = []
            while not values:
                if self._done:
                    raise StopAsyncIteration
                start, values = await self._next_batch(feeder)
            self._current = list(enumerate(values, start)) if self._indexed else values
            self._next, self._since_yield = 1, 0
            value = self._current[0]
        if self._callback is not None:
            try:
                self._callback(value)
            except BaseException:
                await self._end()
                raise
        return value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop the map now; once this returns, its processes and coroutines are stopped, its thread gone."""
        self._batches = None
        await self._end()

    async def __aenter__(self) -> AsyncMap[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()
