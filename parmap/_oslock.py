"""The process pool's ``parmap.lock()``: a lock that the OS releases when its holder dies.

A ``multiprocessing.Lock`` is a semaphore: a worker killed inside ``with parmap.lock():``
(``os._exit``, SIGKILL, a segfault, a timeout's kill) leaves it taken, and every other item
waits on it for ever. This one is a POSIX record lock (``fcntl.lockf``) on a one-byte file,
which the kernel drops when the process that holds it ends, however it ends. Record locks
belong to a process, so a thread lock inside each process keeps the threads of one worker
apart too; and they are not inherited by ``fork``, so a child that ``fn`` forks does not
hold the lock of its parent.

The file: on Linux an unlinked temporary file that workers open through the pool owner's
``/proc/<pid>/fd/<fd>`` (nothing is ever left on disk); elsewhere a named temporary file,
removed when the pool shuts down. Where ``fcntl`` is missing (Windows), pools use a
``multiprocessing`` lock as before (see :func:`make_pool_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

__all__ = ["HAS_RECORD_LOCKS", "ProcessLock", "make_pool_lock"]

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

HAS_RECORD_LOCKS = fcntl is not None

_POLL = 0.001  # seconds between tries of a lock acquired with a timeout
_opening = threading.Lock()  # one thread opens a process's descriptor


def _after_fork() -> None:
    global _opening  # noqa: PLW0603 - a lock another thread held at the fork is held for ever
    _opening = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def make_pool_lock(ctx: Any) -> Any:
    """A lock for the workers of one pool: a :class:`ProcessLock` where the OS offers record locks."""
    return ProcessLock() if fcntl is not None else ctx.Lock()


def _lock_by(fd: int, deadline: float) -> bool:
    """Take the record lock on ``fd`` if it can be had before ``deadline`` (tried at least once)."""
    assert fcntl is not None
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
        except OSError as exc:  # noqa: PERF203 - a wait: the cost of a try does not matter
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        else:
            return True


class ProcessLock:
    """A lock shared by the processes of one pool, released by the OS when its holder dies.

    Used like ``multiprocessing.Lock``: ``acquire(block=True, timeout=None)``, ``release()``,
    and ``with``. Created by the pool's owner; reaches the workers pickled (its path) or
    through ``fork`` (each process then opens the file for itself).
    """

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="parmap-lock-")
        os.write(fd, b"\0")
        self._owner = os.getpid()
        proc_path = f"/proc/{self._owner}/fd/{fd}"
        if sys.platform == "linux" and Path(proc_path).exists():  # nothing left on disk, even if killed
            Path(path).unlink()
            self._path, self._temp = proc_path, None
        else:
            self._path, self._temp = path, path
        self._fd: int | None = fd
        self._pid = self._owner  # the process that opened _fd
        self._threads = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self._path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path, self._temp, self._owner = state["path"], None, -1
        self._fd, self._pid = None, -1
        self._threads = threading.Lock()

    def _file(self) -> int:
        """This process's descriptor of the lock file, opened on first use after a pickle."""
        if self._pid != os.getpid():
            with _opening:
                if self._pid != os.getpid():
                    # A forked process: the copied thread lock may be held by a thread that it
                    # does not have. Record locks are per process: the descriptor it inherited
                    # serves it as well as its own would.
                    self._threads = threading.Lock()
                    if self._fd is None:
                        self._fd = os.open(self._path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
                    self._pid = os.getpid()
        assert self._fd is not None
        return self._fd

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; with ``block=False`` or a ``timeout``, False if it could not be had in time."""
        assert fcntl is not None
        fd = self._file()
        if not block:
            timeout = 0.0
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        if deadline is None:
            self._threads.acquire()
        elif not self._threads.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            if deadline is None:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1)
                return True
            if _lock_by(fd, deadline):
                return True
        except BaseException:
            self._threads.release()
            raise
        self._threads.release()
        return False

    def release(self) -> None:
        """Let the lock go; a RuntimeError if it is not held."""
        assert fcntl is not None
        if not self._threads.locked():
            msg = "release unlocked lock"
            raise RuntimeError(msg)
        fcntl.lockf(self._file(), fcntl.LOCK_UN, 1)
        self._threads.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self.release()

    def close(self) -> None:
        """In the owner: close the file (and remove it where it has a name). Workers need not."""
        if self._pid == self._owner and self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._temp is not None:
                with contextlib.suppress(OSError):
                    Path(self._temp).unlink()

    def __repr__(self) -> str:
        return f"<parmap.ProcessLock {self._path}>"
