"""pmap against the standard library pools, joblib, mpire, loky and pebble: one command.

Every measurement (tool x workload x repeat) runs in a fresh interpreter (``_one.py``), so no
tool inherits a warm pool, a started fork server or imported modules from another. The timing
is the complete call, pool start-up and shutdown included; imports and building the input are
outside it. Repeats are interleaved (each round runs every tool once, in a rotated order) and
the table shows the median, min and max. Results are checked against the serial reference's.

Run from the repository root (POSIX)::

    .venv/bin/python benchmarks/run.py                     # about 7 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick             # CI: under a minute; fails only on wrong results
    .venv/bin/python benchmarks/run.py --only tiny stream --repeat 5
    .venv/bin/python benchmarks/run.py --start-method spawn --only tiny startup   # as on macOS
    .venv/bin/python benchmarks/run.py --report benchmarks/results/X.json --plot docs/img/speedup.svg

The full run writes ``benchmarks/results/<date>-<label>-<N>cores.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]

from _git import git_state  # noqa: E402 - sys.path above
from _one import START_METHOD_ENV as BENCH_START_METHOD_ENV  # noqa: E402 - sys.path above
from _one import TOOLS, WORKLOADS, Tool, Workload  # noqa: E402
from _svg import bar_chart  # noqa: E402
from workloads import list_files  # type: ignore[import-not-found]  # noqa: E402

PEERS = ("joblib", "mpire", "loky", "pebble")
STDLIB_POOLS = ("pool-map", "pool-imap", "ppe")
IO_THREADS = 32
PARMAP_START_METHOD_ENV = "PARMAP_START_METHOD"  # pmap's own (BENCH_...: the other pools')
REUSED_POOL_CALLS = {False: 100, True: 20}


# --- running the measurements ------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    paths = [str(HERE), str(HERE.parent / "examples"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _reap_group(pgid: int) -> bool:
    """Wait a little for what the child left in its process group, then kill it; True if any."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``_one.py args`` in its own process group; its JSON line, or what went wrong."""
    command = [sys.executable, str(HERE / "_one.py"), *args]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        start_new_session=True,  # the child and its workers: one group, killed together
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {"ok": False, "error": f"timed out after {timeout:g} s (killed)"}
        strays = _reap_group(child.pid)
    lines = out.strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = " | ".join(err.strip().splitlines()[-3:])
        return {"ok": False, "error": f"crashed with exit code {child.returncode}: {tail}"}
    line: dict[str, Any] = json.loads(lines[-1])
    if strays:
        line["note"] = "left processes running after it returned (killed)"
    return line


def skip_reason(tool: Tool, work: Workload, *, auto: str) -> str:
    """Why ``tool`` is not run on ``work``, or ""."""
    if tool.only and tool.only != work.name:
        return "-"
    if tool.module and importlib.util.find_spec(tool.module) is None:
        return "not installed (pip install '.[bench]')"
    if tool.key == "pmap-auto" and auto:
        return "n/a: the installed parmap has no mode='auto'"
    if work.threads and tool.processes_only:
        return "not run: process-based, and this workload sleeps (32 threads)"
    if work.lazy and tool.eager_only:
        return "not run: no lazy form (takes the whole input, or one future per item, up front)"
    return ""


