"""How worker processes start (start method, fork server preload) and how their ends read."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time

__all__ = [
    "ENV_START_METHOD",
    "can_fork_now",
    "default_start_method",
    "describe_exit",
    "preload_in_fork_server",
]

ENV_START_METHOD = "PARMAP_START_METHOD"
_LINGER = 0.005  # seconds
_PRELOAD = ("parmap._worker", "cloudpickle")  # what every worker needs: imported once, by the server


def can_fork_now() -> bool:
    """True on Linux when this process runs exactly one thread, so ``fork`` copies no held lock.

    Counts OS threads, so threads of C libraries (a BLAS pool) count too.
    ``PARMAP_START_METHOD`` set to anything turns this off.
    """
    if sys.platform != "linux" or os.environ.get(ENV_START_METHOD, "").strip():
        return False
    # A thread just joined (the last map's collector) can linger a moment in the OS's count
    # before Python 3.13: wait a little for it when Python itself sees one thread.
    deadline = time.monotonic() + _LINGER
    try:
        while len(os.listdir("/proc/self/task")) > 1:  # noqa: PTH208 - a count, no Paths needed
            if threading.active_count() > 1 or time.monotonic() > deadline:
                return False
            time.sleep(0.0002)
    except OSError:
        return False
    return True


def default_start_method() -> str:
    """``PARMAP_START_METHOD`` if set, else forkserver where available (not macOS), else spawn."""
    env = os.environ.get(ENV_START_METHOD, "").strip()
    if env:
        return env
    if sys.platform != "darwin" and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def preload_in_fork_server() -> None:
    """Have the fork server import parmap's worker side once, so each worker need not.

    Adds to the preload list (never replaces what the caller set); it takes effect when the
    fork server starts, and changes nothing for one already running.
    """
    from multiprocessing import forkserver  # noqa: PLC0415 - POSIX only

    current = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])  # noqa: SLF001
    wanted = [m for m in _PRELOAD if m not in current]
    if wanted:
        forkserver.set_forkserver_preload(current + wanted)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
