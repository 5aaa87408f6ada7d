"""Results as they complete, with a callback: what ``Pool.apply_async(..., callback=)`` was used for.

Tasks of different lengths are handed out in input order. ``ordered=True`` (the default)
delivers their results in that order, so a slow first task holds back every result after it;
``ordered=False`` delivers each result as soon as it is ready, and ``indexed=True`` says which
input it belongs to. The callback runs in the caller's thread (here: the main thread), one
result at a time, so it may touch a list, a file or a database handle without a lock.

    .venv/bin/python examples/as_completed.py [--mode thread|process] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import threading
import time

from parmap import pmap

# Seconds each task takes: the first one is the slowest.
DURATIONS = [0.8, 0.2, 0.5, 0.1, 0.4, 0.3]


def task(seconds: float) -> float:
    """Work for ``seconds`` (here: wait), return how long."""
    time.sleep(seconds)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["thread", "process"], default="thread")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every duration by this")
    args = parser.parse_args()
    durations = [d * args.scale for d in DURATIONS]
    workers = len(durations)  # every task starts at once: completion order is duration order
    began = time.perf_counter()

    def report(result: tuple[int, float]) -> None:
        index, seconds = result
        elapsed = time.perf_counter() - began
        where = threading.current_thread().name
        print(f"  +{elapsed:5.2f} s  input {index} done ({seconds:.2f} s of work), in {where}")

    print(f"ordered=True ({args.mode} mode): every result waits for the slowest one before it")
    began = time.perf_counter()
    pmap(task, durations, mode=args.mode, workers=workers, chunksize=1, indexed=True, callback=report)

    print("ordered=False: each result as soon as it is ready")
    began = time.perf_counter()
    results = pmap(
        task,
        durations,
        mode=args.mode,
        workers=workers,
        chunksize=1,  # completion order is per chunk: one item per chunk reports each item at once
        ordered=False,
        indexed=True,
        callback=report,
    )
    print(f"returned in completion order: {[index for index, _ in results]}")
    print(f"back in input order: {[round(seconds, 2) for _, seconds in sorted(results)]}")


if __name__ == "__main__":
    main()
