"""What the workers run in tests/test_fault_injection.py: one item, and how it goes wrong.

A module of its own, imported by name, so that spawned and fork-server workers find it (as
tests/helpers.py). An item is ``(kind, x, opts)``: ``kind`` is "ok" or one of ``FAULTS``,
``x`` the item's index, ``opts`` the draw's: ``lock`` (take ``parmap.lock()`` a moment
first), ``sleep`` (seconds, past the timeout, for "sleep") and ``dir`` (where "fork" notes
the pids of the children it leaves).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import parmap

#: Set by the test once a draw is over: what waits on it in the test process (thread mode)
#: stops then. In a worker process nothing sets it, so it is a plain sleep there.
RELEASE = threading.Event()
PICKLE_S = 0.3  # how long a "slow-pickle" result takes to pickle
#: How long a "stuck" item, and a thread or a child that fn leaves behind, last. Longer than any
#: draw's hang bound, so that a map which waits for them (rather than kill the worker after a
#: grace period, or abandon a stuck thread) is reported as a hang, not merely as slow.
LINGER_S = 60.0


def value(x: int) -> int:
    """What ``run_item`` returns for item ``x`` when nothing goes wrong."""
    return x * x + 1


class SlowPickle:
    """A result that takes ``PICKLE_S`` to pickle; it arrives as the plain int."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __reduce__(self) -> tuple[type[int], tuple[int]]:
        time.sleep(PICKLE_S)
        return int, (self.v,)


def _raise(x: int, _: dict[str, Any]) -> int:
    raise ValueError(f"fault on item {x}")


def _exit(_x: int, _: dict[str, Any]) -> int:
    os._exit(3)


def _kill(_x: int, _: dict[str, Any]) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # (the signal may take a moment)
    raise AssertionError("survived SIGKILL")


def _sleep(x: int, opts: dict[str, Any]) -> int:
    RELEASE.wait(opts["sleep"])
    return value(x)


def _stuck(x: int, _: dict[str, Any]) -> int:
    RELEASE.wait(LINGER_S)  # past any hang bound: a pool that waits for a stuck thread hangs
    return value(x)


def _unpicklable(x: int, _: dict[str, Any]) -> object:
    return {"lock": threading.Lock(), "fn": lambda: x}  # neither pickle nor cloudpickle takes a lock


def _slow_pickle(x: int, _: dict[str, Any]) -> object:
    return SlowPickle(value(x))


def _thread(x: int, _: dict[str, Any]) -> int:
    threading.Thread(target=RELEASE.wait, args=(LINGER_S,), name="fault-lingering", daemon=False).start()
    return value(x)


def _fork(x: int, opts: dict[str, Any]) -> int:
    with warnings.catch_warnings():  # 3.12+: "this process is multi-threaded, use of fork()..."
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: outlive the worker, holding a copy of its pipes
        try:
            time.sleep(LINGER_S)
        finally:
            os._exit(0)
    with (Path(opts["dir"]) / "children").open("a") as f:
        f.write(f"{pid}\n")
    return value(x)


def _ignore_sigterm(x: int, _: dict[str, Any]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return value(x)


def _die_in_lock(_x: int, _: dict[str, Any]) -> int:
    with parmap.lock():
        os._exit(1)


FAULTS: dict[str, Callable[[int, dict[str, Any]], object]] = {
    "raise": _raise,
    "exit": _exit,
    "kill": _kill,
    "sleep": _sleep,
    "stuck": _stuck,
    "unpicklable": _unpicklable,
    "slow-pickle": _slow_pickle,
    "thread": _thread,
    "fork": _fork,
    "sigterm": _ignore_sigterm,
    "lock-death": _die_in_lock,
}


def run_item(item: tuple[str, int, dict[str, Any]]) -> object:
    """Run item ``(kind, x, opts)``: ``value(x)``, unless ``kind`` says how it goes wrong."""
    kind, x, opts = item
    if opts.get("lock") and kind != "lock-death":
        with parmap.lock():  # every item takes the lock a moment: a lock left held would show
            pass
    if kind == "ok":
        return value(x)
    return FAULTS[kind](x, opts)


def children_left(folder: Path) -> list[int]:
    """The pids of the children that "fork" items started, as noted under ``folder``."""
    path = folder / "children"
    return [int(line) for line in path.read_text().split()] if path.exists() else []
