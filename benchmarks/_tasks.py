"""The functions the benchmark maps, in a module of their own so that workers import them by name.

Every tool pickles these by reference (``_tasks.inc``), whatever its start method: ``run.py``
puts ``benchmarks/`` and ``examples/`` on ``PYTHONPATH`` for each measurement.
"""

from __future__ import annotations

import operator
import time
from functools import reduce

from workloads import gcd, md5_file  # type: ignore[import-not-found]

__all__ = ["factorial", "gcd", "inc", "md5_file", "nap"]

NAP_SECONDS = 0.02


def inc(x: int) -> int:
    """The tiny task: nothing but the cost of moving an item there and back."""
    return x + 1


def factorial(k: int) -> int:
    """The cpu task: ``reduce(mul, range(1, k))``, a few tens of microseconds for k near 300."""
    return reduce(operator.mul, range(1, k))


def nap(x: int) -> int:
    """The io task: wait 20 ms (the GIL is released), then give the item back."""
    time.sleep(NAP_SECONDS)
    return x
