"""Functions for the retry tests: importable, so that worker processes find them by name."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import parmap


def fails_before_try(item: tuple[int, int]) -> tuple[int, int]:
    """``(x, k)``: raise ConnectionError on tries 1 .. k-1 of item x, then return ``(x, try)``."""
    x, k = item
    attempt = parmap.attempt()
    if attempt < k:
        msg = f"item {x}: try {attempt} failed"
        raise ConnectionError(msg)
    return x, attempt


def dies_on_first_try(item: tuple[int, str]) -> tuple[int, int]:
    """``(x, folder)``: the worker process exits on the first try (its pid left in folder)."""
    x, folder = item
    if parmap.attempt() == 1:
        Path(folder, f"died-{x}").write_text(str(os.getpid()))
        os._exit(3)
    return x, os.getpid()


def stuck_on_first_try(x: int) -> int:
    """Never returns on the first try (killed past its timeout); returns x on the second."""
    if parmap.attempt() == 1:
        time.sleep(600)
    return x


def unpicklable_result(_: int) -> object:
    return threading.Lock()  # no pickler can send it back to the caller


def counted(item: tuple[int, str]) -> int:
    """``(x, folder)``: leave one new file per call in folder (the calls are counted), return x*x."""
    x, folder = item
    Path(folder, f"call-{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
    if x % 10 == 7:
        msg = f"item {x} fails"
        raise ValueError(msg)
    return x * x


def calls_of(folder: str) -> list[int]:
    """The items ``counted`` was called with, one entry per call."""
    return sorted(int(path.name.split("-")[1]) for path in Path(folder).glob("call-*"))


def a_lock(_: int) -> object:
    return threading.Lock()
