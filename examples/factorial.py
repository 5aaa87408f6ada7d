"""Many tiny CPU tasks (products of 1..~300): where sending items one by one costs more than the work.

Each item takes a few tens of microseconds. ``chunksize=1`` sends every item on its own
round trip to a worker process, like ``Pool.map(fn, items, chunksize=1)``; parmap's automatic
chunks measure the work and group items so that the round trips become negligible.

    .venv/bin/python examples/factorial.py [--items 20000] [--workers N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import factorial_task, positive_int

from parmap import pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=positive_int, default=20_000)
    parser.add_argument("--workers", type=positive_int, default=None, help="default: one per CPU")
    args = parser.parse_args()
    items = range(args.items)
    pmap(abs, [0], workers=1)  # start the fork server first, so that no run below pays for it

    start = time.perf_counter()
    expected = [factorial_task(n) for n in items]
    serial = time.perf_counter() - start
    print(f"{args.items} products of 1..~300")
    print(f"  for loop                          {serial:6.3f} s")

    runs = {
        "pmap mode='thread'": {"mode": "thread"},
        "pmap chunksize=1 (item by item)": {"chunksize": 1},
        "pmap (automatic chunks)": {},
    }
    for name, options in runs.items():
        start = time.perf_counter()
        got = pmap(factorial_task, items, workers=args.workers, **options)
        seconds = time.perf_counter() - start
        assert got == expected, name
        print(f"  {name:<32}  {seconds:6.3f} s  speedup {serial / seconds:.2f}x")


if __name__ == "__main__":
    main()