@dataclass
class Plan:
    """What to run, and how."""

    workloads: list[Workload]
    repeat: int
    workers: int
    quick: bool
    timeout: float
    auto: str  # why mode="auto" cannot be measured, or ""
    records: list[dict[str, Any]] = field(default_factory=list)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_plan(plan: Plan) -> None:
    """Every tool on every workload, ``plan.repeat`` rounds, into ``plan.records``."""
    for work in plan.workloads:
        tools = [t for t in TOOLS.values() if not skip_reason(t, work, auto=plan.auto)]
        plan.records += [
            {"workload": work.name, "tool": t.key, "skip": why}
            for t in TOOLS.values()
            if (why := skip_reason(t, work, auto=plan.auto)) and why != "-"
        ]
        if work.name == "md5":  # warm the page cache, so that no tool pays for cold reads
            for path in list_files(limit=work.quick if plan.quick else work.full):
                Path(path).read_bytes()
        for round_ in range(plan.repeat):
            shift = round_ % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                workers = IO_THREADS if work.threads else plan.workers
                args = [tool.key, work.name, "--workers", str(workers)]
                args += ["--calls", str(REUSED_POOL_CALLS[plan.quick])]
                args += ["--quick"] if plan.quick else []
                line = {
                    **run_child(args, plan.timeout),
                    "workload": work.name,
                    "tool": tool.key,
                    "round": round_,
                }
                plan.records.append(line)
                shown = (
                    f"{line['seconds']:.4f} s" if "seconds" in line else line.get("error", line.get("skip"))
                )
                _progress(f"[{work.name} {round_ + 1}/{plan.repeat}] {tool.label}: {shown}")


# --- summarising -------------------------------------------------------------------------------


@dataclass
class Row:
    """One tool on one workload, over the rounds."""

    tool: Tool
    times: list[float] = field(default_factory=list)
    mems: list[float] = field(default_factory=list)
    items: int = 0
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.failed else None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def mem(self) -> float | None:
        return statistics.median(self.mems) if self.mems else None


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Row]]:
    """Rows by workload and tool; a result unlike the serial reference's fails its row."""
    reference = {r["workload"]: r["digest"] for r in records if r["tool"] == "serial" and "digest" in r}
    rows: dict[str, dict[str, Row]] = {}
    for r in records:
        row = rows.setdefault(r["workload"], {}).setdefault(r["tool"], Row(TOOLS[r["tool"]]))
        if "skip" in r:
            row.note(r["skip"])
        elif not r.get("ok"):
            row.failed = True
            row.note(f"FAILED: {r.get('error', 'wrong number of results')}")
        elif r["digest"] != reference.get(r["workload"], r["digest"]):
            row.failed = True
            row.note("FAILED: results differ from the serial reference's")
        else:
            row.times.append(r["seconds"])
            row.items = r["items"]
            if r.get("mem_mb") is not None:
                row.mems.append(r["mem_mb"])
        if r.get("note"):
            row.note(r["note"])
    return rows


def best_peer(by_tool: dict[str, Row], keys: tuple[str, ...] | None = None) -> Row | None:
    """The fastest non-pmap tool other than the serial reference (among ``keys`` if given)."""
    peers = [
        r
        for r in by_tool.values()
        if r.tool.group == "peer" and r.median is not None and (keys is None or r.tool.key in keys)
    ]
    return min(peers, key=lambda r: r.median or 0.0, default=None)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x" if a / b >= 0.01 else f"{a / b:.1g}x"


