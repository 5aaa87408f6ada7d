"""Smoke tests: the demonstration and the benchmark run to the end and print their tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_HEADERS = ("workload", "items", "serial s", "thread s", "process s", "thread speedup", "process speedup")
WORKLOADS = ("md5 of stdlib files", "factorial (tiny tasks)", "brute-force gcd", "crawler (")


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
    return proc.stdout


@pytest.mark.process
def test_demo_quick() -> None:
    out = _run("examples/demo.py", "--quick")
    for header in DEMO_HEADERS:
        assert header in out
    for name in WORKLOADS:
        assert name in out
    assert "CPUs available:" in out
    assert "Lessons:" in out


@pytest.mark.process
def test_bench_modes_quick() -> None:
    out = _run("benchmarks/bench_modes.py", "--quick", "--repeat", "1")
    for name in (*WORKLOADS, "trivial items (operator.neg)"):
        assert f"== {name}" in out
    for header in ("configuration", "median s", "vs pmap process"):
        assert header in out
    for config in (
        "pmap serial",
        "pmap thread",
        "pmap process (reference)",
        "multiprocessing.Pool.map",
        "ProcessPoolExecutor.map chunksize=1",
        "ThreadPoolExecutor.map",
        "joblib Parallel",
        "mpire WorkerPool.map",
    ):
        assert config in out
    assert "FAILED" not in out


@pytest.mark.process
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_lock_counter(mode: str) -> None:
    out = _run("examples/lock_counter.py", "--increments", "30", "--mode", mode)
    assert "with lock=True: counter = 30" in out


def test_progress_md5() -> None:
    out = _run("examples/progress_md5.py", "--limit", "50")
    assert "50 files hashed" in out


@pytest.mark.process
def test_bench_features_quick() -> None:
    out = _run("benchmarks/bench_features.py", "--quick", "--repeat", "1")
    assert "worker pids unchanged across them: True" in out


@pytest.mark.process
def test_bench_dask_quick() -> None:
    pytest.importorskip("distributed")
    out = _run("benchmarks/bench_dask.py", "--items", "2000", "--deadline", "20", "--repeat", "1")
    assert "pmap mode='dask'" in out
    assert "Client.map, one task per item" in out
