"""pmap against the other ways to map in parallel, one call each, on the same workloads.

Every timing is one complete call as a user would write it: starting the pool, mapping, and
stopping the pool are all inside it. Each measurement is repeated and its median reported.
Compared: pmap (serial, thread, process), ``multiprocessing.Pool.map``,
``ProcessPoolExecutor.map`` (default ``chunksize=1`` and a tuned one), ``ThreadPoolExecutor.map``,
and, when installed (``pip install '.[bench]'``), joblib and mpire.

Run from the repository root::

    .venv/bin/python benchmarks/bench_modes.py                 # a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_modes.py --quick --repeat 1
    .venv/bin/python benchmarks/bench_modes.py --workers 4 --only gcd --only crawler
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import importlib.metadata
import math
import multiprocessing
import operator
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The workloads live in examples/; worker processes (spawn, forkserver) inherit this sys.path.
_EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

from workloads import FULL, QUICK, Workload, article_workloads, positive_int  # noqa: E402 - sys.path above

import parmap  # noqa: E402
from parmap import pmap  # noqa: E402

# Python 3.12+ warns when forking while threads run. Only the crawler's local page server
# thread is alive when fork-based pools start, and the children never touch it.
warnings.filterwarnings(
    "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
)

Fn = Callable[[Any], Any]
Runner = Callable[[Fn, list[Any], int], list[Any]]

REFERENCE = "pmap process"
CHUNKSIZE_1_CAP = 20_000  # ProcessPoolExecutor with chunksize=1 costs ~0.1 ms per item in IPC alone
LONG_RUN = 20.0  # seconds: a run this long is not repeated


# --- the configurations ------------------------------------------------------------------------


def _optional(name: str) -> Any | None:
    """The module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _pmap(mode: str) -> Runner:
    def run(fn: Fn, items: list[Any], workers: int) -> list[Any]:
        return pmap(fn, items, mode=mode, workers=workers)

    return run


def _mp_pool(fn: Fn, items: list[Any], workers: int) -> list[Any]:
    with multiprocessing.Pool(workers) as pool:
        out = pool.map(fn, items)
        pool.close()
        pool.join()  # counted, as pmap's and the executors' shutdowns are
    return out


def _ppe(chunksize: int | None) -> Runner:
    def run(fn: Fn, items: list[Any], workers: int) -> list[Any]:
        size = chunksize if chunksize is not None else _tuned_chunksize(len(items), workers)
        with ProcessPoolExecutor(workers) as ex:
            return list(ex.map(fn, items, chunksize=size))

    return run


def _tuned_chunksize(n: int, workers: int) -> int:
    """Four chunks per worker: ``multiprocessing.Pool``'s own rule."""
    return max(1, math.ceil(n / (4 * workers)))


def _tpe(fn: Fn, items: list[Any], workers: int) -> list[Any]:
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def _joblib(fn: Fn, items: list[Any], workers: int) -> list[Any]:
    joblib = importlib.import_module("joblib")
    loky = importlib.import_module("joblib.externals.loky")
    out: list[Any] = joblib.Parallel(n_jobs=workers)(joblib.delayed(fn)(x) for x in items)
    # loky keeps its workers for the next call; stop them so that, like every other row,
    # the timing includes starting and stopping the pool.
    loky.get_reusable_executor(max_workers=workers, reuse=True).shutdown(wait=True)
    return out


def _mpire(fn: Fn, items: list[Any], workers: int) -> list[Any]:
    mpire = importlib.import_module("mpire")
    # mpire unpacks tuples, lists and dicts into arguments: wrap them to pass them whole.
    args: list[Any] = items
    if items and isinstance(items[0], (tuple, list, dict)):
        args = [(x,) for x in items]
    with mpire.WorkerPool(n_jobs=workers) as pool:
        return list(pool.map(fn, args))


@dataclass(frozen=True)
class Config:
    """One way of mapping: a name, how to run it, and whether it uses threads."""

    name: str
    run: Runner | None
    threads: bool = False
    cap: int | None = None  # run on at most this many items (it would take too long otherwise)
    chunksize_note: str = ""  # when set, the note shows the chunk size n/(4w) after this prefix
    skip: str = ""  # why it is not run, when it is not


def _configs() -> list[Config]:
    have_joblib = _optional("joblib") is not None
    have_mpire = _optional("mpire") is not None
    extra = "not installed: pip install '.[bench]'"
    return [
        Config("pmap serial", _pmap("serial")),
        Config("pmap thread", _pmap("thread"), threads=True),
        Config(REFERENCE, _pmap("process")),
        Config("multiprocessing.Pool.map", _mp_pool, chunksize_note="its default "),
        Config("ProcessPoolExecutor.map chunksize=1", _ppe(1), cap=CHUNKSIZE_1_CAP),
        Config("ProcessPoolExecutor.map chunksize=n/(4w)", _ppe(None), chunksize_note="tuned "),
        Config("ThreadPoolExecutor.map", _tpe, threads=True),
        Config("joblib Parallel (loky)", _joblib if have_joblib else None, skip="" if have_joblib else extra),
        Config("mpire WorkerPool.map", _mpire if have_mpire else None, skip="" if have_mpire else extra),
    ]


# --- the workloads -----------------------------------------------------------------------------


TRIVIAL = {False: 200_000, True: 5_000}  # items of the trivial workload, by --quick


@contextmanager
def _workloads(quick: bool) -> Iterator[list[Workload]]:
    """The articles' workloads plus many trivial items (the per-item overhead, laid bare)."""
    with article_workloads(QUICK if quick else FULL) as articles:
        trivial = Workload("trivial items (operator.neg)", operator.neg, list(range(TRIVIAL[quick])), "tiny")
        yield [*articles, trivial]


