"""Brute-force gcd of a few big pairs: CPU-bound pure Python, so processes win and threads do not.

The slow loop is ``[gcd(pair) for pair in pairs]``; the parallel one is ``pmap(gcd, pairs)``.
Each pair is a task of tens of milliseconds, so even six of them spread over every worker
(automatic chunks start at one item each).

    .venv/bin/python examples/gcd_pairs.py [--pairs 6] [--workers N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import GCD_PAIRS, gcd, positive_int

from parmap import pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=positive_int, default=len(GCD_PAIRS), help="how many pairs (max 6)")
    parser.add_argument("--workers", type=positive_int, default=None, help="default: one per CPU")
    args = parser.parse_args()
    pairs = GCD_PAIRS[: args.pairs]

    start = time.perf_counter()
    expected = [gcd(pair) for pair in pairs]  # the loop we started from
    serial = time.perf_counter() - start

    timings = {}
    for mode in ("thread", "process"):
        start = time.perf_counter()
        got = pmap(gcd, pairs, mode=mode, workers=args.workers)  # the one-line change
        timings[mode] = time.perf_counter() - start
        assert got == expected, (mode, got, expected)

    print(f"gcd of {len(pairs)} pairs: {expected}")
    print(f"  for loop              {serial:6.3f} s")
    for mode, seconds in timings.items():
        print(f"  pmap mode={mode!r:<10} {seconds:6.3f} s  speedup {serial / seconds:.2f}x")


if __name__ == "__main__":
    main()
