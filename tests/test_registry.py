"""Modes by name: adapters registered at run time, and a third-party package's entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest

from parmap import ProcessAdapter, SerialAdapter, ThreadAdapter, pmap, register_adapter
from parmap._auto import AutoAdapter
from parmap._dask import DaskAdapter
from parmap._registry import BUILTIN_MODES, find_mode, known_modes, recycling_modes

ROOT = Path(__file__).resolve().parents[1]


def test_register_adapter_by_name() -> None:
    seen: list[int] = []

    class Recording(SerialAdapter):
        def __init__(self, workers: int | None) -> None:
            super().__init__()
            seen.append(workers or 0)

    register_adapter("recording", Recording)
    assert pmap(helpers.square, range(5), mode="recording") == [0, 1, 4, 9, 16]
    assert seen == [0]
    with pytest.raises(ValueError, match="built-in"):
        register_adapter("process", Recording)
    with pytest.raises(ValueError, match="'recording'"):
        pmap(helpers.square, range(5), mode="no-such-mode")


def test_third_party_adapter_package_by_entry_point(tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT / "tests" / "data" / "parmap_hello"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    code = (
        "import parmap, parmap_hello\n"
        "print(parmap.pmap(abs, [-1, -2, -3], mode='hello', chunksize=1), parmap_hello.CHUNKS)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 2, 3] [0, 1, 2]"


def test_every_mode_resolves_through_one_table() -> None:
    assert known_modes()[:4] == ["serial", "thread", "process", "auto"]
    assert "dask" in known_modes()
    expected = {
        "serial": SerialAdapter,
        "thread": ThreadAdapter,
        "process": ProcessAdapter,
        "auto": AutoAdapter,
        "dask": DaskAdapter,
    }
    for name, kind in expected.items():
        entry = find_mode(name)
        assert entry is not None
        assert entry.adapter_class is kind, name
    assert find_mode("no-such-mode") is None


def test_what_a_mode_supports_is_what_its_adapter_class_says() -> None:
    assert [name for name in BUILTIN_MODES if find_mode(name).recycles_workers] == ["thread", "process"]  # type: ignore[union-attr]
    assert [name for name in BUILTIN_MODES if find_mode(name).starts_processes] == ["process", "auto"]  # type: ignore[union-attr]
    assert find_mode("auto").pool_mode == "process"  # type: ignore[union-attr]
    assert recycling_modes() == ["thread", "process"]


@pytest.mark.parametrize("mode", ["serial", "dask", "recording-2"])
def test_max_tasks_per_worker_is_refused_by_modes_that_do_not_recycle(mode: str) -> None:
    register_adapter("recording-2", lambda _workers: SerialAdapter())
    with pytest.raises(ValueError, match=r"needs mode='thread' or mode='process'.*got mode=") as info:
        pmap(helpers.square, range(3), mode=mode, max_tasks_per_worker=2)
    assert repr(mode) in str(info.value)


def test_auto_with_options_only_a_pool_honours_runs_as_its_pool_mode() -> None:
    # max_tasks_per_worker is honoured by auto's pool_mode ("process"): accepted, and it runs.
    assert pmap(helpers.square, range(6), mode="auto", max_tasks_per_worker=2) == [x * x for x in range(6)]


def test_a_dask_mode_refuses_workers_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="workers=2 cannot be used with mode='dask'"):
        pmap(helpers.square, range(3), mode="dask", workers=2)
