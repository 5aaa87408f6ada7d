"""Bad options fail fast with a ValueError (or TypeError) naming the option, before any worker."""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.process import BaseProcess
from unittest import mock

import helpers
import pytest
from conftest import Snapshot

from parmap import ProcessAdapter, pmap
from parmap._cpus import ENV_WORKERS
from parmap._launch import ENV_START_METHOD, default_start_method


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunksize": 0}, "chunksize"),
        ({"chunksize": -3}, "chunksize"),
        ({"chunksize": 2.5}, "chunksize"),
        ({"workers": -2}, "workers"),
        ({"workers": 0}, "workers"),
        ({"workers": True}, "workers"),
        ({"mode": "quantum"}, "mode"),
        ({"mode": 3}, "mode"),
    ],
)
def test_bad_option_is_a_value_error(kwargs: dict[str, object], match: str) -> None:
    before = Snapshot.take()
    with pytest.raises(ValueError, match=match):
        pmap(helpers.square, range(10), **kwargs)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=match):
        pmap(helpers.square, range(10), lazy=True, **kwargs)  # type: ignore[call-overload]
    assert Snapshot.take().children <= before.children


@pytest.mark.parametrize("kwargs", [{"callback": 3}, {"initializer": "x"}])
def test_non_callables_are_type_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        pmap(helpers.square, range(3), **kwargs)  # type: ignore[call-overload]


def test_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        pmap(42, range(3))  # type: ignore[call-overload]


def test_workers_with_an_adapter_instance_is_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        pmap(helpers.square, range(3), mode=ProcessAdapter(2), workers=4)


def refused(exc_type: type[Exception], shows: tuple[str, ...], *args: object, **kwargs: object) -> Exception:
    """Run ``pmap(*args, **kwargs)``: it must raise ``exc_type`` saying each of ``shows``.

    Before any item ran, in the caller or in a worker process: no process was started, none is
    left, and ``helpers.CALLS`` (filled by ``helpers.record_call`` in the caller) stays empty.
    """
    helpers.CALLS.clear()
    started: list[BaseProcess] = []
    real_start = BaseProcess.start

    def start(process: BaseProcess) -> None:
        started.append(process)
        real_start(process)

    before = Snapshot.take()
    with mock.patch.object(BaseProcess, "start", start), pytest.raises(exc_type) as info:
        pmap(*args, **kwargs)  # type: ignore[call-overload]
    for text in shows:
        assert text in str(info.value)
    assert helpers.CALLS == []
    assert started == []
    assert Snapshot.take().children <= before.children
    return info.value


@pytest.mark.parametrize("mode", ["serial", "thread", pytest.param("process", marks=pytest.mark.process)])
@pytest.mark.parametrize("initargs", [5, None, 2.5, "db", b"db"])
def test_initargs_that_are_no_sequence_of_arguments_are_type_errors(mode: str, initargs: object) -> None:
    # 5 once failed in the worker with a bare "'int' object is not iterable"; a string would call
    # initializer("d", "b").
    refused(
        TypeError,
        ("initargs", repr(initargs), "initargs=(value,)"),
        helpers.record_call,
        range(3),
        mode=mode,
        initializer=helpers.init_state,
        initargs=initargs,
    )


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.process)])
def test_initargs_may_be_any_iterable_of_arguments(mode: str) -> None:
    helpers.INIT_STATE.pop("value", None)  # thread mode shares this process's state
    for initargs in (["from a list"], (x for x in ["from a generator"])):
        expected = "from a list" if isinstance(initargs, list) else "from a generator"
        got = pmap(helpers.read_state, range(3), mode=mode, initializer=helpers.init_state, initargs=initargs)  # type: ignore[call-overload]
        assert got == [(x, expected) for x in range(3)]


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.process)])
@pytest.mark.parametrize("timeout", [10**400, float("inf")], ids=["int-beyond-float", "inf"])
def test_a_timeout_beyond_any_float_is_no_limit(
    monkeypatch: pytest.MonkeyPatch, mode: str, timeout: float
) -> None:
    # 10**400 once crashed the process collector (WorkerDiedError) and the thread watchdog
    # (OverflowError: integer division result too large for a float) as they timed a running item.
    crashed: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(repr(args.exc_value)))
    items = [(0.1, x) for x in range(4)]  # each runs across a few looks of the watchdog/collector
    assert pmap(helpers.sleep_then, items, mode=mode, chunksize=1, timeout=timeout) == [0, 1, 2, 3]
    assert crashed == []


