"""Numerical libraries' thread pools are capped in worker processes (no oversubscription)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import helpers
import pytest

from parmap import ProcessAdapter, pmap
from parmap._cpus import available_cpus

pytestmark = pytest.mark.process


def _cap(workers: int) -> str:
    return str(max(1, available_cpus() // workers))


@pytest.fixture(autouse=True)
def _no_thread_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*helpers.THREAD_VARS, "PARMAP_LIMIT_THREADS"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_get_cpus_over_workers_threads(workers: int) -> None:
    seen = pmap(helpers.thread_env, range(4), mode="process", workers=workers, chunksize=1)
    assert seen == [dict.fromkeys(helpers.THREAD_VARS, _cap(workers))] * 4
    assert not any(var in os.environ for var in helpers.THREAD_VARS)  # the caller's is untouched


def test_the_callers_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    seen = pmap(helpers.thread_env, range(2), mode="process", workers=2)
    assert {env["OMP_NUM_THREADS"] for env in seen} == {"3"}
    assert {env["MKL_NUM_THREADS"] for env in seen} == {_cap(2)}


def test_caps_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARMAP_LIMIT_THREADS", "0")
    with ProcessAdapter(workers=2) as pool:
        seen = pmap(helpers.thread_env, range(2), mode=pool)
    assert seen == [dict.fromkeys(helpers.THREAD_VARS)] * 2


MAIN_IMPORT = """
import os
from parmap import pmap

AT_IMPORT = os.environ.get("OMP_NUM_THREADS")  # what numpy would see, imported here


def at_import(_):
    # fn travels by value from the caller: read the worker's own copy of the main module.
    import sys
    return sys.modules["__mp_main__"].AT_IMPORT


if __name__ == "__main__":
    print(sorted(set(pmap(at_import, range(4), workers=2, chunksize=1))), os.environ.get("OMP_NUM_THREADS"))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_the_cap_is_in_place_when_a_worker_imports_the_main_module(tmp_path: Path, method: str) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} on this platform")
    script = tmp_path / "main_import.py"
    script.write_text(MAIN_IMPORT)
    env = {k: v for k, v in os.environ.items() if k not in helpers.THREAD_VARS}
    env["PARMAP_START_METHOD"] = method
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"['{_cap(2)}']", "None"]


class _Limits:
    """What threadpoolctl.threadpool_limits returns: the limit set, and a way back."""

    applied: ClassVar[list[int | None]] = []

    def __init__(self, limits: int | None = None) -> None:
        _Limits.applied.append(limits)

    def restore_original_limits(self) -> None:
        _Limits.applied.append(None)


@pytest.mark.parametrize("gil", [True, False])
def test_thread_mode_caps_native_pools_only_without_the_gil(
    monkeypatch: pytest.MonkeyPatch, gil: bool
) -> None:
    # threadpoolctl and a native pool stand in for numpy's (neither is a dependency): without the
    # GIL, two threads computing at once each get cpus // 2 BLAS threads, restored at the end.
    fake = type(sys)("threadpoolctl")
    fake.threadpool_limits = _Limits  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    monkeypatch.setitem(sys.modules, "numexpr", type(sys)("numexpr"))
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: gil, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PARMAP_LIMIT_THREADS", raising=False)
    _Limits.applied = []
    assert pmap(abs, [-1, -2, -3], mode="thread", workers=2) == [1, 2, 3]
    assert _Limits.applied == ([] if gil else [max(1, available_cpus() // 2), None])
