"""The process adapter: workers it owns, what it pickles, how it reports a dead worker."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import helpers
import pytest
from conftest import Snapshot, wait_for_no_leaks

from parmap import ProcessAdapter, SerializationError, WorkerDiedError, pmap
from parmap._launch import ENV_START_METHOD, default_start_method

pytestmark = pytest.mark.process


def exit_on_three(x: int) -> int:
    if x == 3:
        os._exit(7)
    return x


def kill_self_on_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def return_a_lock(_: int) -> object:
    return threading.Lock()


def nested(x: int) -> list[int]:
    return pmap(helpers.square, range(x), mode="process")


def test_fn_is_pickled_once_per_call() -> None:
    fn = helpers.CountedPickles()
    helpers.CountedPickles.pickled = 0
    assert pmap(fn, range(1000), mode="process", workers=2, chunksize=10) == list(range(1, 1001))
    assert helpers.CountedPickles.pickled == 1


def test_workers_start_on_demand() -> None:
    # (A pool that forks its workers from a single-threaded caller starts them all at once.)
    with ProcessAdapter(workers=4, start_method=default_start_method()) as pool:
        assert pool.pids() == []
        assert pmap(helpers.square, [3], mode=pool) == [9]
        assert len(pool.pids()) == 1


def test_heavy_items_spread_over_every_worker() -> None:
    # Six heavy items on two workers: automatic chunking must keep both busy at once.
    got = pmap(helpers.where, range(6), mode="process", workers=2)
    assert [x for x, *_ in got] == list(range(6))
    pids = {pid for _, pid, *_ in got}
    assert len(pids) == 2
    overlaps = [(a, b) for a in got for b in got if a[1] != b[1] and a[3] < b[4] and b[3] < a[4]]
    assert overlaps, "the two workers never ran at the same time"


def test_a_worker_left_without_work_ends_while_the_map_runs(tmp_path: Path) -> None:
    # Two items, one per worker: once item 1 is done the input is exhausted, so its worker
    # stops at once (its exit overlaps the rest of the map) instead of at the shutdown.
    path = str(tmp_path / "pid")
    got = pmap(helpers.outlive_the_other, [(0, path), (1, path)], mode="process", workers=2, chunksize=1)
    assert got[0] is True, "the idle worker lived until the map ended"


def test_adapter_reused_across_calls_keeps_its_workers() -> None:
    with ProcessAdapter(workers=2) as pool:
        pmap(helpers.square, range(100), mode=pool)
        pids = set(pool.pids())
        for _ in range(5):
            assert pmap(helpers.square, range(100), mode=pool) == [x * x for x in range(100)]
        assert set(pool.pids()) == pids
    assert not pool.running


def test_worker_exit_names_the_items_and_the_exit_code() -> None:
    with pytest.raises(WorkerDiedError, match=r"exit code 7\) while running item 3"):
        pmap(exit_on_three, range(10), mode="process", chunksize=1)
    assert pmap(helpers.square, range(5), mode="process") == [0, 1, 4, 9, 16]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_worker_killed_names_the_signal() -> None:
    with pytest.raises(WorkerDiedError, match=r"SIGKILL\) while running item 3"):
        pmap(kill_self_on_three, range(10), mode="process", chunksize=1)


def test_unpicklable_item_is_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="could not be pickled"):
        pmap(helpers.identity, [1, threading.Lock(), 3], mode="process", chunksize=1)


def test_unpicklable_result_names_the_item() -> None:
    with pytest.raises(SerializationError, match="result of fn") as info:
        pmap(return_a_lock, range(3), mode="process", chunksize=1)
    assert any("item 0" in n for n in getattr(info.value, "__notes__", []))


def test_nested_process_map_in_a_worker_is_bounded() -> None:
    assert pmap(nested, [3, 4], mode="process") == [[0, 1, 4], [0, 1, 4, 9]]


def test_no_fork_with_threads_warning_when_the_caller_has_threads() -> None:
    # pytest turns warnings into errors: a fork of a multi-threaded caller would fail here.
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert pmap(helpers.square, range(50), mode="process") == [x * x for x in range(50)]
    finally:
        stop.set()
        thread.join()


def test_default_start_method(monkeypatch: pytest.MonkeyPatch) -> None:
    for method in multiprocessing.get_all_start_methods():
        monkeypatch.setenv("PARMAP_START_METHOD", method)
        assert default_start_method() == method
    monkeypatch.delenv("PARMAP_START_METHOD")
    has_fork_server = "forkserver" in multiprocessing.get_all_start_methods()
    expected = "forkserver" if has_fork_server and sys.platform != "darwin" else "spawn"
    assert default_start_method() == expected


def test_unknown_start_method() -> None:
    with pytest.raises(ValueError, match="start_method"):
        ProcessAdapter(start_method="teleport")


def test_failure_ends_workers_promptly() -> None:
    # One worker sleeps, the other fails: the map raises without waiting for the sleeper.
    started = time.monotonic()
    with pytest.raises(ValueError, match="unpack"):
        pmap(
            helpers.sleep_then,
            [(30.0, 0), "not a pair"],
            mode="process",
            workers=2,
            chunksize=1,
            ordered=False,
        )
    assert time.monotonic() - started < 10.0


def test_leak_check_sees_a_leaked_worker() -> None:
    # The leak check itself must be able to fail: a pool left open is seen, and closing it clears.
    before = Snapshot.take()
    pool = ProcessAdapter(workers=1)
    pool.start()
    pmap(helpers.square, [1], mode=pool)
    leaked = Snapshot.take()
    assert leaked.children - before.children
    assert leaked.threads > before.threads
    pool.shutdown()
    after = wait_for_no_leaks(before)
    assert after.children <= before.children


def test_workers_that_cannot_start_fail_fast_without_respawning(tmp_path: Path) -> None:
    if default_start_method() == "fork":
        pytest.skip("fork does not import the main module in workers")
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys, time\n"
        "from parmap import WorkerDiedError, pmap\n"
        "if __name__ != '__main__':\n"
        "    raise SystemExit(3)  # workers cannot import this main module\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    pmap(abs, range(100), workers=2)\n"
        "except WorkerDiedError as exc:\n"
        "    print('WorkerDiedError', round(time.monotonic() - started, 1), exc)\n"
    )
    result = helpers.run_script(script, env=helpers.no_fork_first_env())
    assert result.returncode == 0, result.stderr
    assert "WorkerDiedError" in result.stdout
    assert re.search(r"failed to start \(exit code \d+\)", result.stdout), result.stdout
    assert "__name__ == '__main__'" in result.stdout
    assert float(result.stdout.split()[1]) < 10


SPAWNED_END = """
import atexit, json, os, sys, threading, time
from parmap import ProcessAdapter, pmap

