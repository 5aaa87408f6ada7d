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
    assert "What this run shows (from the table above):" in out
    for name in WORKLOADS:  # one lesson per workload, each naming the winner or saying none won
        line = next(line for line in out.splitlines() if line.startswith(f"  - {name}"))
        assert " won (" in line or "no mode beat serial" in line, line


@pytest.mark.process
def test_benchmark_quick() -> None:
    out = _run("benchmarks/run.py", "--quick", "--only", "tiny", "stream", "startup")
    for text in (
        "### tiny",
        "### stream",
        "### start-up",
        "speedup vs serial",
        "time / best peer",
        "pmap process",
        "Pool.map",
        "ThreadPoolExecutor.map",
        "### Targets",
    ):
        assert text in out
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


# One script per situation of the articles, each run on a small input.


@pytest.mark.process
def test_md5_tree() -> None:
    out = _run("examples/md5_tree.py", "examples", "--show", "1")
    assert "files hashed" in out
    for mode in ("serial", "thread", "process"):
        assert f"mode={mode!r}" in out


@pytest.mark.process
def test_factorial() -> None:
    out = _run("examples/factorial.py", "--items", "300")
    assert "300 products" in out
    assert "pmap (automatic chunks)" in out
    assert "pmap chunksize=1 (item by item)" in out


@pytest.mark.process
def test_gcd_pairs() -> None:
    out = _run("examples/gcd_pairs.py", "--pairs", "2")
    assert "gcd of 2 pairs: [1, 5]" in out
    assert "pmap mode='process'" in out


def test_crawler() -> None:
    out = _run("examples/crawler.py", "--pages", "6", "--delay", "0.01", "--workers", "3")
    assert "6 pages of 10 ms each" in out
    assert "pmap mode='thread' workers=3" in out


def test_async_crawler() -> None:
    out = _run("examples/async_crawler.py", "--pages", "6", "--delay", "0.01", "--workers", "3")
    assert "6 pages of 10 ms each" in out
    assert "amap(afetch) mode='async' workers=3 " in out
    assert "worst lag" in out
    assert "same byte count for every page as fetch: yes" in out


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.process)])
def test_as_completed(mode: str) -> None:
    out = _run("examples/as_completed.py", "--mode", mode, "--scale", "0.2")
    # Completion order depends on timing; what the callback sees and where it runs does not.
    assert out.count("in MainThread") == 12
    assert "returned in completion order: [" in out
    assert "back in input order: [0.16, 0.04, 0.1, 0.02, 0.08, 0.06]" in out


@pytest.mark.process
def test_queue_pipeline_memory_is_bounded() -> None:
    out = _run("examples/queue_pipeline.py", "--records", "3000", "--workers", "2", "--chunksize", "50")
    assert "consumed 3000 records" in out
    ahead = int(out.split("the producer was at most ")[1].split()[0])
    assert ahead <= 2 * 2 * 50  # the window: 2 x workers chunks of 50 items


def test_resume_md5_finishes_only_the_rest_after_a_kill(tmp_path: Path) -> None:
    journal = str(tmp_path / "run.sqlite")
    root = str(ROOT / "parmap")
    killed = subprocess.run(
        [sys.executable, "examples/resume_md5.py", journal, root, "--kill-after", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert "killed after 5 of" in killed.stdout
    out = _run("examples/resume_md5.py", journal, root)
    files = int(out.split(" files:")[0])
    hashed = int(out.split("files: ")[1].split()[0])
    taken = int(out.split(", ")[1].split()[0])
    assert hashed + taken == files  # (what was recorded before the kill: see test_journal.py)
    summary = _run("-m", "parmap", journal)
    assert f"done: {files}; failed: 0" in summary


def test_flaky_crawler_gets_every_page_with_retries() -> None:
    out = _run("examples/flaky_crawler.py", "--pages", "12", "--flaky", "2", "--retries", "3")
    assert "without retries: HTTPError 503 on" in out
    assert "with retries=3: 12 pages," in out