def table(work: Workload, by_tool: dict[str, Row], titles: dict[str, str]) -> str:
    """One workload's Markdown table."""
    serial = by_tool.get("serial")
    reference = serial.median if serial else None
    best = best_peer(by_tool)
    lines = [
        f"### {titles.get(work.name, work.name)}",
        "",
        "| tool | median | min | max | speedup vs serial | time / best peer | caller mem MB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in TOOLS:
        row = by_tool.get(key)
        if row is None:
            continue
        notes = list(row.notes)
        if row is best:
            notes.insert(0, "**best peer**")
        if key == "pmap-pool":
            notes.insert(0, "per call, pool already running")
        mem = f"{row.mem:.1f}" if row.mem is not None else "-"
        median = row.median
        lines.append(
            f"| {row.tool.label} | {_fmt_s(median)} | {_fmt_s(min(row.times) if median else None)} "
            f"| {_fmt_s(max(row.times) if median else None)} | {_ratio(reference, median)} "
            f"| {_ratio(median, best.median if best else None)} | {mem} | {'; '.join(notes)} |"
        )
    return "\n".join(lines)


# --- the targets of the performance issue ------------------------------------------------------


def _median(rows: dict[str, dict[str, Row]], work: str, tool: str) -> float | None:
    row = rows.get(work, {}).get(tool)
    return row.median if row else None


def _check(ok: bool | None, text: str) -> str:
    return f"- {'n/a ' if ok is None else 'PASS' if ok else 'MISS'} {text}"


def _speedup_target(rows: dict[str, dict[str, Row]], work: str, tool: str, goal: float) -> str:
    serial, t = _median(rows, work, "serial"), _median(rows, work, tool)
    if serial is None or t is None:
        return _check(None, f"{work}: {TOOLS[tool].label} >= {goal}x serial (not measured)")
    return _check(
        serial / t >= goal, f"{work}: {TOOLS[tool].label} {serial / t:.2f}x serial (goal >= {goal}x)"
    )


def _tiny_targets(rows: dict[str, dict[str, Row]]) -> list[str]:
    t, serial = _median(rows, "tiny", "pmap-process"), _median(rows, "tiny", "serial")
    pool = best_peer(rows.get("tiny", {}), STDLIB_POOLS)
    if t is None or serial is None or pool is None or pool.median is None:
        return [_check(None, "tiny: pmap process against the stdlib pools and serial (not measured)")]
    return [
        _check(
            t <= 0.6 * pool.median,
            f"tiny: pmap process {_fmt_s(t)} = {t / pool.median:.2f}x the best stdlib pool "
            f"({pool.tool.label}, {_fmt_s(pool.median)}) (goal <= 0.6x)",
        ),
        _check(t <= 2 * serial, f"tiny: pmap process {t / serial:.2f}x the time of serial (goal <= 2x)"),
    ]


def _stream_targets(rows: dict[str, dict[str, Row]]) -> list[str]:
    row = rows.get("stream", {}).get("pmap-process")
    imap = _median(rows, "stream", "pool-imap")
    if row is None or row.median is None or row.mem is None or imap is None:
        return [_check(None, "stream: pmap process memory and throughput (not measured)")]
    return [
        _check(row.mem < 20, f"stream: pmap process caller memory growth {row.mem:.1f} MB (goal < 20 MB)"),
        _check(
            row.median <= imap,
            f"stream: pmap process {_fmt_s(row.median)} = {row.median / imap:.2f}x the time of "
            "Pool.imap tuned (goal <= 1x)",
        ),
    ]


def _startup_targets(rows: dict[str, dict[str, Row]]) -> list[str]:
    t, pool = _median(rows, "startup", "pmap-process"), _median(rows, "startup", "pool-map")
    reused = _median(rows, "startup", "pmap-pool")
    lines = [_check(None, "start-up: pmap process against Pool.map (not measured)")]
    if t is not None and pool is not None:
        lines = [
            _check(t <= pool, f"start-up: pmap process {_fmt_s(t)}, Pool.map {_fmt_s(pool)} (goal <= 1x)")
        ]
    if reused is None:
        return [*lines, _check(None, "start-up: one-item map through a reused pool (not measured)")]
    return [*lines, _check(reused < 1e-3, f"start-up: reused pool {_fmt_s(reused)} per call (goal < 1 ms)")]


def _journal_targets(rows: dict[str, dict[str, Row]]) -> list[str]:
    """journal=: its cost on top of process mode (md5, cpu: goal under 10%), and the stream's memory."""
    lines = []
    for work in ("md5", "cpu", "tiny"):
        plain, journal = _median(rows, work, "pmap-process"), _median(rows, work, "pmap-journal")
        if plain is None or journal is None:
            lines.append(_check(None, f"{work}: pmap process with journal= (not measured)"))
            continue
        text = f"{work}: journal= costs {100 * (journal / plain - 1):+.0f}% on pmap process"
        lines.append(
            _check(journal <= 1.10 * plain, f"{text} (goal < 10%)") if work != "tiny" else f"- {text}"
        )
    row = rows.get("stream", {}).get("pmap-journal")
    if row is None or row.mem is None:
        lines.append(_check(None, "stream: caller memory with journal= (not measured)"))
    else:
        lines.append(
            _check(
                row.mem < 50, f"stream: caller memory growth with journal= {row.mem:.1f} MB (goal < 50 MB)"
            )
        )
    return lines


def _auto_targets(rows: dict[str, dict[str, Row]], auto: str) -> list[str]:
    if auto:
        return [_check(None, f"mode='auto' within 15% of the best pmap mode: {auto}")]
    lines = []
    for work, by_tool in rows.items():
        modes = [by_tool[k] for k in ("pmap-serial", "pmap-thread", "pmap-process") if k in by_tool]
        best = min((r for r in modes if r.median is not None), key=lambda r: r.median or 0.0, default=None)
        t = _median(rows, work, "pmap-auto")
        if best is None or best.median is None or t is None:
            lines.append(_check(None, f"{work}: pmap auto (not measured)"))
            continue
        text = f"{work}: pmap auto {t / best.median:.2f}x the time of {best.tool.label} (goal <= 1.15x)"
        lines.append(_check(t <= 1.15 * best.median, text))
    return lines


def targets(rows: dict[str, dict[str, Row]], auto: str) -> list[str]:
    """The issue's goals for pmap, checked against the medians (they never fail the run)."""
    return [
        *_tiny_targets(rows),
        _speedup_target(rows, "md5", "pmap-process", 1.7),
        _speedup_target(rows, "cpu", "pmap-process", 1.8),
        _speedup_target(rows, "gcd", "pmap-process", 1.8),
        _speedup_target(rows, "io", "pmap-thread", 28),
        *_stream_targets(rows),
        *_startup_targets(rows),
        *_auto_targets(rows, auto),
        *_journal_targets(rows),
    ]


# --- the machine, the report, the files --------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _parmap_start_method() -> str:
    if os.environ.get(PARMAP_START_METHOD_ENV):
        return os.environ[PARMAP_START_METHOD_ENV]
    try:
        from parmap import _launch  # noqa: PLC0415 - private, may move
    except ImportError:
        return multiprocessing.get_start_method()
    method = _launch.default_start_method()
    if hasattr(_launch, "can_fork_now"):
        return f"fork when the caller runs one thread (Linux), else {method}"
    return method


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else every logical one."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_machine(note: str) -> dict[str, str]:
    """What the results file says about where it was measured."""
    load = os.getloadavg()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable_cores()} usable",
        "ram": f"{_ram_gib():.1f} GiB",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "parmap": f"{_version('parmap')} ({git_state()})",
        "start methods": f"pmap: {_parmap_start_method()}; stdlib: {multiprocessing.get_start_method()}",
        "peers": ", ".join(f"{name} {_version(name)}" for name in PEERS),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "note": note,
    }


