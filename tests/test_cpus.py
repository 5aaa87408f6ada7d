"""Default worker counts: usable CPUs, PARMAP_WORKERS, a larger default for threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parmap import available_cpus
from parmap._cpus import default_workers


def test_available_cpus_is_at_least_one() -> None:
    assert available_cpus() >= 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity mask on this OS")
def test_available_cpus_respects_affinity() -> None:
    # In a child, pinned to one CPU: this process's own mask stays as it is.
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from parmap import available_cpus; print(available_cpus())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "1"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARMAP_WORKERS", raising=False)
    assert default_workers("process") == available_cpus()
    assert default_workers("thread") == min(32, available_cpus() + 4)


def test_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARMAP_WORKERS", "3")
    assert default_workers("process") == 3
    assert default_workers("thread") == 3


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_env_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PARMAP_WORKERS", value)
    with pytest.raises(ValueError, match="PARMAP_WORKERS"):
        default_workers("process")
