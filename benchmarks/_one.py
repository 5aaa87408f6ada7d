"""One measurement in a fresh interpreter: one tool, one workload, one JSON line on stdout.

    python benchmarks/_one.py TOOL WORKLOAD [--quick] [--workers N] [--calls K]
    python benchmarks/_one.py --probe-auto

``run.py`` starts this once per tool x workload x repeat. Outside the timed region: imports of
the tool's library and building the input. Inside it: the complete call as a user writes it,
from starting the pool to shutting it down, with every result consumed (lazily for the stream
workload). After it: a digest of the results (run.py compares it with the serial reference's)
and the caller's memory growth, the peak RSS during the call minus the RSS before it.

Run from anywhere; the workers import ``_tasks`` and ``workloads`` by name, so run.py puts
``benchmarks/`` and ``examples/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import multiprocessing
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (str(HERE), str(HERE.parent / "examples")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import _tasks  # noqa: E402 - sys.path above
from workloads import GCD_PAIRS, list_files  # type: ignore[import-not-found]  # noqa: E402

Consume = Callable[[Iterable[Any]], Any]
# Set by run.py --start-method: the start method of the process pools that can choose one.
START_METHOD_ENV = "PARMAP_BENCH_START_METHOD"


# --- the workloads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What is mapped: a task of ``_tasks``, its input at full and --quick size, how it is run."""

    name: str
    title: str  # the table's heading; {n} is the number of items
    task: str
    full: int
    quick: int
    threads: bool = False  # io: thread-based tools with 32 threads; process-based ones skipped
    lazy: bool = False  # stream: a generator in, results consumed one by one as they come

    def items(self, n: int) -> Iterable[Any]:
        """The input of ``n`` items (the stream's is a generator: no len(), no length hint)."""
        if self.name == "cpu":
            return [290 + i % 20 for i in range(n)]
        if self.name == "gcd":
            # --quick: the first pairs scaled down by 10, a second's work instead of ten.
            return GCD_PAIRS[:n] if n == self.full else [(a // 10, b // 10) for a, b in GCD_PAIRS[:n]]
        if self.name == "md5":
            return list_files(limit=n)
        if self.lazy:
            return (x for x in range(n))
        return list(range(n))


WORKLOADS = {
    w.name: w
    for w in (
        Workload("tiny", "tiny: x + 1 over {n:,} ints", "inc", 200_000, 20_000),
        Workload(
            "cpu", "cpu: reduce(mul, range(1, k)), k 290..309, {n:,} items", "factorial", 165_000, 2_000
        ),
        Workload("gcd", "gcd: brute-force gcd of {n} pairs", "gcd", len(GCD_PAIRS), 2),
        Workload("io", "io: time.sleep(0.02) x {n}, 32 threads", "nap", 400, 64, threads=True),
        Workload("md5", "md5: {n:,} files of the standard library, warm cache", "md5_file", 100_000, 300),
        Workload(
            "stream", "stream: x + 1 over a generator of {n:,} ints", "inc", 2_000_000, 100_000, lazy=True
        ),
        Workload("startup", "start-up: a 1-item map", "inc", 1, 1),
    )
}


# --- the tools ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One measurement's input: the task, its items, and how many workers to use."""

    fn: Callable[[Any], Any]
    items: Iterable[Any]
    n: int
    workers: int
    threads: bool
    lazy: bool
    calls: int

    @property
    def chunksize(self) -> int:
        """Four chunks per worker: ``multiprocessing.Pool.map``'s own rule."""
        return max(1, math.ceil(self.n / (4 * self.workers)))


def _serial(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
    return lambda: consume(map(job.fn, job.items))


def _pmap(mode: str) -> Callable[[Job, Consume, ExitStack], Callable[[], Any]]:
    def setup(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
        from parmap import pmap  # noqa: PLC0415 - outside the timed region, not at the top

        return lambda: consume(pmap(job.fn, job.items, mode=mode, workers=job.workers, lazy=job.lazy))

    return setup


def _pmap_pool(job: Job, consume: Consume, stack: ExitStack) -> Callable[[], Any]:
    """``job.calls`` maps through one pool that is already running: the cost per call."""
    from parmap import ProcessAdapter, pmap  # noqa: PLC0415

    pool = stack.enter_context(ProcessAdapter(workers=job.workers))
    items = list(job.items)
    pmap(job.fn, items, mode=pool)  # starts the workers, outside the timed region

    def run() -> Any:
        out = None
        for _ in range(job.calls):
            out = consume(pmap(job.fn, items, mode=pool))
        return out

    return run


def _pmap_journal(job: Job, consume: Consume, stack: ExitStack) -> Callable[[], Any]:
    """Process mode recording every result in a fresh journal (its creation is timed too)."""
    import tempfile  # noqa: PLC0415

    from parmap import pmap  # noqa: PLC0415

    path = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "run.sqlite")
    return lambda: consume(
        pmap(job.fn, job.items, mode="process", workers=job.workers, lazy=job.lazy, journal=path)
    )


def _pool(method: str) -> Callable[[Job, Consume, ExitStack], Callable[[], Any]]:
    def setup(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
        import multiprocessing  # noqa: PLC0415

        def run() -> Any:
            with multiprocessing.Pool(job.workers) as pool:
                if method == "map":
                    out = consume(pool.map(job.fn, job.items))
                else:
                    out = consume(pool.imap(job.fn, job.items, chunksize=job.chunksize))
                pool.close()
                pool.join()  # counted, as every other tool's shutdown is
            return out

        return run

    return setup


def _executor(kind: str) -> Callable[[Job, Consume, ExitStack], Callable[[], Any]]:
    def setup(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor  # noqa: PLC0415

        def run() -> Any:
            if kind == "thread":
                with ThreadPoolExecutor(job.workers) as ex:
                    return consume(ex.map(job.fn, job.items))
            with ProcessPoolExecutor(job.workers) as ex:
                return consume(ex.map(job.fn, job.items, chunksize=job.chunksize))

        return run

    return setup


def _joblib(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
    import joblib  # noqa: PLC0415
    from joblib.externals.loky import get_reusable_executor  # noqa: PLC0415

    options: dict[str, Any] = {"prefer": "threads"} if job.threads else {}
    if job.lazy:
        if "return_as" not in inspect.signature(joblib.Parallel).parameters:
            why = f"joblib {joblib.__version__} has no return_as='generator'"
            raise _Skip(why)
        options["return_as"] = "generator"

    def run() -> Any:
        out = consume(
            joblib.Parallel(n_jobs=job.workers, **options)(joblib.delayed(job.fn)(x) for x in job.items)
        )
        if not job.threads:
            # loky keeps its workers for the next call: stop them, so that the timing includes
            # the shutdown as every other tool's does.
            get_reusable_executor(reuse=True).shutdown(wait=True)
        return out

    return run


def _mpire(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
    from mpire import WorkerPool  # noqa: PLC0415

    items = job.items
    if isinstance(items, list) and items and isinstance(items[0], (tuple, list, dict)):
        items = [(x,) for x in items]  # mpire unpacks tuples into arguments: pass them whole
    options: dict[str, Any] = {"start_method": "threading"} if job.threads else {}
    if not job.threads and os.environ.get(START_METHOD_ENV):
        options["start_method"] = os.environ[START_METHOD_ENV]

    def run() -> Any:
        with WorkerPool(n_jobs=job.workers, **options) as pool:
            if job.lazy:
                return consume(pool.imap(job.fn, items, iterable_len=job.n))
            return consume(pool.map(job.fn, items))

    return run


def _loky(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
    from loky import get_reusable_executor  # noqa: PLC0415

    def run() -> Any:
        ex = get_reusable_executor(max_workers=job.workers)
        out = consume(ex.map(job.fn, job.items, chunksize=job.chunksize))
        ex.shutdown(wait=True)
        return out

    return run


def _pebble(job: Job, consume: Consume, _stack: ExitStack) -> Callable[[], Any]:
    from pebble import ProcessPool, ThreadPool  # noqa: PLC0415

    def run() -> Any:
        pool_class = ThreadPool if job.threads else ProcessPool
        with pool_class(max_workers=job.workers) as pool:
            return consume(pool.map(job.fn, job.items, chunksize=job.chunksize).result())

    return run


class _Skip(Exception):  # noqa: N818 - a signal, not an error
    """The tool has no form that fits this workload."""


@dataclass(frozen=True)
class Tool:
    """A way of mapping, as the table names it, and when it is not run."""

    key: str
    label: str
    setup: Callable[[Job, Consume, ExitStack], Callable[[], Any]]
    group: str = "peer"  # "reference", "pmap" or "peer"
    module: str = ""  # the library it needs: "not installed" when absent
    processes_only: bool = False  # no thread form: skipped on the io workload
    eager_only: bool = False  # no lazy form: skipped on the stream workload
    only: str = ""  # run on this workload alone


TOOLS = {
    t.key: t
    for t in (
        Tool("serial", "serial (builtin map)", _serial, group="reference"),
        Tool("pmap-serial", "pmap serial", _pmap("serial"), group="pmap"),
        Tool("pmap-thread", "pmap thread", _pmap("thread"), group="pmap"),
        Tool("pmap-process", "pmap process", _pmap("process"), group="pmap", processes_only=True),
        Tool("pmap-auto", "pmap auto", _pmap("auto"), group="pmap"),
        Tool("pmap-pool", "pmap process, reused pool (per call)", _pmap_pool, group="pmap", only="startup"),
        Tool("pmap-journal", "pmap process, journal=", _pmap_journal, group="pmap", processes_only=True),
        Tool("pool-map", "Pool.map", _pool("map"), processes_only=True, eager_only=True),
        Tool("pool-imap", "Pool.imap chunksize=n/(4w)", _pool("imap"), processes_only=True),
        Tool("ppe", "ProcessPoolExecutor.map chunksize=n/(4w)", _executor("process"), processes_only=True),
        Tool("tpe", "ThreadPoolExecutor.map", _executor("thread"), eager_only=True),
        Tool("joblib", "joblib Parallel", _joblib, module="joblib"),
        Tool("mpire", "mpire WorkerPool.map", _mpire, module="mpire"),
        Tool("loky", "loky map chunksize=n/(4w)", _loky, module="loky", processes_only=True),
        Tool("pebble", "pebble map chunksize=n/(4w)", _pebble, module="pebble"),
    )
}


# --- measuring ---------------------------------------------------------------------------------


def _drain_in_order(results: Iterable[int]) -> str:
    """Consume the stream one result at a time, checking it is 1, 2, 3, ... (x + 1 in order)."""
    expected = 1
    wrong = 0
    for y in results:
        wrong += y != expected
        expected += 1
    return f"{expected - 1} results, {wrong} out of place"


def _digest(results: Any) -> str:
    h = hashlib.blake2b(digest_size=12)
    for r in results if isinstance(results, list) else [results]:
        h.update(repr(r).encode())
        h.update(b"\0")
    return h.hexdigest()


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Make VmHWM (the peak RSS) start again from the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def _max_rss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, kB elsewhere


def measure(tool: Tool, work: Workload, *, quick: bool, workers: int, calls: int) -> dict[str, Any]:
    """Build the input, time the call, check the results; the JSON line's fields."""
    n = work.quick if quick else work.full
    items = work.items(n)
    if isinstance(items, list):
        n = len(items)
    job = Job(getattr(_tasks, work.task), items, n, workers, work.threads, work.lazy, calls)
    line: dict[str, Any] = {"tool": tool.key, "workload": work.name, "items": n, "workers": workers}
    consume: Consume = _drain_in_order if work.lazy else list
    with ExitStack() as stack:
        try:
            call = tool.setup(job, consume, stack)
        except _Skip as why:
            return {**line, "skip": str(why)}
        exact = _reset_peak_rss()
        before = _status_kb("VmRSS") if exact else _max_rss_kb()
        started = time.perf_counter()
        try:
            results = call()
        except Exception as exc:  # reported, and run.py fails the run
            return {**line, "ok": False, "error": "".join(traceback.format_exception_only(exc)).strip()}
        seconds = (time.perf_counter() - started) / (calls if tool.key == "pmap-pool" else 1)
        peak = _status_kb("VmHWM") if exact else _max_rss_kb()
    size_ok = work.lazy or len(results) == n
    return {
        **line,
        "seconds": seconds,
        "mem_mb": (peak - before) / 1024 if peak is not None and before is not None else None,
        "ok": size_ok,
        "digest": _digest(results),
        "calls": calls if tool.key == "pmap-pool" else 1,
    }


def probe_auto() -> dict[str, Any]:
    """Whether the installed parmap accepts mode="auto" (run once, in a process of its own)."""
    from parmap import pmap  # noqa: PLC0415

    try:
        ok = pmap(_tasks.inc, [1], mode="auto", workers=2) == [2]
    except (ValueError, TypeError) as exc:
        return {"auto": False, "why": str(exc)}
    return {"auto": ok, "why": "" if ok else "mode='auto' returned a wrong result"}


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line: the measurement, or why there is none."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tool", nargs="?", choices=sorted(TOOLS))
    parser.add_argument("workload", nargs="?", choices=sorted(WORKLOADS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=100, help="maps through the reused pool (pmap-pool)")
    parser.add_argument("--probe-auto", action="store_true")
    args = parser.parse_args(argv)
    if os.environ.get(START_METHOD_ENV):  # run.py --start-method: the stdlib pools' default too
        multiprocessing.set_start_method(os.environ[START_METHOD_ENV], force=True)
    if args.probe_auto:
        line = probe_auto()
    elif args.tool is None or args.workload is None:
        parser.error("TOOL and WORKLOAD are required")
    else:
        line = measure(
            TOOLS[args.tool],
            WORKLOADS[args.workload],
            quick=args.quick,
            workers=args.workers,
            calls=args.calls,
        )
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
