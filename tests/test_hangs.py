"""Never hangs: the cases a hostile user can hit, one test each (issue: seven hangs and a leak).

Each ends within its bound with the documented outcome per item, and leaves nothing behind (the
autouse leak check). Workers that fn keeps from exiting (a thread, a child holding its pipes,
SIGTERM ignored) are killed after a grace period, with a warning.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import signal
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import hang_fns
import helpers
import psutil
import pytest
from conftest import Snapshot, wait_for_no_leaks

from parmap import ItemTimeoutError, ProcessAdapter, ThreadAdapter, WorkerDiedError, pmap

METHODS = [m for m in ("fork", "forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]
TESTS = Path(__file__).parent

# A pool that forks its workers from this (multi-threaded) test process: 3.12+ warns.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def _warm_every_start_method() -> None:
    """Start the fork server (a per-interpreter service) before any test's leak baseline.

    The session starts only the default start method's services; these tests use all three.
    """
    for method in METHODS:
        with ProcessAdapter(1, start_method=method) as pool:
            pmap(abs, [1], mode=pool, lock=True)


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_a_warm_pool_times_out_items_that_idle_workers_took(method: str) -> None:
    with ProcessAdapter(2, start_method=method) as pool:
        assert pmap(abs, range(-4, 0), mode=pool) == [4, 3, 2, 1]
        # Both idle workers take a stuck item at once: no collector event will come to time them.
        got = pmap(
            hang_fns.stuck_on_first_two, range(4), mode=pool, timeout=0.5, chunksize=1, on_error="return"
        )
    assert [type(v) for v in got[:2]] == [ItemTimeoutError, ItemTimeoutError]
    assert "item 0 ran longer" in str(got[0])
    assert "item 1 ran longer" in str(got[1])
    assert got[2:] == [2, 3]


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_a_worker_that_dies_holding_the_lock_does_not_take_it_along(method: str) -> None:
    fates = ["ok", "ok", "exit", "ok", "kill", "ok", "ok", "ok"]
    pool = ProcessAdapter(2, start_method=method)
    got = pmap(
        hang_fns.in_the_lock, list(enumerate(fates)), mode=pool, lock=True, chunksize=1, on_error="return"
    )
    assert isinstance(got[2], WorkerDiedError)
    assert "exit code 7" in str(got[2])
    assert isinstance(got[4], WorkerDiedError)
    assert "SIGKILL" in str(got[4])
    assert [got[i] for i in (0, 1, 3, 5, 6, 7)] == [0, 1, 3, 5, 6, 7]


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_a_worker_killed_past_its_timeout_inside_the_lock_frees_it(method: str) -> None:
    # One worker: its replacement needs the lock that the killed one held.
    fates = ["ok", "hang", "ok", "ok"]
    pool = ProcessAdapter(1, start_method=method)
    got = pmap(
        hang_fns.in_the_lock, list(enumerate(fates)), mode=pool, lock=True, timeout=0.5, on_error="return"
    )
    assert isinstance(got[1], ItemTimeoutError)
    assert [got[i] for i in (0, 2, 3)] == [0, 2, 3]


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("max_tasks", [None, 1])
def test_a_thread_that_fn_leaves_running_does_not_hold_the_map(
    method: str, max_tasks: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="parmap")
    pool = ProcessAdapter(2, start_method=method, max_tasks_per_worker=max_tasks)
    assert pmap(hang_fns.leave_a_thread, range(4), mode=pool, chunksize=1) == [0, 1, 2, 3]
    assert _warnings(caplog, "after it was told to stop"), caplog.text
    assert not pool.running


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Path]:
    """A folder where fn notes the children it forks; they are killed at the end."""
    folder = tmp_path / "children"
    folder.mkdir()
    yield folder
    for entry in folder.iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry.name), signal.SIGKILL)


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_a_child_that_fn_forks_does_not_hold_the_map(method: str, children: Path) -> None:
    # Item 1's worker dies once it has forked: its end must show although the child holds its pipes.
    items = [(0, str(children), False), (1, str(children), True), (2, str(children), False)]
    pool = ProcessAdapter(2, start_method=method)
    got = pmap(hang_fns.fork_a_child, items, mode=pool, chunksize=1, on_error="return")
    assert got[0] == 0
    assert isinstance(got[1], WorkerDiedError)
    assert "exit code 5" in str(got[1])
    assert "item 1" in str(got[1])
    assert got[2] == 2


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_a_child_that_fn_forks_does_not_hold_an_idle_pool(method: str, children: Path) -> None:
    # The collector of an idle pool waits for events only. A chunk given to an idle worker must
    # make it look at exit codes again: this worker's end shows in no pipe (the child holds them).
    with ProcessAdapter(1, start_method=method) as pool:
        assert pmap(abs, [-1], mode=pool) == [1]
        while not pool._run.blind:  # type: ignore[union-attr]  # noqa: SLF001 - make the race certain: the collector waits blind
            time.sleep(0.001)
        got = pmap(hang_fns.fork_a_child, [(0, str(children), True)], mode=pool, on_error="return")
        assert isinstance(got[0], WorkerDiedError)
        assert "exit code 5" in str(got[0])
        assert pmap(abs, [-2], mode=pool) == [2]


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_workers_deaf_to_sigterm_are_stopped_in_one_grace_period(
    method: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="parmap")
    items = [(i, str(tmp_path)) for i in range(6)]
    with pytest.raises(ValueError, match="0"):
        pmap(hang_fns.deaf_to_sigterm, items, mode=ProcessAdapter(2, start_method=method), chunksize=1)
    # Both workers ignored SIGTERM (items 0 and 1 met): both were killed after one grace period.
    (message,) = _warnings(caplog, "ignored SIGTERM")
    assert message.count(",") == 1, message


EXIT_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
import hang_fns
from parmap import ProcessAdapter, pmap

if __name__ == "__main__":
    pool = ProcessAdapter(2, start_method=sys.argv[1])
    results = pmap(hang_fns.deaf, range(10), mode=pool, chunksize=1, lazy=True)
    next(results)
    print(json.dumps(pool.pids()), flush=True)
    # The interpreter exits with the map pending and workers that ignore SIGTERM.
"""


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_the_interpreter_exits_with_a_lazy_map_pending_on_deaf_workers(method: str, tmp_path: Path) -> None:
    script = tmp_path / "pending.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "PARMAP_START_METHOD"}
    result = helpers.run_script(script, method, TESTS, env=env)  # (its timeout makes a hang a failure)
    assert result.returncode == 0, result.stderr
    for pid in json.loads(result.stdout):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


