"""How many workers to start by default: the CPUs this process may really use."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

__all__ = ["available_cpus", "default_workers"]

ENV_WORKERS = "PARMAP_WORKERS"


@functools.cache  # read once per process: five file reads cost ~50 us, every pmap call asks
def _cgroup_limit() -> int | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), if any."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        pass
    else:
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    try:
        base = Path("/sys/fs/cgroup/cpu")
        q = int((base / "cpu.cfs_quota_us").read_text())
        p = int((base / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may run on: affinity mask and cgroup quota, not ``os.cpu_count()``.

    Returns:
        At least 1: the CPUs of this process's affinity mask (``os.cpu_count()`` where there
        is none), capped by a cgroup CPU quota (read once per process) when there is one.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    limit = _cgroup_limit()
    return max(1, min(cpus, limit) if limit else cpus)


def default_workers(kind: str) -> int:
    """Default worker count for ``kind`` ("process" or "thread"); ``PARMAP_WORKERS`` wins.

    Threads mostly wait on I/O, so they get more than the CPU count (the same rule as
    ``ThreadPoolExecutor``: CPUs + 4, at most 32).
    """
    env = os.environ.get(ENV_WORKERS, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            msg = f"{ENV_WORKERS} must be a positive integer, got {env!r}"
            raise ValueError(msg)
        return value
    cpus = available_cpus()
    return min(32, cpus + 4) if kind == "thread" else cpus
