"""``mode="async"``: coroutine functions (``async def``) run many at a time on an event loop.

Its workers are neither threads nor processes: ``workers`` is how many items may be in flight
(awaiting) at once, and hundreds are normal for I/O. Chunks come from the driver's thread;
their items wait in one queue of the adapter and start as earlier ones finish, so that never
more than ``workers`` coroutines run, whatever the chunks' sizes::

    driver thread ──submit──► incoming ──call_soon_threadsafe──► loop: queue ──► ≤ workers tasks
         ▲                                                                          │
         └──────────────── Future[ChunkResult], set when a chunk's items end ◄──────┘

Which loop: for a map called from sync code (``pmap``), one that the adapter runs in a thread
of its own; for :func:`parmap.amap`, the caller's running loop, which it hands over (the
driver then runs in a thread, and the loop only ever runs the items).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from parmap._adapters import Adapter, settle
from parmap._chunk import Chunk
from parmap._errors import InitializerError, ItemTimeoutError
from parmap._job import Job
from parmap._result import ChunkResult, format_exception
from parmap._worker import item_context

__all__ = ["DEFAULT_IN_FLIGHT", "AsyncAdapter"]

log = logging.getLogger("parmap")

#: Default ``workers`` of async mode: items in flight (aiohttp's default connection limit too).
DEFAULT_IN_FLIGHT = 100
# A chunk's items are queued in the adapter: a cap keeps what waits there (2 x workers chunks)
# bounded for a stream, while cheap items still share one round trip with the driver.
_MAX_CHUNK = 256
# How long shutdown(cancel=True) waits for cancelled coroutines to end before leaving them.
_GRACE_SECONDS = 2.0


class _Run:
    """One chunk on the loop: its items' values, which failed, which start next."""

    __slots__ = (
        "chunk",
        "error",
        "failed",
        "future",
        "job",
        "next",
        "pending",
        "started",
        "stopped",
        "values",
    )

    def __init__(self, job: Job, chunk: Chunk, future: Future[ChunkResult]) -> None:
        self.job, self.chunk, self.future = job, chunk, future
        self.values: list[Any] = [None] * len(chunk.items)
        self.failed: dict[int, str | None] = {}
        self.next = 0  # position of the next item to start
        self.pending = 0  # items started and not yet ended
        self.stopped = False  # an item failed (on_error="raise"), or the chunk cannot run
        self.error: BaseException | None = None  # the chunk could not run at all
        self.started = time.perf_counter()

    def more(self) -> bool:
        return not self.stopped and self.next < len(self.values) and not self.future.cancelled()


