"""The Dask adapter: chunks become tasks of an existing ``dask.distributed`` cluster.

One task per item costs the scheduler about a millisecond each, which is why ``Client.map``
cannot keep up with many small items; here each task is a chunk, sized by the driver like any
other, with a bounded window of them in flight. ``fn`` (the job) is scattered to the cluster
once per call (as a small task that rebuilds it, which Dask can recompute if a worker is lost)
and every chunk task refers to it. ``distributed`` is the optional ``dask``
extra, imported when the adapter starts.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from parmap._adapters import Adapter, picklable_lock, settle
from parmap._chunk import Chunk
from parmap._errors import WorkerDiedError
from parmap._extras import require
from parmap._job import Job, restore_job
from parmap._result import ChunkResult
from parmap._worker import run_chunk

__all__ = ["DaskAdapter"]

_NO_CLIENT = (
    "mode='dask' found no running dask.distributed Client. Start one first: "
    "`from distributed import Client; client = Client()` runs a LocalCluster on this machine, "
    "`Client('tcp://scheduler-host:8786')` connects to a cluster; or pass mode=DaskAdapter(client_or_address)"
)


def _distributed() -> Any:
    return require("distributed", extra="dask", feature="mode='dask'")


class DaskAdapter(Adapter):
    """Runs chunks as tasks on a Dask cluster.

    Args:
        client: a ``distributed.Client``, a scheduler address (``"tcp://host:8786"``, the adapter
            then connects and disconnects itself), or None for the current client when the map
            starts (the one made last with ``Client(...)``).

    A worker that the cluster loses while it runs a chunk (Dask gives up on the task with
    ``KilledWorker``) fails that chunk with a :class:`WorkerDiedError`, and the driver runs its
    items again one by one. ``timeout=`` is not supported: a Dask task cannot be interrupted.
    """

    # A task costs the scheduler about a millisecond: give each chunk far more work than that.
    chunk_seconds = 0.2

    @classmethod
    def for_mode(
        cls,
        workers: int | None,
        *,
        max_tasks: int | None,  # noqa: ARG003
        items: Iterable[Any],  # noqa: ARG003
        modes: Callable[[str, int | None], Adapter],  # noqa: ARG003
    ) -> Adapter:
        if workers is not None:
            msg = f"workers={workers!r} cannot be used with mode='dask': the cluster's workers decide"
            raise ValueError(msg)
        return cls()

    def __init__(self, client: Any = None) -> None:
        self._target = client
        self._client: Any = None
        self._owns_client = False
        self._jobs: dict[str, Any] = {}  # token -> the job scattered to the cluster
        self._tasks: dict[Future[ChunkResult], Any] = {}  # our futures -> Dask futures in flight
        self._lock = threading.Lock()

    @property
    def workers(self) -> int:
        """Threads across the cluster's workers (chunks that can run at once)."""
        if self._client is None:
            return 1
        return max(1, int(sum(self._client.nthreads().values())))

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._client is not None

    def start(self) -> None:
        """Find or connect the client."""
        distributed = _distributed()
        if isinstance(self._target, str):
            self._client = distributed.Client(self._target)
            self._owns_client = True
        elif self._target is not None:
            self._client = self._target
        else:
            try:
                self._client = distributed.Client.current()
            except ValueError:
                raise ValueError(_NO_CLIENT) from None

    def share_lock(self, lock: object) -> object:
        """``lock=True``: a ``distributed.Lock``, held across the whole cluster; or a picklable lock."""
        if lock is True:
            # Pickled by name; each holder finds the cluster through its own client.
            return _distributed().Lock(f"parmap-{uuid.uuid4().hex}")
        return picklable_lock(lock, "lock=True, which gives a distributed.Lock")

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        """Submit the chunk as one task that refers to the call's scattered job."""
        with self._lock:
            shared = self._jobs.get(job.token)
            if shared is None:
                # A task that rebuilds the job, not scattered data: if the worker holding it is lost,
                # Dask computes it again; workers fetch it from each other, never from us again.
                shared = self._client.submit(restore_job, job.token, job.payload(), pure=False)
                self._jobs[job.token] = shared
        task = self._client.submit(run_chunk, shared, chunk, pure=False)
        future: Future[ChunkResult] = Future()
        with self._lock:
            self._tasks[future] = task
        task.add_done_callback(functools.partial(self._finished, future, chunk))
        future.add_done_callback(self._cancelled)
        return future

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Cancel tasks in flight (with ``cancel``), forget the jobs, disconnect a client made here."""
        with self._lock:
            tasks, self._tasks = list(self._tasks.values()), {}
            jobs, self._jobs = list(self._jobs.values()), {}
        if cancel and tasks:
            self._client.cancel(tasks)
        elif wait:
            _distributed().wait(tasks)
        if jobs:
            self._client.cancel(jobs)  # releases the scattered fn on the workers
        if self._owns_client:
            self._client.close()
        self._client = None

    def _finished(self, future: Future[ChunkResult], chunk: Chunk, task: Any) -> None:
        """Runs in Dask's callback thread: carry the task's outcome over to our future."""
        with self._lock:
            self._tasks.pop(future, None)
        if task.cancelled():
            future.cancel()
            return
        try:
            settle(future, task.result())
        except _distributed().KilledWorker as exc:
            last = chunk.start + len(chunk.items) - 1
            lost = f"the Dask cluster lost the worker running items {chunk.start}..{last}: {exc}"
            settle(future, exc=WorkerDiedError(lost))
        except BaseException as exc:  # noqa: BLE001 - anything else fails this chunk, whatever it is
            settle(future, exc=exc)

    def _cancelled(self, future: Future[ChunkResult]) -> None:
        """The driver cancelled our future: cancel the Dask task too."""
        if future.cancelled():
            with self._lock:
                task = self._tasks.pop(future, None)
            if task is not None:
                task.cancel()