HOW_TO_READ = (
    "Each timing is one complete call in a fresh interpreter (pool start-up and shutdown included; "
    "imports and building the input are not). speedup vs serial = serial median / median; "
    "time / best peer = median / median of the fastest non-pmap tool (below 1: faster than it); "
    "caller mem = peak RSS during the call minus RSS before it, in the calling process only."
)


def report(data: dict[str, Any]) -> str:
    """The whole Markdown report, from the JSON data (a fresh run or a saved one)."""
    machine, run = data["machine"], data["run"]
    rows = summarise(data["records"])
    lines = [f"# parmap benchmark: {run['what']}", ""]
    lines += [f"- **{key}**: {value}" for key, value in machine.items() if value]
    lines += ["", HOW_TO_READ]
    for name, work in WORKLOADS.items():
        if name in rows:
            lines += ["", table(work, rows[name], run["titles"])]
    lines += ["", "### Targets (never fail the run)", "", *targets(rows, run["auto"])]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """The speedups vs serial as an SVG bar chart."""
    rows = summarise(data["records"])
    groups = []
    for name in WORKLOADS:
        by_tool = rows.get(name, {})
        serial = by_tool.get("serial")
        if serial is None or serial.median is None or name == "startup":
            continue
        bars = [
            (r.tool.label, serial.median / r.median, r.tool.group)
            for key, r in by_tool.items()
            if key != "serial" and r.median
        ]
        groups.append((data["run"]["titles"].get(name, name), bars))
    title = f"Speedup vs serial (log scale; blue: pmap, orange: peers), {data['run']['what']}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bar_chart(groups, title), encoding="utf-8")