class _Unreadable:
    def __iter__(self) -> Iterator[int]:
        raise OSError("cannot open the input")


MODES = ["serial", "thread", pytest.param("process", marks=pytest.mark.process), "auto"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lazy", [False, True])
def test_input_that_cannot_be_read_is_refused_before_any_worker(mode: str, lazy: bool) -> None:
    before = Snapshot.take()
    with pytest.raises(TypeError, match=r"items must be iterable, got 5 \(int\)"):
        pmap(abs, 5, mode=mode, lazy=lazy)  # type: ignore[call-overload]
    with pytest.raises(OSError, match="cannot open the input"):
        pmap(abs, _Unreadable(), mode=mode, lazy=lazy)  # type: ignore[call-overload]
    now = Snapshot.take()  # at once: nothing was started, so nothing needs time to end
    assert now.children <= before.children
    assert now.threads <= before.threads
    assert _opened(before, now) == [], "descriptors opened"


def _opened(before: Snapshot, now: Snapshot) -> list[str]:
    """What descriptors opened since ``before`` point to, sockets left out: parmap opens none,
    and a Dask client of an earlier test may reconnect at any moment. Nor /proc files (a Dask
    nanny's psutil reads its worker's), nor those closed while they were listed (their target
    reads "?"). Off Linux, without targets: the counts."""
    if not now.fd_targets:
        return [] if now.fds <= before.fds else [f"{now.fds - before.fds} descriptors"]
    left = Counter(target for _, target in before.fd_targets)
    opened = []
    for _, target in now.fd_targets:
        if left[target]:
            left[target] -= 1
        elif not target.startswith(("socket:", "/proc/")) and target != "?":
            opened.append(target)
    return opened


def _fails_at(n: int) -> Iterator[int]:
    yield from range(n)
    raise OSError("the input broke")


@pytest.mark.parametrize("mode", MODES)
def test_input_that_breaks_half_way_stops_every_worker(mode: str) -> None:
    with pytest.raises(OSError, match="the input broke"):
        pmap(helpers.square, _fails_at(50), mode=mode, chunksize=4)


@pytest.mark.process
def test_a_result_slow_to_pickle_is_named_by_its_own_index() -> None:
    # Items 3..5 share a chunk; item 4's result takes for ever to pickle.
    got = pmap(hang_fns.slow_result_on_4, range(6), workers=2, chunksize=3, timeout=0.5, on_error="return")
    assert got[:4] == [0, 1, 2, 3]
    assert got[5] == 5
    assert isinstance(got[4], ItemTimeoutError)
    assert "the result of item 4 took longer than timeout=0.5 s to pickle" in str(got[4])


@pytest.mark.process
def test_a_process_pool_serves_maps_before_inside_and_after_its_with_block() -> None:
    pool = ProcessAdapter(2)
    expected = [x * x for x in range(7)]
    assert pmap(helpers.square, range(7), mode=pool) == expected
    assert pmap(helpers.square, range(7), mode=pool) == expected
    assert not pool.running
    with pool:
        assert pmap(helpers.square, range(7), mode=pool, lock=True) == expected
        assert pmap(helpers.square, range(7), mode=pool) == expected
    assert pmap(helpers.square, range(7), mode=pool) == expected
    with pool:
        assert pmap(helpers.square, range(7), mode=pool) == expected
    assert not pool.running


POOLS = {"process": lambda: ProcessAdapter(2), "thread": lambda: ThreadAdapter(2)}


@pytest.mark.parametrize("kind", [pytest.param("process", marks=pytest.mark.process), "thread"])
def test_an_unstarted_pool_shared_by_threads_serves_every_map(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = POOLS[kind]()
    users = 4
    barrier = threading.Barrier(users)
    errors: list[BaseException] = []

    def user(k: int) -> None:
        try:
            barrier.wait()
            for i in range(4):
                lock = (k + i) % 2 == 0  # maps that ask for the lock share a pool with maps that do not
                assert pmap(helpers.square, range(k, k + 30), mode=pool, lock=lock) == [
                    x * x for x in range(k, k + 30)
                ]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(k,)) for k in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not pool.running


@pytest.mark.parametrize("kind", [pytest.param("process", marks=pytest.mark.process), "thread"])
def test_a_lazy_map_and_another_map_share_an_unstarted_pool(kind: str) -> None:
    pool = POOLS[kind]()
    results = pmap(helpers.square, range(10), mode=pool, lazy=True)
    assert next(results) == 0
    assert pmap(helpers.square, range(5), mode=pool) == [0, 1, 4, 9, 16]
    assert pool.running  # the lazy map still uses it
    assert list(results) == [x * x for x in range(1, 10)]
    assert not pool.running


@pytest.mark.process
@pytest.mark.parametrize("method", METHODS)
def test_a_running_pool_dropped_without_shutdown_stops_its_workers(method: str) -> None:
    # The collector thread holds the run, not the adapter: dropping the adapter ends the run.
    before = Snapshot.take()
    pool = ProcessAdapter(2, start_method=method)
    pool.start()
    assert pmap(helpers.square, range(20), mode=pool, chunksize=1) == [x * x for x in range(20)]
    assert len(pool.pids()) == 2
    workers = [psutil.Process(pid) for pid in pool.pids()]
    collector = pool._run.collector  # type: ignore[union-attr]  # noqa: SLF001
    assert collector is not None
    del pool
    gc.collect()
    collector.join(timeout=30)  # it stops the workers, then ends (seconds at most: a bound, not a timing)
    assert not collector.is_alive()
    assert all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers)
    after = wait_for_no_leaks(before)
    assert after.children <= before.children
    assert after.fds <= before.fds
