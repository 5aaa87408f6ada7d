"""``amap`` and ``mode="async"`` against hand-written asyncio, and the event loop's lag during a map.

1. sleep: 1,000 items of ``await asyncio.sleep(0.02)``, 500 in flight: ``await amap(...)``,
   ``async for`` over ``amap(...)`` and ``pmap(..., mode="async")`` from sync code, against
   ``asyncio.gather`` under an ``asyncio.Semaphore(500)``. Goal: ``await amap`` within 1.2x of
   gather.
2. crawler: 400 pages of a local HTTP server (20 ms each), 100 in flight, fetched with
   ``examples/workloads.afetch``: the same three against gather + ``Semaphore(100)``.
3. loop lag: a heartbeat coroutine (``asyncio.sleep(0.001)`` in a loop, worst lateness kept)
   while a process map of 200,000 small CPU items runs as ``async for ... in amap(...)``, as
   ``await amap(...)``, as ``await asyncio.to_thread(pmap, ...)``, and as a blocking
   ``pmap(...)`` in the coroutine.

Rounds are interleaved: each runs every variant once, starting one further along each round.
The async variants are timed inside their coroutine (the loop's start and close are not in
the timing); ``pmap`` from sync code is timed around the call. Process maps use the fork
server (``PARMAP_START_METHOD=forkserver`` unless set), started before the first timing.

Run from the repository root::

    .venv/bin/python benchmarks/bench_async.py [--repeat 5] [--quick] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_EXAMPLES = str(HERE.parent / "examples")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

from _git import git_state  # noqa: E402 - sys.path above
from workloads import afetch, positive_int, start_server  # type: ignore[import-not-found]  # noqa: E402 - sys.path above

import parmap  # noqa: E402
from parmap import pmap  # noqa: E402

NAP = 0.02  # seconds each item of the sleep workload awaits
BEAT = 0.001  # the heartbeat's period
GOAL = 1.2  # await amap(...) / gather + Semaphore, sleep workload


@dataclass(frozen=True)
class Sizes:
    sleep_items: int
    sleep_in_flight: int
    pages: int
    page_delay: float
    crawl_in_flight: int
    cpu_items: int


FULL = Sizes(
    sleep_items=1_000,
    sleep_in_flight=500,
    pages=400,
    page_delay=0.02,
    crawl_in_flight=100,
    cpu_items=200_000,
)
QUICK = Sizes(
    sleep_items=200,
    sleep_in_flight=100,
    pages=40,
    page_delay=0.02,
    crawl_in_flight=20,
    cpu_items=20_000,
)


# --- the items' functions (top level: the process map's workers import them from here) -----


async def nap(x: int) -> int:
    """Await NAP seconds; return the item."""
    await asyncio.sleep(NAP)
    return x


def cpu(x: int) -> int:
    """A few microseconds of pure-Python CPU work."""
    return sum(i * i for i in range(x % 50))


# --- the hand-written reference ----------------------------------------------------------------


async def gather_limited(fn: Callable[[Any], Awaitable[Any]], items: Iterable[Any], limit: int) -> list[Any]:
    """``asyncio.gather`` of every item, at most ``limit`` in flight (an ``asyncio.Semaphore``)."""
    semaphore = asyncio.Semaphore(limit)

    async def one(item: Any) -> Any:
        async with semaphore:
            return await fn(item)

    return await asyncio.gather(*(one(item) for item in items))


# --- timing ------------------------------------------------------------------------------------

# A variant runs once and returns (seconds, results); results are checked against the reference.
Variant = Callable[[], tuple[float, list[Any]]]


def timed_in_loop(make: Callable[[], Awaitable[list[Any]]]) -> Variant:
    """A coroutine's time, measured inside a fresh event loop (asyncio.run)."""

    async def measure() -> tuple[float, list[Any]]:
        started = time.perf_counter()
        results = await make()
        return time.perf_counter() - started, results

    return lambda: asyncio.run(measure())


def timed_sync(call: Callable[[], list[Any]]) -> Variant:
    """A plain call's time, outside any event loop."""

    def measure() -> tuple[float, list[Any]]:
        started = time.perf_counter()
        results = call()
        return time.perf_counter() - started, results

    return measure


async def collect(results: parmap.AsyncMap[Any]) -> list[Any]:
    return [r async for r in results]