@pytest.mark.parametrize("mode", ["thread", "auto", pytest.param("process", marks=pytest.mark.process)])
def test_workers_beyond_any_machine_run_as_many_as_the_input_needs(mode: str) -> None:
    # 10**400 once raised OverflowError in process mode: the pool reserved a slot per worker.
    assert pmap(abs, [1, -2, 3], mode=mode, workers=10**400, chunksize=1) == [1, 2, 3]
    assert ProcessAdapter(10**400).workers == 10**400


@pytest.mark.parametrize(
    ("timeout", "shows"),
    [
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (-(10**400), "-1000000"),  # (shortened: 401 digits)
        (0, "got 0"),
        ("10", "'10'"),
    ],
    ids=["nan", "-inf", "-10**400", "zero", "str"],
)
def test_bad_timeouts_name_the_value(timeout: object, shows: str) -> None:
    error = refused(
        ValueError, ("timeout", shows), helpers.record_call, range(3), mode="thread", timeout=timeout
    )
    assert len(str(error)) < 200


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.process)])
@pytest.mark.parametrize("lock", ["yes", 1, 0, object()], ids=["str", "one", "zero", "object"])
def test_a_lock_that_is_no_lock_is_a_type_error(mode: str, lock: object) -> None:
    refused(TypeError, ("lock", repr(lock)), helpers.record_call, range(3), mode=mode, lock=lock)


@pytest.mark.parametrize("mode", ["auto", pytest.param("process", marks=pytest.mark.process)])
@pytest.mark.parametrize("value", ["bogus", "Spawn", "fork-server"])
@pytest.mark.parametrize("n", [1, 5, 500])
def test_a_bad_start_method_variable_is_refused_before_any_item_runs(
    monkeypatch: pytest.MonkeyPatch, mode: str, value: str, n: int
) -> None:
    # It once failed only when a pool started (mode="auto": after items ran in the caller, if
    # ever: a short or fast input never noticed), in a message that named no variable.
    monkeypatch.setenv(ENV_START_METHOD, value)
    shows = (ENV_START_METHOD, repr(value), *multiprocessing.get_all_start_methods())
    refused(ValueError, shows, helpers.record_call, range(n), mode=mode)
    refused(ValueError, shows, helpers.record_call, range(n), mode=mode, lazy=True)


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_start_method_variable_is_the_default(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.delenv(ENV_START_METHOD, raising=False)
    default = default_start_method()
    monkeypatch.setenv(ENV_START_METHOD, value)
    assert default_start_method() == default
    assert pmap(helpers.square, range(5), mode="auto") == [0, 1, 4, 9, 16]


def test_a_bad_start_method_variable_names_itself_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_START_METHOD, "bogus")
    for make in (default_start_method, ProcessAdapter):
        with pytest.raises(ValueError, match=rf"{ENV_START_METHOD} must be one of .*got 'bogus'"):
            make()
    # The modes that start no process do not read it.
    assert pmap(helpers.square, range(3), mode="thread") == [0, 1, 4]
    assert pmap(helpers.square, range(3), mode="serial") == [0, 1, 4]


@pytest.mark.parametrize("mode", ["thread", "auto", pytest.param("process", marks=pytest.mark.process)])
@pytest.mark.parametrize("value", ["abc", "0", "-2", "2.5"])
def test_a_bad_workers_variable_is_refused_before_any_item_runs(
    monkeypatch: pytest.MonkeyPatch, mode: str, value: str
) -> None:
    monkeypatch.setenv(ENV_WORKERS, value)
    refused(ValueError, (ENV_WORKERS, repr(value)), helpers.record_call, range(50), mode=mode)
    if mode != "auto":  # (auto reads it as its count of CPUs even then)
        # workers= given: the variable (a default) is not read.
        assert pmap(helpers.square, range(3), mode=mode, workers=2) == [0, 1, 4]
