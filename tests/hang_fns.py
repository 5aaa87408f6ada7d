"""Functions for tests/test_hangs.py, run in worker processes (importable under every start method)."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import parmap

FOREVER = 60.0  # seconds: longer than any test waits; the worker is killed long before


def meet(folder: str, n: int, seconds: float = 30.0) -> None:
    """Wait until ``n`` processes have called this with ``folder`` (a rendezvous across processes)."""
    Path(folder, f"{os.getpid()}-{threading.get_ident()}").touch()
    deadline = time.monotonic() + seconds
    while len(os.listdir(folder)) < n:  # noqa: PTH208 - a count
        if time.monotonic() > deadline:
            msg = f"only {len(os.listdir(folder))} of {n} arrived"  # noqa: PTH208
            raise TimeoutError(msg)
        time.sleep(0.005)


def stuck_on_first_two(x: int) -> int:
    if x < 2:
        time.sleep(FOREVER)
    return x


def in_the_lock(item: tuple[int, str]) -> int:
    """Take parmap.lock(), then: "exit", "kill" (SIGKILL), "hang" (until a timeout kills it), or return."""
    x, fate = item
    with parmap.lock():
        if fate == "exit":
            os._exit(7)
        if fate == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fate == "hang":
            time.sleep(FOREVER)
    return x


def deaf(x: int) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return x


def leave_a_thread(x: int) -> int:
    """Start a non-daemon thread that outlives fn: the worker's exit waits for it."""
    threading.Thread(target=time.sleep, args=(FOREVER,), name=f"left-behind-{x}").start()
    return x


def fork_a_child(item: tuple[int, str, bool]) -> int:
    """Fork a child that outlives fn (it holds copies of the worker's pipes); maybe die after."""
    x, folder, die = item
    with warnings.catch_warnings():  # 3.12+: fork in a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        time.sleep(FOREVER)
        os._exit(0)
    Path(folder, str(pid)).touch()  # for the test to end it
    if die:
        os._exit(5)
    return x


def deaf_to_sigterm(item: tuple[int, str]) -> int:
    """Ignore SIGTERM; items 0 and 1 meet (so both workers are deaf), then item 0 fails.

    The others hang: no result comes back to have the pool tell a worker to stop.
    """
    x, folder = item
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if x < 2:
        meet(folder, 2)
    if x == 0:
        raise ValueError(x)
    time.sleep(FOREVER)
    return x


class SlowToPickle:
    """A result whose pickling takes ``seconds``."""

    def __init__(self, x: int, seconds: float) -> None:
        self.x, self.seconds = x, seconds

    def __reduce__(self) -> tuple[Any, ...]:
        time.sleep(self.seconds)
        return SlowToPickle, (self.x, 0.0)


def slow_result_on_4(x: int) -> Any:
    return SlowToPickle(x, FOREVER) if x == 4 else x