# --- measuring and printing ----------------------------------------------------------------------


@dataclass
class Row:
    config: Config
    items: int = 0
    times: list[float] = field(default_factory=list)
    note: str = ""
    failed: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def _measure(config: Config, work: Workload, expected: list[Any], workers: int, repeat: int) -> Row:
    row = Row(config)
    if config.run is None:
        row.note = f"skipped: {config.skip}"
        return row
    items = work.items[: config.cap] if config.cap is not None else work.items
    row.items = len(items)
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            got = config.run(work.fn, items, workers)
        except Exception as exc:
            row.failed = True
            row.note = f"FAILED: {type(exc).__name__}: {exc}"
            return row
        row.times.append(time.perf_counter() - start)
        if got != expected[: len(items)]:
            row.failed = True
            row.note = "FAILED: results differ from the builtin map()"
            return row
        if row.times[-1] > LONG_RUN:
            break
    if row.items < len(work.items):
        row.note = f"* only the first {row.items:,} of {len(work.items):,} items; ratio per item"
    elif config.chunksize_note:
        row.note = f"{config.chunksize_note}chunksize={_tuned_chunksize(row.items, workers)}"
    if len(row.times) < repeat:
        row.note = f"{row.note}; " if row.note else ""
        row.note += f"{len(row.times)} run (over {LONG_RUN:.0f} s)"
    return row


def _per_item(row: Row) -> float:
    return row.median / max(1, row.items)


def _table(work: Workload, rows: list[Row]) -> str:
    ref = next((r for r in rows if r.config.name == REFERENCE and r.times), None)
    head = f"{'configuration':<42} {'items':>8} {'median s':>9} {'min s':>8} {'vs pmap process':>15}  note"
    lines = [f"== {work.name}: {len(work.items):,} items ==", head, "-" * len(head)]
    for r in rows:
        name = f"{r.config.name} (reference)" if r.config.name == REFERENCE else r.config.name
        if not r.times:
            lines.append(f"{name:<42} {'':>8} {'-':>9} {'-':>8} {'-':>15}  {r.note}")
            continue
        capped = r.items < len(work.items)
        if ref is None:
            ratio = "-"
        elif capped:
            ratio = f"{_per_item(r) / _per_item(ref):.2f}x*"
        else:
            ratio = f"{r.median / ref.median:.2f}x"
        items = f"{r.items}{'*' if capped else ''}"
        lines.append(f"{name:<42} {items:>8} {r.median:>9.3f} {min(r.times):>8.3f} {ratio:>15}  {r.note}")
    return "\n".join(line.rstrip() for line in lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs: a fast smoke run")
    parser.add_argument("--repeat", type=positive_int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=parmap.available_cpus(),
        help="processes for every process-based configuration (default: parmap.available_cpus())",
    )
    parser.add_argument(
        "--thread-workers",
        type=positive_int,
        default=None,
        help="threads for the thread-based ones (default: workers + 4, at most 32, as ThreadPoolExecutor)",
    )
    parser.add_argument(
        "--only", action="append", default=[], help="run only workloads whose name contains this (repeatable)"
    )
    parser.add_argument(
        "--deadline",
        type=positive_int,
        default=None,
        help="seconds after which a stuck run is abandoned with a traceback (default: 900, 100 with --quick)",
    )
    return parser.parse_args(argv)


def _version(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"no {name}"


def _header(args: argparse.Namespace, thread_workers: int) -> str:
    versions = [f"parmap {parmap.__version__}"]
    methods = [
        f"pmap {parmap.ProcessAdapter().start_method}",
        f"multiprocessing and concurrent.futures {multiprocessing.get_start_method()}",
    ]
    versions += [_version(name) for name in ("joblib", "mpire")]
    if _optional("joblib") is not None:
        methods.append("joblib loky")
    mpire_context = _optional("mpire.context")
    if mpire_context is not None:
        methods.append(f"mpire {getattr(mpire_context, 'DEFAULT_START_METHOD', '?')}")
    quick = " (--quick)" if args.quick else ""
    what = f"bench_modes{quick}: each timing is one call, pool start-up and shut-down included"
    where = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    workers = f"workers: {args.workers} processes, {thread_workers} threads"
    reference = f"reference: {REFERENCE}; 'vs pmap process' = median time / median time of pmap process"
    return "\n".join(
        [
            f"{what}; median of {args.repeat} run(s)",
            f"{where}; CPUs available: {parmap.available_cpus()}; {', '.join(versions)}",
            f"{workers}; start methods: {', '.join(methods)}",
            f"{reference} (above 1: slower than pmap process)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run every configuration on every workload and print one table per workload."""
    args = _parse(argv)
    thread_workers = args.thread_workers or min(32, args.workers + 4)
    began = time.perf_counter()
    # Never hang (a pool whose worker died can wait forever): past the deadline, print every
    # thread's stack and exit.
    faulthandler.dump_traceback_later(args.deadline or (100 if args.quick else 900), exit=True)
    print(_header(args, thread_workers))
    pmap(abs, [0], mode="process", workers=1)  # start the fork server: once per interpreter, not per call
    failed = False
    with _workloads(args.quick) as workloads:
        for work in workloads:
            if args.only and not any(s in work.name for s in args.only):
                continue
            expected = list(map(work.fn, work.items))  # the truth every configuration must match
            rows: list[Row] = []
            for config in _configs():
                workers = thread_workers if config.threads else args.workers
                row = _measure(config, work, expected, workers, args.repeat)
                failed = failed or row.failed
                rows.append(row)
            print()
            print(_table(work, rows))
    print()
    print(f"total wall-clock time: {time.perf_counter() - began:.0f} s")
    faulthandler.cancel_dump_traceback_later()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
