"""Life cycle with real processes and real signals: Ctrl-C, a killed caller, exit, bad scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import helpers
import psutil
import pytest

from parmap import pmap
from parmap._launch import default_start_method

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from parmap import pmap

    # As under a terminal: a job started in the background by a shell inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    PIDS = Path(sys.argv[2])

    def slow(x):
        (PIDS / str(os.getpid())).touch()
        time.sleep(float(sys.argv[3]))
        return x

    if __name__ == "__main__":
        started = time.monotonic()
        try:
            if sys.argv[4] == "lazy-exit":
                it = pmap(slow, range(100), mode=sys.argv[1], workers=2, chunksize=1, lazy=True)
                print("first", next(it), flush=True)
                sys.exit(0)  # with the iterator still pending
            pmap(slow, range(8), mode=sys.argv[1], workers=2, chunksize=1)
        except KeyboardInterrupt:
            print(f"KeyboardInterrupt after {time.monotonic() - started:.2f} s", flush=True)
    """
)
MODES = ["serial", "thread", pytest.param("process", marks=pytest.mark.process)]


def start(tmp_path: Path, mode: str, sleep: float, how: str = "map") -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, str(pids), str(sleep), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a foreground job
    )
    return proc, pids


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """``proc.communicate``; past the timeout, its whole process group is killed (no leak)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def wait_for_items(pids: Path, count: int = 1) -> list[int]:
    deadline = time.monotonic() + 30
    while len(list(pids.iterdir())) < count:
        assert time.monotonic() < deadline, "the items never started"
        time.sleep(0.02)
    time.sleep(0.2)  # let the other worker start its item too
    return [int(p.name) for p in pids.iterdir()]


def assert_gone(pids: list[int], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [
            p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        time.sleep(0.05)
    assert not alive, f"worker processes still alive: {alive}"


@posix_only
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["caller", "process-group"])
def test_ctrl_c_stops_the_map_at_once(tmp_path: Path, mode: str, target: str) -> None:
    proc, pids = start(tmp_path, mode, sleep=60)
    workers = [p for p in wait_for_items(pids) if p != proc.pid]
    sent = time.monotonic()
    if target == "caller":
        proc.send_signal(signal.SIGINT)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: one press
    out, err = finish(proc)
    assert time.monotonic() - sent < 3.0, "Ctrl-C took too long"
    assert "KeyboardInterrupt after" in out, err
    assert "Traceback" not in err, err
    assert_gone(workers)


@posix_only
@pytest.mark.process
def test_workers_end_when_the_caller_is_killed_while_they_are_busy(tmp_path: Path) -> None:
    proc, pids = start(tmp_path, "process", sleep=60)
    workers = [p for p in wait_for_items(pids, 2) if p != proc.pid]
    assert len(workers) == 2
    proc.kill()
    finish(proc)
    assert_gone(workers)


@pytest.mark.parametrize("mode", MODES)
def test_interpreter_exit_with_a_pending_lazy_map_is_quiet(tmp_path: Path, mode: str) -> None:
    proc, pids = start(tmp_path, mode, sleep=0.3, how="lazy-exit")
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert out.startswith("first 0"), out
    assert err == "", err  # no traceback, no "leaked semaphore" warning
    assert_gone([p for p in (int(f.name) for f in pids.iterdir()) if p != proc.pid])


def test_items_generator_that_raises_propagates_unwrapped(mode: str | Executor) -> None:
    def source() -> Iterator[int]:
        yield from range(10)
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="the disk went away"):
        pmap(helpers.square, source(), mode=mode)


def test_concurrent_maps_from_several_threads(mode: str | Executor) -> None:
    results: dict[int, list[int]] = {}

    def run(k: int) -> None:
        results[k] = pmap(helpers.square, range(k, k + 50), mode=mode)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [x * x for x in range(k, k + 50)] for k in range(4)}


@pytest.mark.process
def test_unguarded_script_is_a_clear_error_not_a_fork_bomb(tmp_path: Path) -> None:
    if default_start_method() == "fork":
        pytest.skip("fork does not import the main module in workers")
    script = tmp_path / "unguarded.py"
    script.write_text("from parmap import pmap\nprint(pmap(abs, [-1, -2, -3], workers=2))\n")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=helpers.no_fork_first_env(),
    )
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "WorkerDiedError" in result.stderr
    assert "if __name__ == '__main__':" in result.stderr
