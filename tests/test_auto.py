"""mode="auto": the first items run in the caller, then serial, thread or process is picked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest

from parmap import pmap
from parmap._auto import FRESH_BELOW, MIN_ITEM_SECONDS, SERIAL_BELOW, choose, fresh_workers
from parmap._launch import ENV_START_METHOD


def spin(ms: float) -> int:
    """Burn CPU for ``ms`` milliseconds; return the pid that did."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return os.getpid()


def nap(ms: float) -> int:
    time.sleep(ms / 1000)
    return os.getpid()


def _nap_or_fail_on_7(x: int) -> int:
    time.sleep(0.005)
    if x == 7:
        raise ValueError(x)
    return x


def _chosen(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split("chose ")[1].split()[0] for r in caplog.records if "chose" in r.getMessage()]


def _cpu_percent(caplog: pytest.LogCaptureFixture) -> float:
    """The CPU share of the probe's items, as the choice's log line gives it."""
    (line,) = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
    return float(line.split("% CPU")[0].split()[-1])


@pytest.fixture(autouse=True)
def _debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="parmap")


def test_decision_table() -> None:
    assert choose(1.0, 1.0, 0) == "serial"  # nothing left
    assert choose(MIN_ITEM_SECONDS / 2, 1.0, None) == "serial"  # trivial items, even unbounded
    assert choose(1e-4, 1.0, int(SERIAL_BELOW / 1e-4) - 1) == "serial"  # too little work left
    assert choose(1e-3, 1.0, 1_000) == "process"
    assert choose(1e-3, 0.1, 1_000) == "thread"
    assert choose(1e-3, 1.0, None) == "process"
    # Workers that start as fresh interpreters (~0.1 s) need more work to pay for themselves.
    enough_for_forked = int(FRESH_BELOW / 1e-3) - 1
    assert choose(1e-3, 1.0, enough_for_forked) == "process"
    assert choose(1e-3, 1.0, enough_for_forked, fresh=True) == "serial"
    assert choose(1e-3, 1.0, int(FRESH_BELOW / 1e-3) + 1, fresh=True) == "process"
    assert choose(1e-3, 0.1, enough_for_forked, fresh=True) == "thread"  # threads start at once
    assert choose(1e-3, 1.0, None, fresh=True) == "process"  # no estimate: the per-item cost decides
    # Without the GIL (a free-threaded build), threads run CPU-bound Python code in parallel.
    assert choose(1e-3, 1.0, 1_000, gil=False) == "thread"
    assert choose(1e-3, 1.0, None, gil=False) == "thread"
    assert choose(1e-3, 1.0, enough_for_forked, fresh=True, gil=False) == "thread"
    assert choose(1e-3, 0.1, 1_000, gil=False) == "thread"
    assert choose(MIN_ITEM_SECONDS / 2, 1.0, None, gil=False) == "serial"  # still too little per item
    assert choose(1e-4, 1.0, int(SERIAL_BELOW / 1e-4) - 1, gil=False) == "serial"


def test_one_item_runs_in_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    assert pmap(spin, [1.0], mode="auto") == [os.getpid()]
    assert _chosen(caplog) == []  # the input ended during the probe: no pool at all


def test_trivial_items_stay_serial(caplog: pytest.LogCaptureFixture) -> None:
    assert pmap(helpers.square, range(100_000), mode="auto") == [x * x for x in range(100_000)]
    assert _chosen(caplog) == ["'serial'"]


def test_trivial_stream_stays_serial(caplog: pytest.LogCaptureFixture) -> None:
    got = pmap(helpers.square, (x for x in range(100_000)), mode="auto", lazy=True)
    assert sum(got) == sum(x * x for x in range(100_000))
    assert _chosen(caplog) == ["'serial'"]


def test_a_first_item_that_waited_once_is_measured_again(caplog: pytest.LogCaptureFixture) -> None:
    # What a busy machine does to a trivial first item (the caller waits for a CPU), made
    # certain: the first call alone sleeps. One wait is not I/O-bound work: serial, not threads.
    helpers.FIRST_CALL["waited"] = False
    assert pmap(helpers.first_call_waits, range(100_000), mode="auto") == [x * x for x in range(100_000)]
    assert _chosen(caplog) == ["'serial'"]


def test_items_that_keep_waiting_go_to_threads(caplog: pytest.LogCaptureFixture) -> None:
    items = [(0.003, x) for x in range(40)]  # each waits 3 ms: the second look confirms the first
    assert pmap(helpers.sleep_then, items, mode="auto") == list(range(40))
    assert _chosen(caplog) == ["'thread'"]


