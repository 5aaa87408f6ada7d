"""The behaviour suite: every mode must act like builtin ``map`` (``mode`` runs it per mode)."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor

import helpers
import pytest

from parmap import RemoteTraceback, pmap

Mode = str | Executor
DASK_PLACEMENT = (
    "Dask places each task on a worker when it is submitted, before it knows how long tasks take, "
    "so a fast item may wait behind the slow one: results still come in completion order, but "
    "which one is last is the scheduler's choice"
)


def test_same_as_map(mode: Mode) -> None:
    items = list(range(-50, 250))
    assert pmap(helpers.square, items, mode=mode) == list(map(helpers.square, items))


def test_empty_input(mode: Mode) -> None:
    assert pmap(helpers.square, [], mode=mode) == []
    assert list(pmap(helpers.square, iter(()), mode=mode, lazy=True)) == []


def test_generator_input(mode: Mode) -> None:
    gen = (x for x in range(100))
    assert pmap(helpers.square, gen, mode=mode) == [x * x for x in range(100)]


@pytest.mark.parametrize(
    "fn",
    [
        pytest.param(lambda x: x * 3, id="lambda"),
        pytest.param(functools.partial(helpers.add, 10), id="partial"),
        pytest.param(helpers.Scaler(4).scale, id="bound-method"),
        pytest.param(helpers.fail_on(10**9), id="closure"),
        pytest.param(abs, id="builtin"),
    ],
)
def test_any_callable(mode: Mode, fn: object) -> None:
    items = list(range(-20, 20))
    assert pmap(fn, items, mode=mode) == list(map(fn, items))  # type: ignore[call-overload]


def test_closure_over_local_state(mode: Mode) -> None:
    offset = 1000

    def shift(x: int) -> int:
        return x + offset

    assert pmap(shift, range(10), mode=mode) == list(range(1000, 1010))


def test_odd_items_and_results(mode: Mode) -> None:
    items = [None, "s", b"b", (1, 2), {"k": [1, 2]}, 3.5, frozenset({1}), lambda: 1]
    results = pmap(helpers.identity, items, mode=mode)
    assert results[:-1] == items[:-1]
    assert results[-1]() == 1


def test_star(mode: Mode) -> None:
    pairs = [(i, 2 * i) for i in range(50)]
    assert pmap(helpers.add, pairs, mode=mode, star=True) == list(itertools.starmap(helpers.add, pairs))


def test_indexed(mode: Mode) -> None:
    items = list(range(40))
    got = pmap(helpers.square, items, mode=mode, ordered=False, indexed=True)
    assert sorted(got) == [(i, i * i) for i in items]


def test_unordered_gives_the_same_results(mode: Mode) -> None:
    items = list(range(300))
    got = pmap(helpers.square, items, mode=mode, ordered=False)
    assert sorted(got) == sorted(map(helpers.square, items))


def test_completion_order(parallel_mode: Mode) -> None:
    if parallel_mode == "dask":
        pytest.skip(DASK_PLACEMENT)
    # The first item is slow: in completion order it comes last, in input order first.
    items = [(0.6, "slow"), *((0.0, f"fast{i}") for i in range(5))]
    unordered = pmap(helpers.sleep_then, items, mode=parallel_mode, ordered=False, chunksize=1)
    assert unordered[-1] == "slow"
    assert sorted(unordered) == sorted(v for _, v in items)
    ordered = pmap(helpers.sleep_then, items, mode=parallel_mode, chunksize=1)
    assert ordered == [v for _, v in items]


def test_lazy_completion_order_with_index(parallel_mode: Mode) -> None:
    if parallel_mode == "dask":
        pytest.skip(DASK_PLACEMENT)
    items = [(0.6, "slow"), (0.0, "a"), (0.0, "b")]
    got = list(pmap(helpers.sleep_then, items, mode=parallel_mode, ordered=False, indexed=True, lazy=True))
    assert got[-1] == (0, "slow")
    assert sorted(got) == [(0, "slow"), (1, "a"), (2, "b")]


def test_callback_runs_in_callers_thread_in_delivery_order(mode: Mode) -> None:
    seen: list[tuple[int, int]] = []
    inside = threading.Lock()

    def callback(value: int) -> None:
        assert inside.acquire(blocking=False), "callback ran concurrently with itself"
        try:
            seen.append((threading.get_ident(), value))
        finally:
            inside.release()

    results = pmap(helpers.square, range(100), mode=mode, callback=callback)
    assert [v for _, v in seen] == results
    assert {t for t, _ in seen} == {threading.get_ident()}


def test_callback_unordered_lazy(mode: Mode) -> None:
    seen: list[tuple[int, int]] = []
    got = list(
        pmap(
            helpers.square, range(60), mode=mode, ordered=False, indexed=True, lazy=True, callback=seen.append
        )
    )
    assert seen == got


def test_callback_exception_propagates(mode: Mode) -> None:
    class StopError(Exception):
        pass

    def callback(value: int) -> None:
        if value == 25:
            raise StopError

    with pytest.raises(StopError):
        pmap(helpers.square, range(1000), mode=mode, callback=callback, chunksize=1)


def test_initializer_runs_before_items(mode: Mode) -> None:
    results = pmap(
        helpers.read_state, range(20), mode=mode, initializer=helpers.init_state, initargs=("ready",)
    )
    assert results == [(i, "ready") for i in range(20)]


def test_exception_keeps_type_and_message(mode: Mode) -> None:
    with pytest.raises(KeyError, match="bad item 7") as info:
        pmap(helpers.fail_on(7), range(20), mode=mode)
    notes = getattr(info.value, "__notes__", [])
    assert any("item 7" in note for note in notes), notes


def test_results_before_a_failure_are_delivered(mode: Mode) -> None:
    got: list[int] = []
    results = pmap(helpers.fail_on(30), range(100), mode=mode, lazy=True, chunksize=4)
    with pytest.raises(KeyError):
        got.extend(results)
    assert got == list(range(30))


@pytest.mark.process
def test_process_exception_carries_worker_traceback() -> None:
    with pytest.raises(KeyError) as info:
        pmap(helpers.fail_on(3), range(10), mode="process")
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on" in cause.tb or "in fn" in cause.tb


def test_lazy_over_unbounded_input(mode: Mode) -> None:
    it = pmap(helpers.square, itertools.count(), mode=mode, lazy=True)
    assert list(itertools.islice(it, 500)) == [x * x for x in range(500)]
    it.close()


def test_input_is_read_incrementally(mode: Mode) -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for x in itertools.count():
            pulled += 1
            yield x

    it = pmap(helpers.square, source(), mode=mode, lazy=True, chunksize=5)
    assert [next(it) for _ in range(10)] == [x * x for x in range(10)]
    # At most the window of chunks in flight was read: 2 chunks per worker of 5 items each.
    assert pulled <= 10 + 2 * 32 * 5
    it.close()
    before = pulled
    time.sleep(0.05)  # (a pool that still read the input would have read more by now)
    assert pulled == before  # closed: nothing more is read


def test_lazy_starts_nothing_until_iterated(mode: Mode, no_leaks: object) -> None:
    from conftest import Snapshot  # noqa: PLC0415

    before = Snapshot.take()
    it = pmap(helpers.square, range(10), mode=mode, lazy=True)
    now = Snapshot.take()  # no process, no thread: thread, process and auto modes start both
    assert now.children <= before.children
    assert now.threads <= before.threads
    assert list(it) == [x * x for x in range(10)]


def test_lazy_abandoned_midway_releases_workers(mode: Mode) -> None:
    it = pmap(helpers.square, range(100_000), mode=mode, lazy=True, chunksize=10)
    assert next(it) == 0
    del it  # garbage collection closes the generator: the leak check proves the rest


def test_borrowed_executor_is_not_shut_down() -> None:
    with ThreadPoolExecutor(2) as ex:
        assert pmap(helpers.square, range(10), mode=ex) == [x * x for x in range(10)]
        assert ex.submit(helpers.square, 3).result() == 9  # still usable


def test_explicit_workers_and_chunksize(mode: Mode) -> None:
    if isinstance(mode, Executor) or mode == "dask":
        pytest.skip("workers= sizes pmap's own pools, not a borrowed executor or a cluster")
    for workers, chunksize in [(1, 1), (2, 3), (3, 1000)]:
        got = pmap(helpers.square, range(97), mode=mode, workers=workers, chunksize=chunksize)
        assert got == [x * x for x in range(97)]
