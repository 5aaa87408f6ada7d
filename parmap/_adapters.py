"""The adapter interface, and the adapters that need no process management of their own.

An adapter starts workers, runs a chunk and hands back a ``concurrent.futures.Future`` of its
:class:`~parmap._result.ChunkResult`, and shuts down. It knows nothing of chunk sizes, order,
callbacks or laziness: the driver (``_driver.py``) does all of that once, above every adapter::

    pmap ──► driver ──submit(job, chunk)──► Adapter ──► workers (serial / threads / processes / ...)
               ▲                              │
               └────── Future[ChunkResult] ◄──┘

The driver learns what it needs from an adapter through ``workers`` (how many chunks can
run at once) and ``chunk_seconds`` (how much work a chunk should hold to amortize the
adapter's per-chunk cost), never by asking which adapter it is.
"""

from __future__ import annotations

import abc
import concurrent.futures
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self
else:  # importing typing_extensions costs ~8 ms
    from typing_extensions import Self

from parmap._chunk import Chunk
from parmap._cpus import available_cpus
from parmap._cpython import executor_max_workers
from parmap._errors import SerializationError
from parmap._job import Job
from parmap._result import ChunkResult, describe_exception
from parmap._serialize import dumps_by_value
from parmap._worker import run_chunk

__all__ = ["Adapter", "ExecutorAdapter", "SerialAdapter", "picklable_lock", "settle", "shares_memory"]