def interleaved(variants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Run every variant once per round, starting one further along each round."""
    names = list(variants)
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(variants[name]())
    return out


class MismatchError(Exception):
    pass


def check(name: str, got: list[Any], expected: list[Any]) -> None:
    if got != expected:
        msg = f"{name}: {len(got)} results differ from the reference's {len(expected)}"
        raise MismatchError(msg)


def time_table(
    runs: dict[str, list[tuple[float, list[Any]]]], expected: list[Any], reference: str
) -> tuple[list[str], dict[str, float]]:
    """Markdown rows (median, min, max, ratio to the reference) and the medians."""
    medians: dict[str, float] = {}
    for name, got in runs.items():
        for _, results in got:
            check(name, results, expected)
        medians[name] = statistics.median(seconds for seconds, _ in got)
    rows = [
        "| variant | median s | min s | max s | / gather |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, got in runs.items():
        times = [seconds for seconds, _ in got]
        ratio = medians[name] / medians[reference]
        rows.append(f"| {name} | {medians[name]:.4f} | {min(times):.4f} | {max(times):.4f} | {ratio:.2f}x |")
    return rows, medians


def async_variants(
    fn: Callable[[Any], Awaitable[Any]], items: list[Any], limit: int, reference: str, *, label: str = ""
) -> dict[str, Variant]:
    """The four ways to run ``fn`` over ``items`` with ``limit`` in flight, the reference among them."""
    return {
        f"await amap({label}workers={limit})": timed_in_loop(
            lambda: parmap.amap(fn, items, mode="async", workers=limit)
        ),
        reference: timed_in_loop(lambda: gather_limited(fn, items, limit)),
        f'pmap({label}mode="async", workers={limit}), sync caller': timed_sync(
            lambda: pmap(fn, items, mode="async", workers=limit)
        ),
        f"async for over amap({label}workers={limit})": timed_in_loop(
            lambda: collect(parmap.amap(fn, items, mode="async", workers=limit))
        ),
    }


# --- 1. sleep ----------------------------------------------------------------------------------


def bench_sleep(sizes: Sizes, rounds: int) -> tuple[list[str], bool]:
    n, limit = sizes.sleep_items, sizes.sleep_in_flight
    items = list(range(n))
    reference = f"gather + Semaphore({limit})"
    variants = async_variants(nap, items, limit, reference)
    rows, medians = time_table(interleaved(variants, rounds), items, reference)
    ideal = -(-n // limit) * NAP
    ratio = medians[f"await amap(workers={limit})"] / medians[reference]
    passed = ratio <= GOAL
    lines = [
        f"### sleep: {n:,} items of `await asyncio.sleep({NAP})`, {limit} in flight",
        "",
        *rows,
        "",
        (
            f"Ideal (waves x sleep): {ideal:.4f} s. "
            f"Goal: `await amap` within {GOAL}x of gather + Semaphore: "
            f"{ratio:.2f}x, **{'PASS' if passed else 'MISS'}**."
        ),
    ]
    return lines, passed


# --- 2. crawler --------------------------------------------------------------------------------


def bench_crawler(sizes: Sizes, rounds: int) -> list[str]:
    pages, limit = sizes.pages, sizes.crawl_in_flight
    base, stop = start_server(pages=pages, delay=sizes.page_delay)
    try:
        urls = [f"{base}/page/{i}" for i in range(pages)]
        expected = asyncio.run(gather_limited(afetch, urls, limit))  # also warms the server up
        reference = f"gather + Semaphore({limit})"
        variants = async_variants(afetch, urls, limit, reference, label="afetch, ")
        rows, _ = time_table(interleaved(variants, rounds), expected, reference)
    finally:
        stop()
    ideal = -(-pages // limit) * sizes.page_delay
    return [
        f"### crawler: {pages} local pages, {sizes.page_delay * 1000:.0f} ms each, {limit} in flight",
        "",
        *rows,
        "",
        (
            f"Ideal (waves x delay): {ideal:.4f} s; the server is a `ThreadingHTTPServer` in this "
            "process (a thread per request), so it competes with the client for the GIL."
        ),
    ]


# --- 3. loop lag -------------------------------------------------------------------------------


@dataclass
class Lag:
    worst: float  # the heartbeat's worst lateness, s
    p99: float  # its 99th percentile, s
    ticks: int
    seconds: float  # the map's time (the idle baseline: how long the heartbeat ran)


async def heartbeat(stop: asyncio.Event, out: list[float]) -> None:
    """Sleep BEAT in a loop until ``stop``; append each wake-up's lateness to ``out``."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(BEAT)
        out.append(time.perf_counter() - started - BEAT)


async def with_heartbeat(work: Callable[[], Awaitable[list[Any] | None]]) -> tuple[Lag, list[Any] | None]:
    stop = asyncio.Event()
    lateness: list[float] = []
    beat = asyncio.create_task(heartbeat(stop, lateness))
    await asyncio.sleep(0.02)  # the heartbeat is running before the work starts
    lateness.clear()
    started = time.perf_counter()
    results = await work()
    seconds = time.perf_counter() - started
    await asyncio.sleep(0.01)  # the heartbeat wakes, and records how late it is
    stop.set()
    await beat
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99)] if lateness else 0.0
    return Lag(max(lateness, default=0.0), p99, len(lateness), seconds), results


