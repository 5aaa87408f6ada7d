"""Modes by name: adapters registered at run time, and a third-party package's entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest

from parmap import SerialAdapter, pmap, register_adapter

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