class AsyncAdapter(Adapter):
    """Runs coroutine functions on an event loop, ``workers`` items in flight at a time.

    Args:
        workers: how many items may be awaiting at once (default 100).
        loop: a running event loop to run the items on (:func:`parmap.amap` passes the
            caller's); default: the adapter runs a loop of its own in a thread while it is
            started.
    """

    chunk_seconds = 0.02
    supports_timeout = True
    runs_coroutines = True
    max_chunk = _MAX_CHUNK

    def __init__(self, workers: int | None = None, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._max = workers or DEFAULT_IN_FLIGHT
        self._given = loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _loop, _incoming and _woken
        self._incoming: list[_Run] = []  # submitted, not yet seen by the loop
        self._woken = False  # a call to _take is scheduled on the loop
        # Touched on the loop's thread only:
        self._queue: collections.deque[_Run] = collections.deque()  # runs with items to start
        self._active: set[asyncio.Task[None]] = set()
        self._inits: dict[str, asyncio.Task[None]] = {}  # job token -> its initializer's run
        self._idle = threading.Event()  # nothing queued or running
        self._idle.set()

    @classmethod
    def for_mode(
        cls,
        workers: int | None,
        *,
        max_tasks: int | None,  # noqa: ARG003 - no worker to recycle
        items: Iterable[Any],  # noqa: ARG003
        modes: Callable[[str, int | None], Adapter],  # noqa: ARG003
    ) -> Adapter:
        return cls(workers)

    @property
    def workers(self) -> int:
        """How many items may be in flight at once."""
        return self._max

    @property
    def first_chunk(self) -> int:  # type: ignore[override]  # (a class attribute in the base)
        """A chunk's items all run at once here: ones of 1 item would only cost round trips.

        Up to workers / 32 items (16 at most): the window of 2 x workers chunks then still
        holds workers x workers / 16 items, enough to keep every slot busy from the start.
        """
        return max(1, min(16, self._max // 32))

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._loop is not None

    def start(self) -> None:
        """Take the given loop, or start one in a thread. Does nothing when already running."""
        with self._lock:
            if self._loop is not None:
                return
            if self._given is not None:
                self._loop = self._given
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=_serve, args=(loop, ready), name="parmap-async", daemon=True)
            thread.start()
            while not ready.wait(0.1):  # (the loop's first step sets it)
                if not thread.is_alive():
                    loop.close()
                    msg = "mode='async' could not start its event loop thread"
                    raise RuntimeError(msg)
            self._loop, self._thread = loop, thread

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Queue the chunk's items on the loop; they start as items in flight end."""
        future: Future[ChunkResult] = Future()
        with self._lock:
            loop = self._loop
            if loop is None:
                msg = "AsyncAdapter.submit() called when the adapter is not running"
                raise RuntimeError(msg)
            if self._given is not None and _on(loop):  # the map would wait for what only it could run
                msg = (
                    "a map was called on the thread that runs the event loop of its AsyncAdapter, which "
                    "it would block: from async code, use parmap.amap"
                )
                raise RuntimeError(msg)
            self._incoming.append(_Run(job, chunk, future))
            self._idle.clear()
            wake, self._woken = not self._woken, True
        if wake:  # one wake-up of the loop for every chunk submitted meanwhile
            try:
                loop.call_soon_threadsafe(self._take)
            except RuntimeError as exc:  # the caller's loop was closed under the map
                settle(future, exc=RuntimeError(f"the event loop of mode='async' is closed: {exc}"))
        return future

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Stop: ``cancel`` the items in flight and queued, or ``wait`` for them; stop an own loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        try:
            if cancel:
                loop.call_soon_threadsafe(self._cancel_all)
            if (wait or cancel) and not _on(loop):
                self._wait_idle(loop)
        except RuntimeError:  # the caller's loop is closed: nothing of ours can run there any more
            pass
        if thread is not None:
            for closing in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
                try:  # (fn's async generators, and loop.run_in_executor(None, ...)'s threads)
                    asyncio.run_coroutine_threadsafe(closing(), loop).result(_GRACE_SECONDS)
                except Exception:  # noqa: PERF203 - the loop stops all the same
                    log.warning("parmap: mode='async' could not close its loop cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_GRACE_SECONDS)  # it stops after the step it runs: fn may block the loop
            if thread.is_alive():
                log.warning(
                    "parmap: the loop of mode='async' is blocked by fn (a blocking call?); left running"
                )
            else:
                loop.close()
        self._inits.clear()

    def share_lock(self, lock: object) -> object:
        """An ``asyncio.Lock`` (``async with parmap.lock():``), or the caller's own lock."""
        return asyncio.Lock() if lock is True else lock

    # -- on the loop's thread ---------------------------------------------------------------

    def _take(self) -> None:
        with self._lock:
            runs, self._incoming, self._woken = self._incoming, [], False
        self._queue.extend(runs)
        self._start_more()

    def _start_more(self) -> None:
        queue, active = self._queue, self._active
        loop = asyncio.get_running_loop()
        while queue and len(active) < self._max:
            run = queue[0]
            if not run.more():
                queue.popleft()
                self._end_if_done(run)
                continue
            if run.next == 0:
                run.started = time.perf_counter()
            pos = run.next
            run.next += 1
            run.pending += 1
            task = loop.create_task(self._one(run, pos))
            active.add(task)
            task.add_done_callback(self._ended)
        if not queue and not active:
            with self._lock:
                if not self._incoming:
                    self._idle.set()

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._start_more()

    async def _one(self, run: _Run, pos: int) -> None:
        job = run.job
        item_context.set((job.lock, run.chunk.attempt))  # (the task's own context)
        timer = None
        try:
            if job.initializer is not None:
                await self._initialized(job)
            item = run.chunk.items[pos]
            coro = job.fn(*item) if job.star else job.fn(item)
            if job.timeout is not None:
                me = asyncio.current_task()
                assert me is not None
                timer = asyncio.get_running_loop().call_later(job.timeout, _expire, me, run, pos)
            run.values[pos] = await coro
        except asyncio.CancelledError:
            if not isinstance(run.values[pos], ItemTimeoutError):
                run.stopped = True  # cancelled from outside: the map is ending
                raise
            run.failed[pos] = None
            run.stopped = run.stopped or not job.keep_going
        except InitializerError as exc:
            run.error, run.stopped = exc, True
        except BaseException as exc:  # noqa: BLE001 - SystemExit from fn is its item's result too
            run.values[pos] = exc
            run.failed[pos] = None  # (traceback text only made if it must cross to a process)
            run.stopped = run.stopped or not job.keep_going
        finally:
            if timer is not None:
                timer.cancel()
            run.pending -= 1
            self._end_if_done(run)

    async def _initialized(self, job: Job) -> None:
        init = self._inits.get(job.token)
        if init is None:
            init = self._inits[job.token] = asyncio.get_running_loop().create_task(_initialize(job))
        await asyncio.shield(init)

    def _end_if_done(self, run: _Run) -> None:
        if run.pending or run.more():
            return
        if run.future.done():
            return
        if run.error is not None:
            settle(run.future, ChunkResult(error=run.error, error_tb=format_exception(run.error)))
            return
        ran = run.next  # every item before it has ended: the values so far, in order
        failed = {pos: tb for pos, tb in run.failed.items() if pos < ran}
        values = run.values if ran == len(run.values) else run.values[:ran]
        settle(run.future, ChunkResult(values, failed, time.perf_counter() - run.started))

    def _cancel_all(self) -> None:
        for run in self._queue:
            run.stopped = True
            run.future.cancel()
        self._queue.clear()
        for task in list(self._active):
            task.cancel()
        if not self._active:
            self._idle.set()

    def _wait_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait (off the loop) until nothing runs; give up on coroutines that ignore cancellation."""
        deadline = time.monotonic() + _GRACE_SECONDS
        while not self._idle.wait(0.05):
            if loop.is_closed() or not loop.is_running():
                return
            if time.monotonic() > deadline:
                log.warning(
                    "parmap: %d coroutines of mode='async' go on after being cancelled; left running",
                    len(self._active),
                )
                return


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this thread runs ``loop`` now (it must not wait for its own items)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    loop.call_soon(ready.set)
    loop.run_forever()


def _expire(task: asyncio.Task[None], run: _Run, pos: int) -> None:
    """The item ran past its timeout: its value is the error, and its task is cancelled."""
    job = run.job
    error = ItemTimeoutError(
        f"item {run.chunk.start + pos} ran longer than timeout={job.timeout:g} s; its coroutine was cancelled"
    )
    run.values[pos] = error
    task.cancel()


async def _initialize(job: Job) -> None:
    """Run the initializer once per loop and job; a coroutine initializer is awaited."""
    assert job.initializer is not None
    try:
        result = job.initializer(*job.initargs)
        if inspect.isawaitable(result):
            await result
    except BaseException as exc:
        name = getattr(job.initializer, "__qualname__", repr(job.initializer))
        error = InitializerError(f"the initializer {name} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        raise error from exc