def settle(
    future: Future[ChunkResult], result: ChunkResult | None = None, exc: BaseException | None = None
) -> None:
    """Set a chunk future's result or exception, unless the driver cancelled it meanwhile."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    except InvalidStateError:
        pass


def picklable_lock(lock: object, alternative: str) -> object:
    """``lock`` if it can travel to worker processes with the job; else a ValueError that says why."""
    hint = f"pass a lock that can be pickled, such as multiprocessing.Manager().Lock(), or {alternative}"
    if lock is True:
        msg = f"lock=True needs workers that share memory or a pool that shares a process lock: {hint}"
        raise ValueError(msg)
    try:
        dumps_by_value(lock)
    except Exception as exc:  # noqa: BLE001 - whatever the reason, it cannot reach the workers
        msg = f"lock={lock!r} cannot be pickled ({exc}): {hint}"
        raise ValueError(msg) from None
    return lock


class Adapter(abc.ABC):
    """How ``pmap`` runs chunks: the one interface every mode implements.

    An adapter used as a context manager is started on entry and shut down on exit; ``pmap``
    then borrows it (several calls share its workers). Given to ``pmap`` unstarted, it is
    started for that call and shut down when the call ends.
    """

    #: Seconds of work to put in one chunk when ``chunksize`` is automatic.
    chunk_seconds: float = 0.02
    #: Whether the adapter enforces ``Job.timeout`` (fails an overdue item with ItemTimeoutError,
    #: by position, and replaces its worker). ``pmap(timeout=...)`` refuses adapters that do not.
    supports_timeout: bool = False
    #: The most items a chunk may hold (None: no limit); a pool that recycles workers after N
    #: items sets N, so that no worker ever has to run more than N.
    max_chunk: int | None = None
    #: Items in each chunk until the cost of an item is known. One spreads a few heavy items
    #: over every worker; an adapter that runs a chunk's items at the same time may ask more.
    first_chunk: int = 1
    #: Whether the mode honours ``max_tasks_per_worker`` (it replaces a worker after N items).
    recycles_workers: bool = False
    #: Whether its workers are processes from a start method: ``PARMAP_START_METHOD`` is then
    #: checked before anything starts.
    starts_processes: bool = False
    #: The mode that runs a call whose options only a pool's own workers honour (an
    #: initializer, ``lock=``, ``timeout=``, ``max_tasks_per_worker=``), for an adapter that
    #: may run items in the caller (auto: ``"process"``); None: it runs such calls itself.
    pool_mode: str | None = None
    #: Whether it awaits coroutine functions (``async def`` fn): mode="async". The others refuse
    #: them before anything starts (their calls would only make coroutine objects).
    runs_coroutines: bool = False

    @classmethod
    def for_mode(
        cls,
        workers: int | None,  # noqa: ARG003 - the signature the built-in modes implement
        *,
        max_tasks: int | None,  # noqa: ARG003
        items: Iterable[Any],  # noqa: ARG003
        modes: Callable[[str, int | None], Adapter],  # noqa: ARG003
    ) -> Adapter:
        """The adapter that ``pmap(mode=<its name>)`` makes (built-in modes; see ``_registry``).

        ``items``: the call's input (for a length hint); ``modes(name, workers)`` makes
        another built-in mode's adapter.
        """
        msg = f"{cls.__name__} is not a built-in mode: register a factory for it (register_adapter)"
        raise TypeError(msg)

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """How many chunks can run at the same time."""

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`shutdown`."""

    @abc.abstractmethod
    def start(self) -> None:
        """Get ready to run chunks (workers may start now or on first use). Caller's thread."""

    @abc.abstractmethod
    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Schedule ``chunk`` and return a future of its result. Called in the caller's thread.

        An exception raised by ``job.fn`` must be reported in the ``ChunkResult``; the future
        itself fails only when the chunk could not be run (e.g. a worker died).
        """

    @abc.abstractmethod
    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Stop the workers: ``wait`` for running chunks, or ``cancel`` what has not finished."""

    def expect(self, chunks: int | None) -> None:  # noqa: B027 - a hint: ignoring it is right for most
        """Hint, before :meth:`start`, how many chunks a one-call map has at most.

        None when unknown. An adapter may use it to start no more workers than can be busy.
        """

    def drain(self) -> None:  # noqa: B027 - a hint: ignoring it is right for most
        """Hint that a one-call map has submitted its whole input.

        Only re-runs may follow (the rest of a part that failed or came back unfinished). An
        adapter may let idle workers go now rather than at :meth:`shutdown`.
        """

    def share_input(self, items: Sequence[Any]) -> bool:  # noqa: ARG002 - declining needs no look
        """Offer, before :meth:`start`, a one-call map's input: a list, tuple or range.

        Nothing changes ``items`` until the map ends. An adapter whose workers will hold a
        copy of it (forked from the caller) may return True: its chunks then carry
        :class:`~parmap._chunk.SharedItems`, positions in the input rather than the items.
        The default declines.
        """
        return False

    def share_lock(self, lock: object) -> object:
        """What to put in ``Job.lock`` so every worker sees the same lock as ``parmap.lock()``.

        ``lock`` is True (make one) or the caller's own lock. Called in the caller's thread,
        before :meth:`start` when the call owns the adapter. This default suits workers that
        share memory with the caller (threads): a ``threading.Lock``.
        """
        return threading.Lock() if lock is True else lock

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.shutdown(wait=exc is None, cancel=exc is not None)


