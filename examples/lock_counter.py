"""A counter in a file, incremented by many workers: wrong without a lock, right with one.

The articles' lock example: a lock cannot be pickled and sent with each task, so the pool must
hand it to every worker when the worker starts. ``pmap(..., lock=True)`` does that, and ``fn``
reaches it as ``parmap.lock()``.

    .venv/bin/python examples/lock_counter.py [--increments 60] [--mode process]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import parmap
from parmap import pmap


def increment(path: str) -> None:
    """Read the counter, think a little, write it back plus one (a race without the lock)."""
    counter = Path(path)
    value = int(counter.read_text() or 0)  # without the lock, another worker may be mid-write
    time.sleep(0.005)  # the window in which another worker reads the same value
    counter.write_text(str(value + 1))


def locked_increment(path: str) -> None:
    """The same, with the read-modify-write under the lock every worker shares."""
    with parmap.lock():
        increment(path)


def count(fn: Callable[[str], None], increments: int, mode: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        counter = Path(tmp) / "counter.txt"
        counter.write_text("0")
        items = [str(counter)] * increments
        pmap(fn, items, mode=mode, workers=2, chunksize=1, lock=fn is locked_increment)
        return int(counter.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--increments", type=int, default=60)
    parser.add_argument("--mode", choices=["thread", "process"], default="process")
    args = parser.parse_args()
    unlocked = count(increment, args.increments, args.mode)
    locked = count(locked_increment, args.increments, args.mode)
    print(f"{args.increments} increments by 2 {args.mode} workers")
    print(f"  without a lock: counter = {unlocked}  (increments lost to the race)")
    print(f"  with lock=True: counter = {locked}")


if __name__ == "__main__":
    main()
