"""parmap: a parallel ``map`` in one line, for threads, processes or any executor.

>>> from parmap import pmap
>>> pmap(abs, [-1, -2, 3], mode="thread")
[1, 2, 3]

Everything public is listed in ``__all__``; modules whose names start with ``_`` are private.
"""

import typing as _typing

from parmap._adapters import Adapter, ExecutorAdapter, SerialAdapter
from parmap._api import pmap
from parmap._chunk import Chunk
from parmap._cpus import available_cpus
from parmap._dask import DaskAdapter
from parmap._errors import (
    InitializerError,
    ItemTimeoutError,
    JournalError,
    LockUnavailableError,
    ParmapError,
    RemoteTraceback,
    SerializationError,
    WorkerDiedError,
)
from parmap._job import Job
from parmap._journal import Journal, JournalFailure
from parmap._process import ProcessAdapter
from parmap._registry import register_adapter
from parmap._result import ChunkResult
from parmap._threads import ThreadAdapter
from parmap._worker import attempt, lock, run_chunk

if _typing.TYPE_CHECKING:  # imported on first use (below): asyncio costs ~10 ms at import
    from parmap._amap import amap
    from parmap._async import AsyncAdapter
    from parmap._async_results import AsyncMap

__all__ = (
    "Adapter",
    "AsyncAdapter",
    "AsyncMap",
    "Chunk",
    "ChunkResult",
    "DaskAdapter",
    "ExecutorAdapter",
    "InitializerError",
    "ItemTimeoutError",
    "Job",
    "Journal",
    "JournalError",
    "JournalFailure",
    "LockUnavailableError",
    "ParmapError",
    "ProcessAdapter",
    "RemoteTraceback",
    "SerialAdapter",
    "SerializationError",
    "ThreadAdapter",
    "WorkerDiedError",
    "__version__",
    "amap",
    "attempt",
    "available_cpus",
    "lock",
    "pmap",
    "register_adapter",
    "run_chunk",
)

__version__ = "0.1.0.dev0"

_LAZY = {"amap": "parmap._amap", "AsyncAdapter": "parmap._async", "AsyncMap": "parmap._async_results"}


def __getattr__(name: str) -> _typing.Any:
    where = _LAZY.get(name)
    if where is None:
        msg = f"module 'parmap' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
