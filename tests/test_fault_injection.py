"""Seeded, randomized fault injection: maps with faulty items, every option drawn at random.

Each draw (one seed) picks a mode and pool, the options and, per item, a fault or none (see
``FAULT_KINDS`` and tests/fault_fns.py). The map runs under a hang guard (a draw past its
generous bound fails with the stacks of what waits); then every result delivered, and the
exception raised, is checked against the rules of docs/errors.md, a warm pool must run one
more map, and nothing may be left behind. A failure names the seed and the whole draw.

- CI: ``CI_DRAWS`` draws, ``BATCH`` per test (about 2 minutes on 2 cores).
- Soak: ``PARMAP_FAULT_DRAWS=2000 python -m pytest tests/test_fault_injection.py``; the
  batches past CI's are marked ``slow``. ``PARMAP_FAULT_FIRST_SEED=N`` starts elsewhere.
- Replay: ``PARMAP_FAULT_SEED=123 python -m pytest tests/test_fault_injection.py`` (or
  ``=123,456``; a seed may repeat, to catch a flaky one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fault_fns
import psutil
import pytest
from conftest import Snapshot, _service_pids, assert_no_leaks, wait_for_no_leaks

from parmap import (
    ItemTimeoutError,
    ProcessAdapter,
    SerializationError,
    ThreadAdapter,
    WorkerDiedError,
    pmap,
)
from parmap._process_pool import ProcessPool

#: The faults drawn. Leave kinds out here while debugging: a seed draws the same map all the
#: same, with "ok" in place of the kinds left out.
FAULT_KINDS = frozenset(fault_fns.FAULTS)
THREAD_SAFE_KINDS = {"raise", "sleep", "stuck", "thread"}  # the others would hit the test process itself
ERRORS: dict[str, type[BaseException]] = {
    "raise": ValueError,
    "exit": WorkerDiedError,
    "kill": WorkerDiedError,
    "lock-death": WorkerDiedError,
    "sleep": ItemTimeoutError,
    "stuck": ItemTimeoutError,
    "unpicklable": SerializationError,
}
STOP_GRACE_S = 1.0  # what a worker kept alive by fn's leftovers may cost before it is killed
HANG_BASE_S = 30.0  # a draw slower than this (plus its sleeps) hangs: generous, never tight
REFIRE_S = 5.0  # after a hang, break the cleanup's waits this often too

CI_DRAWS = 200
BATCH = 10
DRAWS = int(os.environ.get("PARMAP_FAULT_DRAWS") or CI_DRAWS)
FIRST_SEED = int(os.environ.get("PARMAP_FAULT_FIRST_SEED") or 0)
REPLAY = [int(s) for s in os.environ.get("PARMAP_FAULT_SEED", "").replace(",", " ").split()]

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not hasattr(signal, "setitimer") or not hasattr(os, "fork"), reason="POSIX faults"),
]


# --- drawing ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Draw:
    seed: int
    mode: str  # "thread" | "process"
    pool: str  # "string" (mode="process"), "cold" (an unstarted adapter), "warm" (a pool in use)
    start_method: str | None  # None: parmap's default (process adapters only)
    workers: int
    chunksize: int | None
    max_tasks: int | None
    timeout: float | None
    lock: bool
    on_error: str
    ordered: bool
    lazy: str  # "no", "full" (consumed to the end) or "first" (closed after the first result)
    faults: tuple[str, ...]  # per item: a fault kind or "ok"

    def __str__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        replay = f"PARMAP_FAULT_SEED={self.seed} python -m pytest tests/{Path(__file__).name}"
        left_out = sorted(set(fault_fns.FAULTS) - FAULT_KINDS)
        return f"Draw({fields})\n  replay: {replay}" + (
            f" with FAULT_KINDS less {left_out}" if left_out else ""
        )


def draw(seed: int) -> Draw:
    """Every choice of one map, from its seed alone."""
    rng = random.Random(seed)
    mode = rng.choice(["thread", "process", "process"])
    pool = rng.choice(["string", "cold", "warm"])
    start_method = None
    if mode == "process" and pool != "string":
        start_method = rng.choices([None, "fork", "forkserver", "spawn"], [3, 2, 2, 1])[0]
    timeout = rng.choice([None, round(rng.uniform(0.5, 1.5), 2)])
    lock = rng.random() < 0.4
    kinds = [
        k
        for k in fault_fns.FAULTS
        if (mode == "process" or k in THREAD_SAFE_KINDS)
        and (k not in {"sleep", "stuck"} or timeout is not None)
        and (k != "lock-death" or lock)
    ]
    drawn = [rng.choice(kinds) if rng.random() < 0.35 else "ok" for _ in range(rng.randint(6, 12))]
    faults = tuple(k if k in FAULT_KINDS else "ok" for k in drawn)
    return Draw(
        seed=seed,
        mode=mode,
        pool=pool,
        start_method=start_method,
        workers=rng.randint(1, 3),
        chunksize=rng.choice([None, 1, 2, 3]),
        max_tasks=rng.choice([None, None, 1, 3]),
        timeout=timeout,
        lock=lock,
        on_error=rng.choice(["raise", "return"]),
        ordered=rng.random() < 0.6,
        lazy=rng.choice(["no", "no", "full", "first"]),
        faults=faults,
    )


def hang_bound(d: Draw) -> float:
    """Seconds the map may take before it counts as hung: the base plus twice what it may wait."""
    waits = {
        "sleep": d.timeout or 0,
        "stuck": d.timeout or 0,
        "slow-pickle": fault_fns.PICKLE_S,
        "thread": STOP_GRACE_S,
        "fork": STOP_GRACE_S,
        "sigterm": STOP_GRACE_S,
    }
    return HANG_BASE_S + 2 * sum(waits.get(kind, 0) for kind in d.faults)


# --- running ---------------------------------------------------------------------------------


class DrawHungError(BaseException):
    """Raised in the main thread when a draw outlives its bound (a BaseException, as Ctrl-C)."""


@contextlib.contextmanager
def hang_guard(bound: float) -> Iterator[list[str]]:
    """Raise DrawHungError where the main thread waits once ``bound`` s have passed (then each REFIRE_S).

    A timer signal, not a watchdog thread: the caller stays single-threaded, so parmap's fast
    path (workers forked straight from the caller) is drawn too. pytest-timeout's own timer
    (also SIGALRM) is put back afterwards. Yields the list that receives what hung.
    """
    hung: list[str] = []

    def on_alarm(_signum: int, frame: Any) -> None:
        hung.append(where_it_hangs(frame))
        raise DrawHungError

    started = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, bound, REFIRE_S)
    try:
        yield hung
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - started), 0.01))


def where_it_hangs(frame: Any) -> str:
    """The main thread's stack, the other threads' innermost frames and the live children."""
    ours = [
        f for f in traceback.extract_stack(frame) if "pytest" not in f.filename and "pluggy" not in f.filename
    ]
    lines = ["main thread:\n", *traceback.format_list(ours[-12:])]
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, other in sys._current_frames().items():  # noqa: SLF001
        if ident != threading.get_ident():
            lines += [f"thread {names.get(ident, ident)}:\n", *traceback.format_stack(other)[-3:]]
    services = _service_pids()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            what = "multiprocessing's helper" if child.pid in services else f"{child.num_threads()} threads"
            lines.append(f"child {child.pid}: {child.status()}, {what}\n")
    return "".join(lines + pool_states())


def pool_states() -> list[str]:
    """What each running process pool knows of its workers: what a hang waits for."""
    lines = []
    for obj in gc.get_objects():
        if isinstance(obj, ProcessPool) and not obj.stopped:
            lines.append(f"process pool: {len(obj.pending)} chunks queued, workers:\n")
            for w in list(obj.workers):
                task = None if w.task is None else (w.task.start, w.task.size)
                lines.append(
                    f"  pid {w.proc.pid}: exitcode {w.proc.exitcode}, {w.phase}, early {w.early}, "
                    f"chunk {task}, deadline {w.deadline}, marks {w.marks.read()}\n"
                )
    return lines


@contextlib.contextmanager
def mode_for(d: Draw) -> Iterator[tuple[object, dict[str, Any]]]:
    """pmap's ``mode=`` for the draw, and the options that go with it (a pool owns some)."""
    if d.pool == "string":
        yield d.mode, {"workers": d.workers, "max_tasks_per_worker": d.max_tasks}
        return
    if d.mode == "thread":
        adapter: Any = ThreadAdapter(d.workers, max_tasks_per_worker=d.max_tasks)
    else:
        adapter = ProcessAdapter(d.workers, start_method=d.start_method, max_tasks_per_worker=d.max_tasks)
    if d.pool == "cold":
        yield adapter, {}
        return
    with adapter as pool:
        assert plain_map(pool) is None, "a fresh pool could not run a plain map"  # (with no options)
        yield pool, {}