def _stem(label: str | None) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label or socket.gethostname()).strip("-") or "machine"
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}-{name}-{usable_cores()}cores"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 round: a CI smoke run")
    parser.add_argument("--repeat", type=int, default=None, help="rounds (default 3, 1 with --quick)")
    parser.add_argument(
        "--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS), metavar="WORKLOAD"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers of every process-based tool (default 2)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per measurement (120, quick: 60)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write results (default: benchmarks/results, none with --quick)",
    )
    parser.add_argument(
        "--label", default=None, help="the machine's name in the file names (default: hostname)"
    )
    parser.add_argument("--note", default="", help="a remark for the header, e.g. 'machine busy'")
    parser.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        default=None,
        help="for pmap, multiprocessing.Pool, ProcessPoolExecutor and mpire (default: each one's own)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="also write an SVG bar chart of the speedups here"
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="print (and --plot) a saved .json; measure nothing"
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.out is None and not args.quick:
        args.out = HERE / "results"
    return args


def _failed(records: list[dict[str, Any]]) -> bool:
    return any(row.failed for by_tool in summarise(records).values() for row in by_tool.values())


def main(argv: list[str] | None = None) -> int:
    """Measure (or load), print the report, write the files; 1 if any tool failed or was wrong."""
    args = _parse(argv)
    if args.start_method:  # the children inherit it: pmap through its variable, the rest in _one.py
        os.environ[PARMAP_START_METHOD_ENV] = os.environ[BENCH_START_METHOD_ENV] = args.start_method
        multiprocessing.set_start_method(args.start_method, force=True)  # (for the header)
    if args.report is not None:
        data = json.loads(args.report.read_text(encoding="utf-8"))
    else:
        began = time.perf_counter()
        probe = run_child(["--probe-auto"], 60)
        auto = (
            ""
            if probe.get("auto")
            else f"the installed parmap has no mode='auto' ({probe.get('why', probe.get('error'))})"
        )
        machine = describe_machine(args.note)
        plan = Plan(
            [WORKLOADS[w] for w in args.only],
            args.repeat,
            args.workers,
            args.quick,
            args.timeout or (60 if args.quick else 120),
            auto,
        )
        run_plan(plan)
        load = os.getloadavg()
        machine["load average at end"] = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        if (state := git_state()) not in machine["parmap"]:  # parmap/ changed during the run
            machine["parmap at end"] = state
        machine["wall time of the whole run"] = f"{time.perf_counter() - began:.0f} s"
        sizes = {w.name: w.quick if args.quick else w.full for w in plan.workloads}
        titles = {
            name: WORKLOADS[name].title.format(n=_items(plan.records, name, n)) for name, n in sizes.items()
        }
        what = f"{'--quick, ' if args.quick else ''}{args.repeat} round(s), {args.workers} workers"
        data = {
            "machine": machine,
            "run": {"what": what, "titles": titles, "auto": auto, "args": sys.argv[1:]},
            "records": plan.records,
        }
    text = report(data)
    print(text)
    if args.report is None and args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = _stem(args.label)
        (args.out / f"{stem}.md").write_text(text, encoding="utf-8")
        (args.out / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        _progress(f"wrote {args.out / stem}.md and .json")
    if args.plot is not None:
        plot(data, args.plot)
        _progress(f"wrote {args.plot}")
    return 1 if _failed(data["records"]) else 0


def _items(records: list[dict[str, Any]], workload: str, default: int) -> int:
    """The number of items the children measured (md5: the files there are, up to the limit)."""
    return next((r["items"] for r in records if r["workload"] == workload and "items" in r), default)


if __name__ == "__main__":
    sys.exit(main())
