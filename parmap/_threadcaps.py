"""Caps on the thread pools of numerical libraries inside worker processes (no oversubscription).

Two worker processes each running an OpenMP or BLAS pool as wide as the machine fight over the
same cores: a matrix product in every worker can run slower than in one. Like joblib and Dask,
parmap caps those pools in its worker processes to ``cpus // workers`` threads (at least 1),
through the environment variables the libraries read when they load. A variable the caller set
keeps the caller's value. ``PARMAP_LIMIT_THREADS=0`` turns the caps off.

The variables must be in place before a library loads, and a worker may import the caller's
main module (and with it numpy) before parmap's code runs in it: spawned workers and the fork
server therefore start with the capped environment, and each worker sets it again (for what it
imports later, and for its subprocesses). A worker forked from the caller inherits libraries the
caller already loaded as they are; ``threadpoolctl``, when installed, caps those too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from parmap._cpus import available_cpus

__all__ = ["ENV_LIMIT", "THREAD_VARS", "apply_in_worker", "cap_threads_here", "capped_environ", "thread_caps"]

ENV_LIMIT = "PARMAP_LIMIT_THREADS"
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_environ_lock = threading.Lock()
# Modules that bring a native thread pool: when one is loaded, threadpoolctl (if any) is asked.
_NATIVE_POOLS = ("numpy", "scipy", "torch", "sklearn", "numexpr")


def thread_caps(workers: int) -> dict[str, str | None]:
    """What each thread variable should be in the workers of a pool of ``workers``.

    The caller's value where it set one; else the cap, or None (unset) when caps are off. Every
    variable is listed, so that a worker of a fork server started for an earlier pool drops
    that pool's caps.
    """
    off = os.environ.get(ENV_LIMIT, "").strip().lower() in ("0", "false", "no", "off")
    cap = None if off else str(max(1, available_cpus() // max(1, workers)))
    return {var: os.environ.get(var, cap) for var in THREAD_VARS}


@contextlib.contextmanager
def capped_environ(caps: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``caps`` set while a process is spawned (it inherits the environment).

    Only variables the caller has not set are added, and they are removed afterwards unless
    something changed them meanwhile.
    """
    with _environ_lock:
        added = {var: value for var, value in caps.items() if value is not None and var not in os.environ}
        os.environ.update(added)
        try:
            yield
        finally:
            for var, value in added.items():
                if os.environ.get(var) == value:
                    del os.environ[var]


def apply_in_worker(caps: Mapping[str, str | None]) -> None:
    """In a worker process: set the variables, and cap pools already loaded when possible."""
    for var, value in caps.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    if not any(name in sys.modules for name in _NATIVE_POOLS):
        return
    try:
        import threadpoolctl  # noqa: PLC0415 - optional, and only when a native pool is loaded

        limit = int(caps["OMP_NUM_THREADS"] or "")
    except (ImportError, KeyError, ValueError):  # not installed, or the caller's own value is not a number
        return
    threadpoolctl.threadpool_limits(limit)


def cap_threads_here(workers: int) -> Any:
    """Free-threaded Python: cap this process's native pools while ``workers`` threads compute.

    Without the GIL, a thread pool's items run in parallel as a process pool's do, and each
    item's BLAS or OpenMP call would spread over every core: the same oversubscription. The
    threads share the process, so its loaded pools are capped (``threadpoolctl``, when
    installed and a native pool is loaded) to ``cpus // workers``, the cap process workers get;
    the caller's own ``OMP_NUM_THREADS`` wins. Returns what restores the limits
    (``restore_original_limits()``), or None when nothing was capped (with the GIL on, nothing is).
    """
    from parmap._cpython import gil_enabled  # noqa: PLC0415 - (import cycle otherwise)

    if gil_enabled() or workers <= 1 or not any(name in sys.modules for name in _NATIVE_POOLS):
        return None
    try:
        import threadpoolctl  # noqa: PLC0415 - optional

        limit = int(thread_caps(workers)["OMP_NUM_THREADS"] or "")
    except (ImportError, ValueError):  # not installed, caps off, or the caller's value is no number
        return None
    return threadpoolctl.threadpool_limits(limit)