def test_without_the_gil_cpu_bound_items_go_to_threads(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interpreter says the GIL is off (as a free-threaded build does): the same work that
    # goes to processes below goes to threads, and no process starts, not even a head start.
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert pmap(spin, [3.0] * 100, mode="auto", workers=2) == [os.getpid()] * 100
    assert pmap(spin, [30.0] * 4, mode="auto", workers=2) == [os.getpid()] * 4  # a short, heavy input too
    assert _chosen(caplog) == ["'thread'", "'thread'"]


@pytest.mark.process
def test_cpu_bound_items_go_to_processes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.3 s of work: enough for a process pool under any start method (see the next test). The
    # GIL is reported on, as it is on every build but a free-threaded one (see the test above).
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    pids = pmap(spin, [3.0] * 100, mode="auto", workers=2)
    assert _chosen(caplog) == ["'process'"]
    assert pids[0] == os.getpid()  # the probe
    assert len(set(pids) - {os.getpid()}) == 2


def test_a_little_cpu_work_stays_serial_where_workers_start_slowly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~0.1 s of CPU work: worth two forked workers, not two spawned interpreters (~0.1 s each).
    monkeypatch.setenv(ENV_START_METHOD, "spawn")
    assert fresh_workers()
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    pids = pmap(spin, [3.0] * 35, mode="auto", workers=2)
    # Never a process pool. (On a machine busy with other work, the probe's CPU-bound item may
    # get under 35% of a CPU and look like waiting: then threads, rightly, by rule 3.)
    (chosen,) = _chosen(caplog)
    assert chosen == "'serial'" or (chosen == "'thread'" and _cpu_percent(caplog) < 35), chosen
    assert set(pids) == {os.getpid()}
    monkeypatch.setenv(ENV_START_METHOD, "fork")
    assert not fresh_workers()


def test_waiting_items_go_to_threads(caplog: pytest.LogCaptureFixture) -> None:
    pids = pmap(nap, [20.0] * 40, mode="auto", workers=20)
    assert _chosen(caplog) == ["'thread'"]
    assert set(pids) == {os.getpid()}


def test_every_option_works_as_with_a_fixed_mode(caplog: pytest.LogCaptureFixture) -> None:
    # Items that wait (5 ms each): a pool (threads) is certainly chosen after the probe.
    seen: list[object] = []
    got = pmap(
        _nap_or_fail_on_7,
        range(20),
        mode="auto",
        ordered=False,
        indexed=True,
        on_error="return",
        callback=seen.append,
    )
    assert sorted(i for i, _ in got) == list(range(20))
    errors = [i for i, v in got if isinstance(v, BaseException)]
    assert errors == [7]
    assert seen == got
    assert _chosen(caplog) == ["'thread'"]


@pytest.mark.process
def test_options_only_workers_honour_mean_process() -> None:
    # An initializer, a lock or a timeout are promises about workers: no probe in the caller.
    assert os.getpid() not in pmap(spin, [0.1] * 4, mode="auto", workers=2, lock=True)
    assert os.getpid() not in pmap(spin, [0.1] * 4, mode="auto", workers=2, timeout=30)


HEAD_START = """
import json, os, sys, time
from parmap import pmap

def spin(ms):
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return os.getpid()

def nap(ms):
    time.sleep(ms / 1000)
    return os.getpid()

def spin_where(ms):
    import threading
    return spin(ms), threading.current_thread().name

if __name__ == "__main__":
    started = time.perf_counter()
    where = pmap(spin_where, [60.0] * 6, mode="auto", workers=2)
    heavy = [pid for pid, _ in where]
    probe = where[0][1]
    started = time.perf_counter()
    waits = pmap(nap, [100.0] * 8, mode="auto", workers=2)
    waits_s = time.perf_counter() - started
    # Fewer chunks than workers (a fixed chunksize): the probe must not wait for the others.
    chunked = pmap(spin, [10.0] * 8, mode="auto", workers=2, chunksize=4)
    out = {"me": os.getpid(), "heavy": heavy, "probe": probe, "waits": waits, "waits_s": waits_s}
    out["chunked"] = len(chunked)
    # Abandoned after one result: nothing stays behind (the probe thread ends with its item).
    import multiprocessing, threading
    lazy = pmap(nap, [50.0] * 6, mode="auto", workers=2, lazy=True)
    next(lazy)
    lazy.close()
    time.sleep(0.2)
    out["left"] = [threading.active_count(), len(multiprocessing.active_children())]
    print(json.dumps(out))
"""


@pytest.mark.process
@pytest.mark.skipif(sys.platform != "linux", reason="the head start needs a caller that can fork cheaply")
def test_short_input_gets_a_head_start(tmp_path: Path) -> None:
    """A few heavy items: the first runs in a probe thread while workers take the next ones."""
    script = tmp_path / "head_start.py"
    script.write_text(HEAD_START)
    env = {k: v for k, v in os.environ.items() if k != "PARMAP_START_METHOD"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    # The probe's item, and one more once it chose unless the workers took them all first.
    assert out["heavy"].count(out["me"]) in (1, 2)
    assert len(set(out["heavy"]) - {out["me"]}) == 2
    assert out["probe"] == "parmap-auto-probe"  # not the caller's thread: the workers ran beside it
    # Items that wait: the probe and one per worker first, then the rest on 2 threads.
    assert out["waits_s"] < 8 * 0.100  # less than one after another
    assert out["chunked"] == 8
    assert out["left"] == [1, 0]