def plain_map(pool: object, *, timeout: float | None = None, lock: bool = False) -> str | None:
    """Run a map without faults on a pool: what went wrong, if anything."""
    items = [("ok", i, {"lock": lock}) for i in range(3)]
    try:
        got = pmap(fault_fns.run_item, items, mode=pool, timeout=timeout, lock=lock)
    except Exception as exc:
        return f"the pool's next map raised {exc!r}"
    return None if got == [fault_fns.value(i) for i in range(3)] else f"the pool's next map gave {got}"


@dataclasses.dataclass
class Ran:
    """What a draw's map did: ``(index, result)`` delivered, what it raised, and (for a warm
    pool) what went wrong in the pool's next map."""

    delivered: list[tuple[int, Any]] = dataclasses.field(default_factory=list)
    error: Exception | None = None
    reuse: str | None = None


def run_map(d: Draw, folder: Path) -> Ran:
    """Run the draw's map, and its pool's whole life."""
    opts = {"lock": d.lock, "sleep": (d.timeout or 0) + 2.0, "dir": str(folder)}
    items = [(kind, i, opts) for i, kind in enumerate(d.faults)]
    ran = Ran()
    with warnings.catch_warnings():
        if d.start_method == "fork":  # 3.12+ warns when a process with threads forks: asked for here
            warnings.filterwarnings("ignore", r".*use of fork\(\) may lead to deadlocks", DeprecationWarning)
        with mode_for(d) as (mode, pool_opts):
            results: Any = ()
            try:
                results = pmap(
                    fault_fns.run_item,
                    items,
                    mode=mode,
                    timeout=d.timeout,
                    lock=d.lock,
                    on_error=d.on_error,
                    ordered=d.ordered,
                    indexed=not d.ordered,
                    chunksize=d.chunksize,
                    lazy=d.lazy != "no",
                    **pool_opts,
                )
                for n, got in enumerate(results):
                    ran.delivered.append((n, got) if d.ordered else got)
                    if d.lazy == "first":
                        break
            except Exception as exc:  # the map's own failure, under on_error="raise"
                ran.error = exc
            finally:
                if d.lazy != "no" and hasattr(results, "close"):
                    results.close()
            if d.pool == "warm":  # one bad item never costs the pool
                ran.reuse = plain_map(mode, timeout=d.timeout, lock=d.lock)
    return ran


