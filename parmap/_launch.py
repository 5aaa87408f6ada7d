"""How worker processes start (start method, fork server preload), stop and end, and how their ends read.

Nothing here knows of chunks: ``_process_pool.py`` decides when a worker starts or stops,
these functions do it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from typing import Any

from parmap._cpython import fork_server_pid, fork_server_preload
from parmap._process_worker import process_worker
from parmap._threadcaps import capped_environ

__all__ = [
    "ENV_START_METHOD",
    "STOP_GRACE",
    "await_exit",
    "can_fork_now",
    "default_start_method",
    "describe_exit",
    "fork_server_exit",
    "fork_server_used",
    "interpreter_exiting",
    "preload_in_fork_server",
    "reap",
    "start_failure_message",
    "start_worker",
    "stop_processes",
]

log = logging.getLogger("parmap")

ENV_START_METHOD = "PARMAP_START_METHOD"
_LINGER = 0.005  # seconds
#: Seconds a worker process has to end once told to stop (or sent SIGTERM) before it is killed.
#: Its work is done by then: only something of fn's keeps it (a non-daemon thread, a child that
#: holds its pipes, SIGTERM ignored).
STOP_GRACE = 1.0
_EXIT_POLL = 0.05  # seconds between looks at a process whose end its sentinel may not show
_PRELOAD = ("parmap._process_worker", "cloudpickle")  # what every worker needs: imported once, by the server
_fork_server_used = False  # see fork_server_used()


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
    """``PARMAP_START_METHOD`` if set, else forkserver where available (not macOS), else spawn.

    Raises:
        ValueError: ``PARMAP_START_METHOD`` names no start method of this platform.
    """
    env = os.environ.get(ENV_START_METHOD, "").strip()
    if env:
        known = multiprocessing.get_all_start_methods()
        if env not in known:
            msg = f"{ENV_START_METHOD} must be one of {', '.join(known)} (or unset), got {env!r}"
            raise ValueError(msg)
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

    global _fork_server_used  # noqa: PLW0603 - once per process
    _fork_server_used = True
    current = fork_server_preload()
    wanted = [m for m in _PRELOAD if m not in current]
    if wanted:
        forkserver.set_forkserver_preload(current + wanted)


def fork_server_used() -> bool:
    """Whether a process pool of parmap's has used the fork server in this process (it runs, then)."""
    return _fork_server_used


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def fork_server_exit(within: float = 0.0) -> int | None:
    """The fork server's exit code (as ``Process.exitcode`` reads) once it has ended; else None.

    Waits up to ``within`` seconds for it to end. Read without reaping it: multiprocessing
    reaps it, and starts another, when next asked. On Python 3.14 the fork server imports the
    main module itself, so a script that workers cannot import ends the server, and a worker's
    start fails with a broken connection, a moment before the server's end shows.
    """
    pid = fork_server_pid()
    if pid is None or not hasattr(os, "waitid"):
        return None
    deadline = time.monotonic() + within
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except OSError:  # not our child (any more)
            return None
        if info is not None:
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(_EXIT_POLL / 5)


def start_failure_message(who: str, how: str, start_method: str, *, also: str = "") -> str:
    """What to tell when workers cannot start: most often, a main module they cannot import."""
    return (
        f"{who} failed to start ({how}){also}; its error is on stderr. "
        f"Under the {start_method!r} start method workers import the main module: "
        "guard the script's code with `if __name__ == '__main__':`, and run it from a file"
    )


def await_exit(procs: Iterable[Any], deadline: float) -> list[Any]:
    """Wait until each ``multiprocessing.Process`` has ended, or until ``deadline``; those still running.

    A process's sentinel (a pipe it holds) shows its end at once, unless a child it forked
    holds the pipe too: its exit code is looked at every few ms as well, so that never hangs.
    """
    left = [p for p in procs if p.exitcode is None]
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait([p.sentinel for p in left], min(remaining, _EXIT_POLL))
        left = [p for p in left if p.exitcode is None]
    return left


def stop_processes(procs: Iterable[Any]) -> list[Any]:
    """End processes: SIGTERM to all, SIGKILL to those still running after ``STOP_GRACE``.

    All at once, so the wait is one grace period however many there are. Returns the ones that
    had to be killed (they ignored or blocked SIGTERM), for the caller to say so.
    """
    running = [p for p in procs if p.exitcode is None]
    for p in running:
        p.terminate()
    deaf = await_exit(running, time.monotonic() + STOP_GRACE)
    for p in deaf:
        p.kill()
    await_exit(deaf, time.monotonic() + STOP_GRACE)  # SIGKILL cannot be ignored: only a moment
    return deaf


def interpreter_exiting() -> bool:
    """True once the interpreter shuts down (its main thread has finished)."""
    return not threading.main_thread().is_alive()


def start_worker(
    ctx: Any,
    progress: Any,
    slot: int,
    lock: Any,
    *,
    inherited: tuple[Connection | None, ...],
    thread_caps: dict[str, str | None],
    shared: Any,
) -> tuple[Any, Connection]:
    """Start one worker process under ``ctx``'s start method; its process and the caller's pipe end.

    ``inherited``: the caller's connections a forked worker gets copies of and must close, or
    its own pipe never reads end-of-file when the caller dies (ignored unless forked).
    ``shared``: the input that a forked worker holds (ignored unless forked: any other start
    would pickle it).
    """
    method = ctx.get_start_method()
    forked = method == "fork"
    if method == "forkserver":
        preload_in_fork_server()  # (only on first use: ~1 ms of imports a forking pool never needs)
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=process_worker,
        args=(child, progress, slot, lock),
        kwargs={
            "inherited": (parent, *inherited) if forked else (),
            "thread_caps": thread_caps,
            "shared": shared if forked else None,
            "spawned": method == "spawn",
        },
        name="parmap-worker",
        daemon=True,
    )
    try:
        if forked:
            proc.start()
        else:  # a spawned worker, or the fork server it comes from, starts with the caps
            with capped_environ(thread_caps):
                proc.start()
    except BaseException:
        parent.close()
        child.close()
        raise
    child.close()
    return proc, parent


def reap(proc: Any, conn: Connection) -> None:
    """Wait (a grace period at most) for a worker that has ended or was told to; close it."""
    if await_exit([proc], time.monotonic() + STOP_GRACE):
        proc.kill()
        if await_exit([proc], time.monotonic() + STOP_GRACE):  # in the kernel: leave it
            log.warning("parmap: worker process (pid %s) could not be stopped", proc.pid)
    conn.close()
    if proc.exitcode is not None and not interpreter_exiting():  # multiprocessing's exit hook joins it
        proc.close()