def bench_lag(sizes: Sizes, rounds: int) -> list[str]:
    n = sizes.cpu_items
    expected = [cpu(x) for x in range(n)]
    idle_seconds = 0.3

    async def idle() -> None:
        await asyncio.sleep(idle_seconds)

    async def amap_iterated() -> list[Any]:
        return [r async for r in parmap.amap(cpu, range(n), mode="process")]

    async def amap_awaited() -> list[Any]:
        return await parmap.amap(cpu, range(n), mode="process")

    async def to_thread() -> list[Any]:
        return await asyncio.to_thread(pmap, cpu, range(n), mode="process")

    async def blocking() -> list[Any]:
        return pmap(cpu, range(n), mode="process")  # blocks the loop: what amap avoids

    works: dict[str, Callable[[], Awaitable[list[Any] | None]]] = {
        f'async for over amap(cpu, range({n:,}), mode="process")': amap_iterated,
        "await amap(...) (the same map, results all at once)": amap_awaited,
        'await asyncio.to_thread(pmap, ..., mode="process")': to_thread,
        'pmap(..., mode="process") called in the coroutine': blocking,
        f"nothing (the heartbeat alone, {idle_seconds} s)": idle,
    }
    variants = {name: (lambda work=work: asyncio.run(with_heartbeat(work))) for name, work in works.items()}
    runs: dict[str, list[tuple[Lag, list[Any] | None]]] = interleaved(variants, rounds)
    rows = [
        "| while the loop runs | worst lag ms (median) | worst lag ms (max) | p99 lag ms | beats | map s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, got in runs.items():
        for _, results in got:
            if results is not None:
                check(name, results, expected)
        worst = [lag.worst * 1e3 for lag, _ in got]
        p99 = statistics.median(lag.p99 * 1e3 for lag, _ in got)
        ticks = statistics.median(lag.ticks for lag, _ in got)
        seconds = statistics.median(lag.seconds for lag, _ in got)
        map_s = f"{seconds:.3f}" if "nothing" not in name else ""
        rows.append(
            f"| {name} | {statistics.median(worst):.1f} | {max(worst):.1f} | {p99:.1f} | {ticks:.0f} "
            f"| {map_s} |"
        )
    return [
        f"### loop lag: a {BEAT * 1e3:.0f} ms heartbeat during a process map of {n:,} small CPU items",
        "",
        *rows,
        "",
        (
            "Worst lag: the heartbeat's latest wake-up past its 1 ms sleep, during the map and just "
            "after it (median and max over the rounds); p99: the 99th percentile of its lateness "
            "(median over the rounds). beats: how many times it woke (median). map s: the map's "
            "median time, starting and stopping its worker processes included."
        ),
    ]


# --- the header --------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load() -> str:
    """The load averages; on Linux the whole of /proc/loadavg (runnable/total tasks too)."""
    try:
        return Path("/proc/loadavg").read_text(encoding="ascii").strip() + " (/proc/loadavg)"
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(rounds: int, quick: bool) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"# parmap async benchmark: {rounds} round(s){', --quick' if quick else ''}",
        "",
        f"- **date**: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- **cores**: {os.cpu_count()} logical, {usable} usable",
        f"- **os**: {platform.platform()}",
        f"- **python**: {platform.python_implementation()} {platform.python_version()}",
        f"- **parmap**: {_version('parmap')} ({git_state()})",
        f"- **start method of process maps**: {os.environ.get('PARMAP_START_METHOD')}",
        f"- **load average at start**: {_load()}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Print the three tables; write them to ``--out`` if given."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=positive_int, default=5, help="rounds (medians over them)")
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 round: a smoke run")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    sizes, rounds = (QUICK, 1) if args.quick else (FULL, args.repeat)

    os.environ.setdefault("PARMAP_START_METHOD", "forkserver")  # as amap's threads make it anyway
    pmap(abs, [0], mode="process")  # start the fork server once, outside the timings

    began = time.perf_counter()
    lines = header(rounds, args.quick)
    print("\n".join(lines), flush=True)
    sections: list[list[str]] = []
    try:
        sleep_lines, passed = bench_sleep(sizes, rounds)
        sections.append(sleep_lines)
        print("\n" + "\n".join(sleep_lines), flush=True)
        for bench in (bench_crawler, bench_lag):
            sections.append(bench(sizes, rounds))
            print("\n" + "\n".join(sections[-1]), flush=True)
    except MismatchError as exc:
        print(f"\nwrong results: {exc}", file=sys.stderr)
        return 1
    footer = [
        f"- **load average at end**: {_load()}",
        f"- **wall time of the whole run**: {time.perf_counter() - began:.0f} s",
        f"- **goal** (`await amap` within {GOAL}x of gather, sleep): {'PASS' if passed else 'MISS'}",
    ]
    print("\n" + "\n".join(footer))
    if args.out is not None:
        text = [*lines, *footer, ""]
        for section in sections:
            text += ["", *section]
        args.out.write_text("\n".join(text) + "\n", encoding="utf-8")
        print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
