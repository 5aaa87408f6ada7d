"""Each private name of CPython that parmap reads (parmap/_cpython.py) removed: maps still work."""

from __future__ import annotations

import multiprocessing
import sys
import sysconfig
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import helpers
import pytest

from parmap import ProcessAdapter, pmap
from parmap._adapters import ExecutorAdapter
from parmap._auto import fresh_workers
from parmap._cpus import available_cpus
from parmap._cpython import exit_hooks, fork_server_pid, fork_server_preload, gil_enabled, made_for_fork
from parmap._launch import ENV_START_METHOD


@pytest.fixture(scope="module", autouse=True)
def _warm_the_fork_server() -> None:
    """Start the fork server (a per-interpreter service) before any test's leak baseline."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        with ProcessAdapter(1, start_method="forkserver") as pool:
            pmap(abs, [1], mode=pool)


class _Quiet(Executor):
    """An executor that does not say how many workers it has (no ``_max_workers``)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.inner.submit(fn, *args, **kwargs)


def test_an_executor_that_does_not_say_its_workers_gets_the_cpus() -> None:
    with ThreadPoolExecutor(3) as ex:
        assert ExecutorAdapter(ex).workers == 3
        quiet = _Quiet(ex)
        assert ExecutorAdapter(quiet).workers == available_cpus()
        assert pmap(helpers.square, range(20), mode=quiet) == [x * x for x in range(20)]


@pytest.mark.process
@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server")
def test_the_fork_server_preload_without_its_private_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from multiprocessing import forkserver  # noqa: PLC0415

    # The module's server object as parmap reads it, without the list (CPython's own code keeps
    # the real one: the module's functions are bound to it).
    monkeypatch.setattr(forkserver, "_forkserver", object())
    assert fork_server_preload() == ["__main__"]
    assert fork_server_pid() is None  # (a worker that cannot start then reports its own error)
    with ProcessAdapter(2, start_method="forkserver") as pool:
        assert pmap(helpers.square, range(10), mode=pool) == [x * x for x in range(10)]


@pytest.mark.process
def test_whether_the_fork_server_runs_is_what_parmap_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    # No private name is read: parmap notes that it used the fork server (the session did).
    monkeypatch.setenv(ENV_START_METHOD, "forkserver")
    with ProcessAdapter(1, start_method="forkserver") as pool:
        assert pmap(helpers.square, [3], mode=pool) == [9]
    assert not fresh_workers()


@pytest.mark.process
def test_a_lock_without_its_fork_mark_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = multiprocessing.get_context("spawn").Lock()
    assert not made_for_fork(lock)
    if sys.version_info >= (3, 12):
        assert made_for_fork(multiprocessing.get_context("fork").Lock())
    assert not made_for_fork(object())  # as on 3.10 and 3.11, which have no such mark
    pool = ProcessAdapter(1, start_method="spawn", lock=lock)
    assert pmap(helpers.locked_square, range(3), mode=pool, lock=lock) == [0, 1, 4]


@pytest.mark.process
def test_a_spawned_worker_without_the_private_exit_hooks_exits_the_normal_way() -> None:
    assert exit_hooks() is not None  # (this Python has them: the fast exit is what runs)
    pool = ProcessAdapter(2, start_method="spawn")
    got = pmap(helpers.square, range(6), mode=pool, chunksize=1, initializer=helpers.drop_private_exit_hooks)
    assert got == [x * x for x in range(6)]
    assert not pool.running


def test_whether_the_gil_is_on_without_sys_is_gil_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    free_threaded_build = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
    assert gil_enabled() is not free_threaded_build  # the build's flag decides
    assert pmap(helpers.square, range(10), mode="auto") == [x * x for x in range(10)]
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert gil_enabled() is False  # where it exists, the interpreter's own answer wins
