"""lock=: one lock shared by every worker, reached in fn as parmap.lock()."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import helpers
import pytest

import parmap
from parmap import LockUnavailableError, ProcessAdapter, pmap
from parmap._launch import default_start_method

MODES = ["serial", "thread", pytest.param("process", marks=pytest.mark.process)]


def counter(tmp_path: Path) -> Path:
    path = tmp_path / "counter.txt"
    path.write_text("0")
    return path


@pytest.mark.parametrize("mode", MODES)
def test_sixty_increments_under_the_lock_count_sixty(mode: str, tmp_path: Path) -> None:
    path = counter(tmp_path)
    fn = functools.partial(helpers.increment_file, str(path))
    results = pmap(fn, [0.002] * 60, mode=mode, workers=2, chunksize=1, lock=True)
    assert path.read_text() == "60"
    assert sorted(results) == list(range(1, 61))


@contextlib.contextmanager
def two_party_barrier(mode: str) -> Iterator[Any]:
    """A barrier of two parties that the workers of ``mode`` share, whatever the start method."""
    if mode == "thread":
        yield threading.Barrier(2)
        return
    with multiprocessing.get_context(default_start_method()).Manager() as manager:
        yield manager.Barrier(2)


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.process)])
def test_without_the_lock_increments_are_lost(mode: str, tmp_path: Path) -> None:
    # The control experiment (what docs/locks.md shows): the same workload without the lock loses
    # increments. Left to chance, the two workers once happened not to race ("assert 60 != 60"):
    # here they run each pair of items in step, both reading the counter before either writes,
    # so each pair loses exactly one increment.
    path = counter(tmp_path)
    with two_party_barrier(mode) as in_step:
        fn = functools.partial(helpers.increment_file, str(path), use_lock=False, in_step=in_step)
        results = pmap(fn, [0.0] * 20, mode=mode, workers=2, chunksize=1)
    assert path.read_text() == "10"
    assert sorted(results) == sorted([*range(1, 11)] * 2)  # each pair of writers wrote the same count


def test_lock_outside_a_locked_map_is_a_clear_error() -> None:
    with pytest.raises(LockUnavailableError, match=r"only available inside fn .* lock=True"):
        parmap.lock()
    with pytest.raises(LockUnavailableError):
        pmap(helpers.increment_file, ["unused"], mode="thread")  # no lock= given


@pytest.mark.parametrize("mode", MODES)
def test_initializer_can_use_the_lock(mode: str) -> None:
    helpers.INIT_STATE.pop("locked-init", None)  # serial and thread modes share this process's state
    got = pmap(
        helpers.read_locked_init, range(4), mode=mode, lock=True, initializer=helpers.lock_in_initializer
    )
    assert got == [(i, True) for i in range(4)]


def test_serial_lock_is_reentrant() -> None:
    assert pmap(helpers.nested_lock_use, range(3), mode="serial", lock=True) == [0, 1, 2]


def test_callers_own_thread_lock(tmp_path: Path) -> None:
    mine = threading.Lock()
    path = counter(tmp_path)
    pmap(
        functools.partial(helpers.increment_file, str(path)),
        [0.001] * 20,
        mode="thread",
        workers=4,
        lock=mine,
    )
    assert path.read_text() == "20"
    assert not mine.locked()


@pytest.mark.process
def test_callers_own_process_lock(tmp_path: Path) -> None:
    mine = multiprocessing.get_context(default_start_method()).Lock()
    path = counter(tmp_path)
    fn = functools.partial(helpers.increment_file, str(path))
    pmap(fn, [0.002] * 30, mode="process", workers=2, chunksize=1, lock=mine)
    assert path.read_text() == "30"


@pytest.mark.process
def test_manager_lock_reaches_a_running_pool(tmp_path: Path) -> None:
    path = counter(tmp_path)
    fn = functools.partial(helpers.increment_file, str(path))
    with multiprocessing.get_context(default_start_method()).Manager() as manager, ProcessAdapter(2) as pool:
        pmap(fn, [0.002] * 20, mode=pool, chunksize=1, lock=manager.Lock())
        assert path.read_text() == "20"
        pmap(fn, [0.002] * 20, mode=pool, chunksize=1, lock=True)  # and the pool's own lock
    assert path.read_text() == "40"


@pytest.mark.process
def test_a_process_lock_cannot_be_handed_to_running_workers() -> None:
    with ProcessAdapter(2) as pool:
        pmap(helpers.square, range(4), mode=pool)
        late = multiprocessing.get_context(default_start_method()).Lock()
        with pytest.raises(ValueError, match=r"ProcessAdapter\(lock=\.\.\.\)"):
            pmap(helpers.square, range(4), mode=pool, lock=late)


def test_borrowed_thread_executor_gets_a_thread_lock(tmp_path: Path) -> None:
    path = counter(tmp_path)
    with ThreadPoolExecutor(4) as ex:
        pmap(functools.partial(helpers.increment_file, str(path)), [0.001] * 20, mode=ex, lock=True)
    assert path.read_text() == "20"


@pytest.mark.process
def test_borrowed_process_executor_needs_a_picklable_lock() -> None:
    context = multiprocessing.get_context(default_start_method())
    with ProcessPoolExecutor(2, mp_context=context) as ex, pytest.raises(ValueError, match="Manager"):
        pmap(helpers.square, range(3), mode=ex, lock=True)