OUT = sys.argv[1]


def leave_traces(x):
    # What a worker's normal exit takes care of: buffered output (stdout is a pipe here), an
    # exit handler (item 1), a (non-daemon) thread of fn's own still running at the end (item 2).
    pid = os.getpid()
    if x == 1:
        atexit.register(lambda: open(f"{OUT}/atexit-{pid}", "w").close())
    else:
        thread = threading.Thread(target=lambda: (time.sleep(0.5), open(f"{OUT}/thread-{pid}", "w").close()))
        thread.start()
    print(f"printed-by-{pid}")
    return pid


if __name__ == "__main__":
    with ProcessAdapter(1, start_method="spawn") as pool:
        first = pmap(leave_traces, [1], mode=pool)[0]
    pid = pmap(leave_traces, [2], mode="process", workers=1)[0]  # its start method: spawn (env)
    print(json.dumps({"pids": [first, pid], "files": sorted(os.listdir(OUT))}))
"""


def test_a_spawned_worker_still_exits_cleanly(tmp_path: Path) -> None:
    # Spawned workers end without the interpreter's teardown (15-30 ms each); exit handlers,
    # buffered output and fn's own threads must not be lost for it.
    script = tmp_path / "spawned_end.py"
    script.write_text(SPAWNED_END)
    out = tmp_path / "out"
    out.mkdir()
    # (buffered output: PYTHONUNBUFFERED would make every print a write of its own)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, ENV_START_METHOD: "spawn"}
    result = helpers.run_script(script, out, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    first, second = report["pids"]
    assert first != second
    for pid in (first, second):
        assert f"printed-by-{pid}" in result.stdout
    assert report["files"] == [f"atexit-{first}", f"thread-{second}"]


SLOW_SECOND_START = """
import os, sys, time
import multiprocessing
from parmap import pmap

