"""The cost of two conveniences: a progress bar, and a pool kept across calls.

1. ``progress=``: 200,000 trivial items with and without a tqdm bar (drawn to /dev/null),
   per mode; the bar must cost under 10%.
2. A reusable pool: 100 consecutive one-item maps through one ``ProcessAdapter``, average ms
   per map (must be under 2 ms), against a fresh pool per call; the worker pids must not change.

Run from the repository root::

    .venv/bin/python benchmarks/bench_features.py [--repeat 7] [--quick]
"""

from __future__ import annotations

import argparse
import operator
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

_EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

from workloads import positive_int  # type: ignore[import-not-found]  # noqa: E402 - sys.path above

from parmap import ProcessAdapter, pmap  # noqa: E402


def _median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _once(data: list[int], mode: str, *, progress: object) -> float:
    started = time.perf_counter()
    pmap(operator.neg, data, mode=mode, progress=progress)
    return time.perf_counter() - started


def progress_overhead(items: int, repeat: int) -> list[str]:
    data = list(range(items))
    lines = [f"{'mode':<10} {'no bar ms':>10} {'bar ms':>10} {'overhead':>9}"]
    with Path(os.devnull).open("w") as devnull:
        for mode in ("serial", "thread", "process"):
            # Alternate the two so that drift on a noisy machine hits both alike.
            plain: list[float] = []
            bar: list[float] = []
            for _ in range(repeat):
                plain.append(_once(data, mode, progress=False))
                bar.append(_once(data, mode, progress={"file": devnull}))
            a, b = statistics.median(plain), statistics.median(bar)
            lines.append(f"{mode:<10} {a * 1e3:>10.1f} {b * 1e3:>10.1f} {(b / a - 1) * 100:>8.1f}%")
    return lines


def pool_reuse(maps: int, repeat: int) -> list[str]:
    with ProcessAdapter(workers=2) as pool:
        pmap(operator.neg, [1], mode=pool)  # the first call starts the worker
        pids = set(pool.pids())
        reused = _median_seconds(lambda: [pmap(operator.neg, [1], mode=pool) for _ in range(maps)], repeat)
        same = set(pool.pids()) == pids
    fresh = _median_seconds(lambda: [pmap(operator.neg, [1], mode="process") for _ in range(10)], repeat) / 10
    return [
        f"{maps} one-item maps through one pool: {reused / maps * 1e3:.3f} ms per map",
        f"worker pids unchanged across them: {same}",
        f"one-item map with a fresh pool each time: {fresh * 1e3:.2f} ms per map",
    ]


def main(argv: list[str] | None = None) -> int:
    """Print both measurements."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=positive_int, default=7, help="runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="small inputs: a fast smoke run")
    args = parser.parse_args(argv)
    items = 20_000 if args.quick else 200_000
    pmap(abs, [0], mode="process")  # start the fork server once, outside the timings
    print(f"== progress bar on {items:,} trivial items (median of {args.repeat}) ==")
    print("\n".join(progress_overhead(items, args.repeat)))
    print()
    print("== reusable pool ==")
    print("\n".join(pool_reuse(100, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
