"""Serial vs threads vs processes on the articles' four workloads, each timed with ``pmap``.

Run from the repository root::

    .venv/bin/python examples/demo.py            # the full comparison (well under 30 s on 2 cores)
    .venv/bin/python examples/demo.py --quick    # small inputs, a few seconds
    .venv/bin/python examples/demo.py --workers 4 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Worker processes find the mapped functions by module name, and under forkserver or spawn they
# start with this process's sys.path: the directory of workloads.py has to be on it.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from lessons import Machine, cpu_share, lesson  # noqa: E402 - sys.path above
from workloads import FULL, QUICK, Workload, article_workloads, positive_int  # noqa: E402

import parmap  # noqa: E402
from parmap import pmap  # noqa: E402

MODES = ("serial", "thread", "process")
_LONG = 1.0  # seconds: a run this long is timed once


class MismatchError(Exception):
    """Two modes returned different results."""


@dataclass(frozen=True)
class Result:
    """Seconds per mode for one workload."""

    workload: Workload
    seconds: dict[str, float]

    def speedup(self, mode: str) -> float:
        return self.seconds["serial"] / self.seconds[mode]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="much smaller inputs (a few seconds)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="workers for thread and process mode (default: pmap's defaults)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        help="runs per measurement, median reported (default: 3, or 1 with --quick)",
    )
    return parser.parse_args(argv)


def _warm_up() -> None:
    """Start the fork server, so that no mode pays for it alone (it is started once per interpreter)."""
    pmap(abs, [0], mode="process", workers=1)


def _time_once(work: Workload, mode: str, workers: int | None) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    got = pmap(work.fn, work.items, mode=mode, workers=workers)
    return time.perf_counter() - start, got


def _time_modes(work: Workload, workers: int | None, repeat: int) -> Result:
    """Median seconds per mode; runs of over ``_LONG`` seconds are not repeated (noise is small)."""
    seconds: dict[str, float] = {}
    expected: list[Any] | None = None
    for mode in MODES:
        first, got = _time_once(work, mode, workers)
        runs = [first]
        if first < _LONG:
            runs += [_time_once(work, mode, workers)[0] for _ in range(repeat - 1)]
        seconds[mode] = statistics.median(runs)
        if expected is None:
            expected = got
        elif got != expected:
            msg = f"{work.name}: {mode} mode returned different results from serial mode"
            raise MismatchError(msg)
    return Result(work, seconds)


def _table(results: list[Result]) -> str:
    header = (
        f"{'workload':<24} {'items':>7} {'serial s':>9} {'thread s':>9} {'process s':>9} "
        f"{'thread speedup':>14} {'process speedup':>15}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        s = r.seconds
        lines.append(
            f"{r.workload.name:<24} {len(r.workload.items):>7} {s['serial']:>9.3f} {s['thread']:>9.3f} "
            f"{s['process']:>9.3f} {r.speedup('thread'):>13.2f}x {r.speedup('process'):>14.2f}x"
        )
    return "\n".join(lines)


def _free_cpus(cpus: int) -> float:
    """The CPUs other programs leave free: one process per CPU spins 0.3 s, their shares added."""
    shares = pmap(cpu_share, [0.3] * cpus, mode="process", workers=cpus, chunksize=1)
    return min(float(cpus), sum(shares))


def main(argv: list[str] | None = None) -> int:
    """Time every workload in every mode, check the results agree, print the table."""
    args = _parse(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    cpus = parmap.available_cpus()
    began = time.perf_counter()

    _warm_up()
    free = _free_cpus(cpus)
    workers = (
        "pmap's defaults (processes: one per CPU; threads: CPUs + 4, at most 32)"
        if args.workers is None
        else f"{args.workers} (--workers)"
    )
    print(f"parmap demo{' (--quick)' if args.quick else ''}: serial vs thread vs process, timed with pmap")
    print(f"CPUs available: {cpus} (parmap.available_cpus()); workers: {workers}")
    print(
        f"each time: median of {repeat} run(s), 1 run where one takes over {_LONG:.0f} s; files read and "
        "fork server started once before timing; results checked equal across modes"
    )
    print()

    with article_workloads(sizes) as workloads:
        try:
            results = [_time_modes(work, args.workers, repeat) for work in workloads]
        except MismatchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    free = min(free, _free_cpus(cpus))  # the lower of before and after: the load may have changed
    machine = Machine(cpus=cpus, workers=args.workers, free=free)
    print(_table(results))
    print()
    print(f"CPUs free of other programs' work (measured before and after, the lower): {free:.1f} of {cpus}")
    print("What this run shows (from the table above):")
    for r in results:
        text = lesson(r.workload.name, r.workload.kind, r.seconds, len(r.workload.items), machine)
        print(textwrap.fill(text, width=100, initial_indent="  - ", subsequent_indent="    "))
    print()
    print(f"total wall-clock time: {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
