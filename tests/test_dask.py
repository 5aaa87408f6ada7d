"""mode="dask" on a real cluster."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest

from parmap import DaskAdapter, pmap

ROOT = Path(__file__).resolve().parents[1]
dask = pytest.mark.dask


@dask
def test_fn_is_sent_to_the_cluster_once_per_call(dask_client: object) -> None:
    helpers.CountedPickles.pickled = 0
    got = pmap(helpers.CountedPickles(), range(300), mode="dask", chunksize=10)
    assert got == list(range(1, 301))
    assert helpers.CountedPickles.pickled == 1


@dask
def test_explicit_client(dask_client: object) -> None:
    assert pmap(helpers.square, range(50), mode=DaskAdapter(dask_client)) == [x * x for x in range(50)]


@dask
def test_lock_is_a_cluster_wide_lock(dask_client: object, tmp_path: Path) -> None:
    path = tmp_path / "counter.txt"
    path.write_text("0")
    pmap(
        functools.partial(helpers.increment_file, str(path)),
        [0.002] * 30,
        mode="dask",
        chunksize=1,
        lock=True,
    )
    assert path.read_text() == "30"


@dask
def test_timeout_is_refused(dask_client: object) -> None:
    with pytest.raises(ValueError, match="cannot interrupt fn"):
        pmap(helpers.square, range(3), mode="dask", timeout=1)


LOST_WORKER = """
import os, dask, distributed
from parmap import DaskAdapter, WorkerDiedError, pmap

def die_on_one(x):
    if x == 1:
        os._exit(7)
    return x

if __name__ == "__main__":
    # Dask re-runs a task whose worker died up to this many times (3 by default): once here,
    # so the innocent task queued on the same worker runs again and only the killer is lost.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        )
        with cluster:
            with distributed.Client(cluster) as client:
                got = pmap(die_on_one, [0, 1, 2], mode=DaskAdapter(client), chunksize=1, on_error="return")
    print(got[0] if got[0] == 0 else "lost", got[2] if got[2] == 2 else "lost", type(got[1]).__name__, got[1])
"""


def test_lost_worker_is_reported_like_a_dead_process(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    script = tmp_path / "lost_worker.py"
    script.write_text(LOST_WORKER)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    first, last, kind, *message = out.stdout.split(" ", 3)
    assert kind == "WorkerDiedError"
    assert "lost the worker running items 1..1" in message[0]
    # Dask condemns every task placed on a worker that died too often, so an item queued beside
    # the killer may be lost with it (a Dask policy); either way the map completes.
    assert first in ("0", "lost")
    assert last in ("2", "lost")


NO_CLIENT = """
from parmap import pmap
try:
    pmap(abs, [1], mode="dask")
except ValueError as exc:
    print(exc)
"""


def test_no_client_is_a_clear_error() -> None:
    pytest.importorskip("distributed")
    code = NO_CLIENT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "found no running dask.distributed Client" in out.stdout
    assert "Client()" in out.stdout


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"parmap\[dask\]"):
        pmap(abs, [1], mode="dask")


@pytest.fixture
def command_line_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two workers started with `dask scheduler` / `dask worker` on 127.0.0.1."""
    pytest.importorskip("distributed")
    dask_cli = [sys.executable, "-m", "dask"]  # (the `dask` script: wherever pip put it)
    scheduler_file = tmp_path / "scheduler.json"
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [
        subprocess.Popen(
            [
                *dask_cli,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            **common,  # type: ignore[arg-type]
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [
                    *dask_cli,
                    "worker",
                    address,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                **common,  # type: ignore[arg-type]
            )
        )
        yield address
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_scheduler_and_workers_from_the_command_line(command_line_cluster: str) -> None:
    import distributed  # noqa: PLC0415

    with distributed.Client(command_line_cluster) as client:
        client.wait_for_workers(2, timeout=60)
    # The command-line workers cannot import the tests' modules: a lambda travels by value.
    got = pmap(lambda x: x * x, range(200), mode=DaskAdapter(command_line_cluster))
    assert got == [x * x for x in range(200)]


@dask
def test_amap_drives_a_cluster_without_blocking_the_loop(dask_client: object) -> None:
    import asyncio  # noqa: PLC0415

    from parmap import amap  # noqa: PLC0415

    async def main() -> tuple[list[int], list[int]]:
        awaited = await amap(helpers.square, range(200), mode="dask")
        iterated = [r async for r in amap(helpers.square, range(50), mode=DaskAdapter(dask_client))]
        return awaited, iterated

    awaited, iterated = asyncio.run(main())
    assert awaited == [x * x for x in range(200)]
    assert iterated == [x * x for x in range(50)]
