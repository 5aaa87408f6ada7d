"""The private names of CPython that parmap reads, each with the public fallback it uses.

Each is an optimisation or a better message, never needed for a correct map: when a Python
release drops or renames one, parmap takes the fallback (tests/test_cpython_names.py removes
each name and runs a map). Nothing else in ``parmap/`` reads a private name of the standard
library.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

__all__ = [
    "executor_max_workers",
    "exit_hooks",
    "fork_server_pid",
    "fork_server_preload",
    "gil_enabled",
    "made_for_fork",
]


def executor_max_workers(executor: object) -> int | None:
    """How many tasks a ``concurrent.futures`` executor runs at once, if it says.

    ``_max_workers`` of ``ThreadPoolExecutor`` and ``ProcessPoolExecutor``; fallback: None (the
    caller then counts the CPUs).
    """
    value = getattr(executor, "_max_workers", None)
    return value if isinstance(value, int) else None


def fork_server_preload() -> list[str]:
    """The modules the fork server will import when it starts, as set so far.

    ``_preload_modules`` of multiprocessing's fork server (there is a setter, no getter);
    fallback: its default, ``["__main__"]``.
    """
    from multiprocessing import forkserver  # noqa: PLC0415 - POSIX only

    server = getattr(forkserver, "_forkserver", None)
    return list(getattr(server, "_preload_modules", None) or ["__main__"])


def fork_server_pid() -> int | None:
    """The process id of multiprocessing's fork server, if it started one.

    ``_forkserver_pid`` of the module's server object; fallback: None (a worker that cannot
    start because the fork server ended is then reported with the error of its start, not
    with the server's exit code).
    """
    forkserver = sys.modules.get("multiprocessing.forkserver")  # (not imported: no fork server)
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


def made_for_fork(lock: object) -> bool:
    """Whether a ``multiprocessing`` lock was made by the fork context, for fork workers only.

    ``_is_fork_ctx`` (Python 3.12+: pickling such a lock for another start method raises);
    fallback: False (the lock is tried, and a worker that cannot receive it fails to start).
    """
    return bool(getattr(lock, "_is_fork_ctx", False))


def exit_hooks() -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    """What a process's normal exit runs that matters: multiprocessing's finalizers, then atexit's.

    The finalizers are what a process's target returning runs.

    ``multiprocessing.util._exit_function`` and ``atexit._run_exitfuncs``; fallback: None (the
    worker then takes the normal, slower exit).
    """
    finalize = getattr(multiprocessing.util, "_exit_function", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if finalize is None or run_exit_handlers is None:
        return None
    return finalize, run_exit_handlers


def gil_enabled() -> bool:
    """Whether this interpreter runs with the GIL (threads then take turns on Python code).

    ``sys._is_gil_enabled()`` (Python 3.13+; on a free-threaded build the GIL may be switched
    back on at run time, by ``PYTHON_GIL=1`` or an extension that needs it); fallback: whether
    the build is a free-threaded one (``Py_GIL_DISABLED``), else True.
    """
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_enabled is not None:
        return bool(is_enabled())
    return not sysconfig.get_config_var("Py_GIL_DISABLED")