# --- checking --------------------------------------------------------------------------------


def accepted(d: Draw, i: int) -> tuple[Any, ...]:
    """Item ``i``'s acceptable outcomes: its value (an int) or exception classes (docs/errors.md)."""
    kind = d.faults[i]
    if kind in ERRORS:
        return (ERRORS[kind],)
    if kind == "slow-pickle" and d.timeout is not None and d.timeout < fault_fns.PICKLE_S:
        return (fault_fns.value(i), ItemTimeoutError)
    return (fault_fns.value(i),)  # ok, and fn's leftovers (thread, fork, sigterm) cost nothing


def matches(got: Any, outcomes: tuple[Any, ...]) -> bool:
    if isinstance(got, BaseException):
        return any(isinstance(o, type) and isinstance(got, o) for o in outcomes)
    return any(not isinstance(o, type) and got == o for o in outcomes)


def item_of(exc: BaseException) -> int | None:
    """The input index that parmap's note on ``exc`` names."""
    for note in getattr(exc, "__notes__", []):
        found = re.search(r"item (\d+) of the input", note)
        if found:
            return int(found.group(1))
    return None


def problems(d: Draw, ran: Ran) -> list[str]:
    """What the map did against the rules: [] when it did right."""
    delivered = ran.delivered
    outcomes = [accepted(d, i) for i in range(len(d.faults))]
    found = [
        f"item {i}: got {got!r}, expected {outcomes[i]}"
        for i, got in delivered
        if not matches(got, outcomes[i])
    ]
    indices = [i for i, _ in delivered]
    if len(set(indices)) != len(indices):
        found.append(f"an item delivered twice: {indices}")
    if d.ordered and indices != list(range(len(indices))):
        found.append(f"out of order: {indices}")
    if d.on_error == "raise" and any(isinstance(got, BaseException) for _, got in delivered):
        found.append("an exception delivered as a result under on_error='raise'")
    if ran.reuse:
        found.append(ran.reuse)
    return found + end_problems(d, indices, ran.error, outcomes)