class SerialAdapter(Adapter):
    """Runs each chunk at once in the caller's thread: for debugging and tiny inputs."""

    chunk_seconds = 0.005

    def __init__(self) -> None:
        self._running = False

    @classmethod
    def for_mode(
        cls,
        workers: int | None,  # noqa: ARG003 - one item at a time, whatever is asked
        *,
        max_tasks: int | None,  # noqa: ARG003
        items: Iterable[Any],  # noqa: ARG003
        modes: Callable[[str, int | None], Adapter],  # noqa: ARG003
    ) -> Adapter:
        return cls()

    @property
    def workers(self) -> int:
        """Always 1."""
        return 1

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._running

    def start(self) -> None:
        """Nothing to start."""
        self._running = True

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Run ``chunk`` now, in this thread, and return a finished future."""
        future: Future[ChunkResult] = Future()
        future.set_result(run_chunk(job, chunk, in_caller=True))
        return future

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:  # noqa: ARG002
        """Nothing to stop."""
        self._running = False

    def share_lock(self, lock: object) -> object:
        """A re-entrant lock: in one thread, nesting ``with parmap.lock():`` must not deadlock."""
        return threading.RLock() if lock is True else lock


class ExecutorAdapter(Adapter):
    """Runs chunks on a ``concurrent.futures.Executor`` the caller owns and keeps.

    The executor is borrowed: ``shutdown`` never shuts it down. ``fn`` reaches a process-based
    executor pickled once per call (cloudpickle where plain pickle cannot) and is rebuilt once
    per worker process.

    Args:
        executor: a running ``ThreadPoolExecutor``, ``ProcessPoolExecutor`` or any other
            ``concurrent.futures.Executor``.
        workers: how many chunks it runs at once, when the executor does not say
            (``_max_workers``); else the available CPUs.
    """

    def __init__(self, executor: Executor, workers: int | None = None) -> None:
        self.executor = executor
        self._workers = workers or executor_max_workers(executor)
        # Chunks that cross a process, interpreter or machine boundary cost more: make them bigger.
        self.chunk_seconds = 0.01 if shares_memory(executor) else 0.05
        self._running = False

    @property
    def workers(self) -> int:
        """The executor's ``max_workers`` when it tells, else the available CPUs."""
        return self._workers or available_cpus()

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._running

    def start(self) -> None:
        """Nothing to start: the executor is already running."""
        self._running = True

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Hand the chunk to the executor."""
        future = self.executor.submit(run_chunk, job, chunk)
        return _explained(future) if _runs_interpreters(self.executor) else future

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:  # noqa: ARG002
        """Leave the borrowed executor running (the driver cancels its own futures)."""
        self._running = False

    def share_lock(self, lock: object) -> object:
        """A thread lock for a thread pool; for other executors, a lock that can be pickled."""
        if shares_memory(self.executor):
            return super().share_lock(lock)
        return picklable_lock(lock, "use mode='process', which shares a process lock itself")


def shares_memory(executor: Executor) -> bool:
    """Whether the executor's workers are threads of this interpreter (fn and items not pickled).

    ``InterpreterPoolExecutor`` (Python 3.14) subclasses ``ThreadPoolExecutor``, but each of
    its threads runs its own interpreter: fn, items and results cross by pickling, as to a
    process, and a thread lock cannot cross.
    """
    return isinstance(executor, ThreadPoolExecutor) and not _runs_interpreters(executor)


def _runs_interpreters(executor: Executor) -> bool:
    interpreters = getattr(concurrent.futures, "InterpreterPoolExecutor", None)
    return interpreters is not None and isinstance(executor, interpreters)


def _explained(future: Future[ChunkResult]) -> Future[ChunkResult]:
    """``future``, with an interpreter pool's ``NotShareableError`` said as what it is.

    An ``InterpreterPoolExecutor`` that cannot rebuild fn or the items in its interpreter (a
    module it cannot import: a subinterpreter starts with the default ``sys.path``, not this
    one's) fails with ``NotShareableError("args not shareable")``; its cause says why.
    """
    explained: Future[ChunkResult] = Future()

    def relay(done: Future[ChunkResult]) -> None:
        if done.cancelled():
            explained.cancel()
            return
        exc = done.exception()
        if exc is None:
            settle(explained, done.result())
        elif type(exc).__name__ == "NotShareableError":
            cause = exc.__cause__ or exc.__context__
            # (the cause carries the other interpreter's traceback as text: its last line says it)
            text = str(cause).split("\n\nThe above exception")[0].strip() if cause is not None else ""
            why = text.splitlines()[-1] if text else describe_exception(exc)
            msg = (
                f"fn, the initializer or the items could not be rebuilt in the executor's interpreter: {why} "
                "(an interpreter pool's interpreters start with the default sys.path: fn must come from a "
                "module they can import, or be a lambda or closure, which travel by value)"
            )
            settle(explained, exc=SerializationError(msg))
        else:
            settle(explained, exc=exc)

    future.add_done_callback(relay)
    explained.add_done_callback(lambda done: future.cancel() if done.cancelled() else None)
    return explained