if __name__ != "__main__":
    try:  # the first worker to start goes on; the second takes 20 s to import this module
        os.close(os.open(os.path.join(sys.argv[1], "first"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(20)

if __name__ == "__main__":
    started = time.monotonic()
    assert pmap(abs, range(-50, 50), workers=2) == list(map(abs, range(-50, 50)))
    print(round(time.monotonic() - started, 1), multiprocessing.active_children())
"""


def test_a_map_does_not_wait_for_a_worker_still_starting(tmp_path: Path) -> None:
    # The first worker ran everything while the second was still starting: the map ends
    # without waiting for that start (which used to take as long as the start).
    if default_start_method() == "fork":
        pytest.skip("fork does not import the main module in workers")
    script = tmp_path / "slow_start.py"
    script.write_text(SLOW_SECOND_START)
    result = helpers.run_script(script, tmp_path, env=helpers.no_fork_first_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    seconds, children = result.stdout.split(maxsplit=1)
    assert float(seconds) < 15, result.stdout
    assert children.strip() == "[]"


OUT_OF_DESCRIPTORS = """
import json, os, resource
import cloudpickle  # (pickling fn, defined here, must not need to open a file)
from parmap import ProcessAdapter, pmap

def die_on_zero(x):
    if x == 0:
        os._exit(3)
    return x

if __name__ == "__main__":
    out = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with ProcessAdapter(1) as pool:
        out["warm"] = pmap(abs, [-1], mode=pool)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor
        try:  # item 0 kills the only worker; its replacement cannot get a pipe
            got = pmap(die_on_zero, [0, 1], mode=pool, chunksize=1, on_error="return")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        out["errors"] = [f"{type(v).__name__}: {v}" for v in got]
        out["again"] = pmap(abs, [-2, -3], mode=pool)
    print(json.dumps(out))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="a descriptor limit that bites at once: Linux")
def test_a_worker_that_cannot_be_started_fails_its_chunks_and_the_pool_recovers(tmp_path: Path) -> None:
    script = tmp_path / "out_of_descriptors.py"
    script.write_text(OUT_OF_DESCRIPTORS)
    result = helpers.run_script(script)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["warm"] == [1]
    died, unstarted = out["errors"]
    assert "died (exit code 3) while running item 0" in died
    assert unstarted.startswith("WorkerDiedError: could not start a worker process: "), unstarted
    assert "could not start a worker process" in result.stderr  # logged as a warning too
    assert out["again"] == [2, 3]  # once descriptors are free again, a worker starts


FORK_FIRST_SCRIPT = """
import json, os, sys, threading, time
from pathlib import Path
import parmap
from parmap import ItemTimeoutError, WorkerDiedError, pmap

def parent(_):
    return os.getppid()

def fragile(x):
    if x == 3:
        os._exit(7)
    if x == 5:
        time.sleep(30)
    return x

def count(path):
    with parmap.lock():
        p = Path(path)
        n = int(p.read_text())
        time.sleep(0.001)
        p.write_text(str(n + 1))

if __name__ == "__main__":
    out = {"me": os.getpid()}
    out["forked"] = pmap(parent, range(6), workers=2, chunksize=1)
    got = pmap(fragile, range(8), workers=2, chunksize=1, timeout=1, on_error="return")
    out["fragile"] = [type(v).__name__ if isinstance(v, BaseException) else v for v in got]
    counter = Path(sys.argv[1])
    counter.write_text("0")
    pmap(count, [str(counter)] * 40, workers=2, lock=True)
    out["count"] = int(counter.read_text())
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    out["threaded"] = pmap(parent, range(6), workers=2, chunksize=1)
    stop.set()
    other.join()
    print(json.dumps(out))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked from the caller only on Linux")
def test_single_threaded_caller_forks_its_first_workers(tmp_path: Path) -> None:
    """Forked from the caller while it runs one thread; the fork server once it runs two.

    Deaths, timeouts and the pool lock work the same for workers forked from the caller
    (the replacements come from the fork server).
    """
    script = tmp_path / "fork_first.py"
    script.write_text(FORK_FIRST_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PARMAP_START_METHOD"}
    result = helpers.run_script(script, tmp_path / "counter", env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["forked"] == [out["me"]] * 6
    assert out["fragile"] == [0, 1, 2, "WorkerDiedError", 4, "ItemTimeoutError", 6, 7]
    assert out["count"] == 40
    assert out["me"] not in out["threaded"]


NO_CLOUDPICKLE = """
import math, sys
from parmap import pmap

if __name__ == "__main__":
    assert pmap(math.sqrt, [1, 4, 9], workers=2) == [1.0, 2.0, 3.0]
    plain = "cloudpickle" not in sys.modules
    assert pmap(lambda x: x + 1, [1, 2], workers=2) == [2, 3]
    print(plain, "cloudpickle" in sys.modules)
"""


def test_module_functions_travel_without_cloudpickle(tmp_path: Path) -> None:
    # A function found by name pickles the same with pickle, without importing cloudpickle
    # (~0.6 ms of a fresh script's first map); a lambda still goes through cloudpickle.
    script = tmp_path / "plain.py"
    script.write_text(NO_CLOUDPICKLE)
    result = helpers.run_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