def end_problems(  # noqa: PLR0911 - one return per rule
    d: Draw, indices: list[int], error: Exception | None, outcomes: list[tuple[Any, ...]]
) -> list[str]:
    """How the map ended (all delivered, or which exception it raised) against the rules."""
    can_fail = {i for i, o in enumerate(outcomes) if any(isinstance(x, type) for x in o)}
    must_fail = {i for i, o in enumerate(outcomes) if all(isinstance(x, type) for x in o)}
    if error is None:
        wanted = 1 if d.lazy == "first" else len(d.faults)
        if len(indices) != wanted:
            return [f"{len(indices)} results delivered, expected {wanted}"]
        if d.on_error == "raise" and d.lazy != "first" and must_fail:
            return [f"nothing raised, though items {sorted(must_fail)} must fail"]
        return []
    failed = item_of(error)
    if d.on_error == "return":
        return [f"raised under on_error='return': {error!r}"]
    if failed is None:
        return [f"raised {error!r} with no note naming its item"]
    if failed not in can_fail or not matches(error, outcomes[failed]):
        return [f"raised {error!r} for item {failed}, which should give {outcomes[failed]}"]
    if failed in indices:
        return [f"raised for item {failed}, which was delivered too"]
    if d.ordered and (must_fail & set(range(failed)) or len(indices) not in {0, failed}):
        return [f"raised for item {failed}, not the first failing item in order"]
    return []


# --- one draw, and the tests -----------------------------------------------------------------


def kill_leftovers(before: Snapshot, folder: Path, started: float, *, failed: bool) -> None:
    """Kill the children that "fork" items left and, once a draw failed, whatever it started."""
    pids = set(fault_fns.children_left(folder))
    if failed:
        pids |= {p.pid for p in psutil.Process().children(recursive=True)} - before.children - _service_pids()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.create_time() >= started - 1:  # not a recycled pid
                proc.kill()


def run_draw(seed: int, tmp_path: Path) -> None:
    """Draw the map for ``seed``, run it under the hang guard, and check it: pytest.fail if wrong."""
    d = draw(seed)
    folder = Path(tempfile.mkdtemp(prefix=f"seed-{seed}-", dir=tmp_path))  # (a seed may repeat)
    fault_fns.RELEASE.clear()
    before = Snapshot.take()
    started, clock = time.time(), time.monotonic()
    failure = None
    try:
        with hang_guard(hang_bound(d)) as hung:
            ran = run_map(d, folder)
    except DrawHungError:
        failure = f"hung (bound {hang_bound(d):.1f} s):\n{d}\n" + "\n".join(hung)
    except Exception as exc:  # outside the map itself: the warm-up, the pool's start or shutdown
        failure = f"the pool failed: {exc!r}\n{d}\n{traceback.format_exc()}"
    else:
        wrong = problems(d, ran)
        if wrong:
            details = "\n  ".join([*wrong, f"delivered: {ran.delivered}", f"raised: {ran.error!r}"])
            failure = f"wrong outcome ({time.monotonic() - clock:.1f} s):\n{d}\n  {details}"
    fault_fns.RELEASE.set()  # what thread-mode items left, or could not stop, ends now
    kill_leftovers(before, folder, started, failed=failure is not None)
    if failure:
        pytest.fail(failure, pytrace=False)
    wait_for_no_leaks(before, 10)
    try:
        assert_no_leaks(before)
    except AssertionError as exc:
        kill_leftovers(before, folder, started, failed=True)
        pytest.fail(f"left behind ({time.monotonic() - clock:.1f} s):\n{d}\n  {exc}", pytrace=False)


def batches() -> list[Any]:
    """The tests' parameters: batches of seeds (those past CI's count marked slow), or the replay."""
    if REPLAY:
        return [pytest.param(REPLAY, id="replay")]
    seeds = range(FIRST_SEED, FIRST_SEED + DRAWS)
    return [
        pytest.param(
            list(seeds[k : k + BATCH]),
            id=f"seeds-{seeds[k]}-{seeds[min(k + BATCH, DRAWS) - 1]}",
            marks=[pytest.mark.slow] if seeds[k] >= CI_DRAWS else [],  # past what CI runs
        )
        for k in range(0, DRAWS, BATCH)
    ]


@pytest.fixture(scope="module", autouse=True)
def _warm_start_methods() -> None:
    """Start each start method's helpers (a fork server's pipe, say) before the leak baselines."""
    for method in ("fork", "forkserver", "spawn"):
        with ProcessAdapter(1, start_method=method) as pool:
            pmap(abs, [1], mode=pool, lock=True)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seeds", batches())
def test_faulty_maps(seeds: list[int], tmp_path: Path) -> None:
    for seed in seeds:
        run_draw(seed, tmp_path)
