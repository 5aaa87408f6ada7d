"""pmap from asyncio: ``amap`` (await / async for) and ``mode="async"`` (coroutine functions)."""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Snapshot, assert_no_leaks
from helpers import square
from hypothesis import given, settings
from hypothesis import strategies as st

import parmap
from parmap import ItemTimeoutError, amap, pmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from workloads import afetch, fetch, start_server

if sys.version_info >= (3, 11):
    from asyncio import timeout as async_timeout
else:  # pragma: no cover - 3.10 has no asyncio.timeout

    def async_timeout(seconds: float) -> Any:
        pytest.skip("asyncio.timeout needs Python 3.11")


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def fail_on_3(x: int) -> int:
    await asyncio.sleep(0)
    if x == 3:
        msg = f"bad item {x}"
        raise ValueError(msg)
    return x


async def forever(x: int) -> int:
    await asyncio.sleep(3600)
    return x


def returns_a_coroutine(x: int) -> Any:
    return double(x)


def nap(x: int) -> int:
    time.sleep(0.02)
    return x


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settled(before: Snapshot) -> None:
    """assert_no_leaks, letting the loop run while what ends in the background ends."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = Snapshot.take()
        if now.children <= before.children and now.threads <= before.threads and now.fds <= before.fds:
            break
        await asyncio.sleep(0.02)
    assert_no_leaks(before)


# -- mode="async" from sync code --------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("chunksize", [None, 1, 7])
def test_async_mode_gives_builtin_maps_results(ordered: bool, chunksize: int | None) -> None:
    got = pmap(double, range(200), mode="async", ordered=ordered, chunksize=chunksize, workers=17)
    assert (got if ordered else sorted(got)) == [2 * x for x in range(200)]


def test_async_mode_star_indexed_callback_lazy() -> None:
    seen: list[tuple[int, int]] = []
    got = pmap(add, [(1, 2), (3, 4)], mode="async", star=True, indexed=True, callback=seen.append)
    assert got == [(0, 3), (1, 7)] == seen
    assert list(pmap(double, range(5), mode="async", lazy=True)) == [0, 2, 4, 6, 8]


def test_workers_is_the_number_of_items_in_flight_exactly() -> None:
    workers = 6
    state = {"now": 0, "most": 0}
    full = asyncio.Event()  # set when `workers` items run at once: none returns before

    async def item(x: int) -> int:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        if state["now"] == workers:
            full.set()
        await full.wait()
        state["now"] -= 1
        return x

    assert pmap(item, range(60), mode="async", workers=workers) == list(range(60))
    assert state["most"] == workers


def test_a_coroutine_fn_is_refused_by_modes_that_cannot_await_it() -> None:
    before = Snapshot.take()
    for mode in ("thread", "process", "serial"):
        with pytest.raises(TypeError, match=r"coroutine function .*mode='async'"):
            pmap(double, [1, 2], mode=mode)
    with pytest.raises(TypeError, match="coroutine function"):
        pmap(functools.partial(add, 1), [1, 2], mode="thread")  # a partial of one

    class Fetcher:
        async def __call__(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match="coroutine function"):
        pmap(Fetcher(), [1], mode="thread")
    assert pmap(Fetcher(), [1, 2], mode="async") == [1, 2]
    with pytest.raises(TypeError, match=r"mode='async' runs coroutine functions .* square is not one"):
        pmap(square, [1, 2], mode="async")
    assert Snapshot.take().children == before.children  # refused before any worker started


def test_auto_runs_a_coroutine_fn_in_async_mode() -> None:
    assert pmap(double, range(10), mode="auto") == [2 * x for x in range(10)]


def test_async_mode_on_error_and_the_failing_item_named() -> None:
    assert pmap(fail_on_3, range(5), mode="async", on_error="return")[:3] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad item 3") as info:
        pmap(fail_on_3, range(50), mode="async")
    assert any("item 3 of the input" in note for note in getattr(info.value, "__notes__", []))


def test_async_timeout_cancels_the_one_coroutine() -> None:
    cancelled: list[int] = []

    async def slow_on_even(x: int) -> int:
        try:
            await asyncio.sleep(3600 if x % 2 == 0 else 0)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    got = pmap(slow_on_even, range(6), mode="async", timeout=0.05, on_error="return")
    assert [x for x in got if isinstance(x, int)] == [1, 3, 5]
    errors = [x for x in got if isinstance(x, ItemTimeoutError)]
    assert len(errors) == 3
    assert "timeout=0.05" in str(errors[0])
    assert sorted(cancelled) == [0, 2, 4]


def test_async_retries_and_attempt() -> None:
    async def flaky(x: int) -> tuple[int, int]:
        await asyncio.sleep(0)
        if parmap.attempt() < 3 and x % 2:
            msg = "not yet"
            raise ConnectionError(msg)
        return x, parmap.attempt()

    got = pmap(flaky, range(6), mode="async", retries=2, retry_delay=0.001)
    assert got == [(0, 1), (1, 3), (2, 1), (3, 3), (4, 1), (5, 3)]


def test_async_lock_is_an_asyncio_lock_shared_by_every_item() -> None:
    inside = {"now": 0, "most": 0}

    async def locked(x: int) -> int:
        lock = parmap.lock()
        assert isinstance(lock, asyncio.Lock)
        async with lock:
            inside["now"] += 1
            inside["most"] = max(inside["most"], inside["now"])
            await asyncio.sleep(0.001)
            inside["now"] -= 1
        return x

    assert pmap(locked, range(20), mode="async", lock=True, workers=10) == list(range(20))
    assert inside["most"] == 1


def test_async_initializer_runs_once_and_may_be_a_coroutine() -> None:
    calls: list[str] = []

    async def init(tag: str) -> None:
        await asyncio.sleep(0)
        calls.append(tag)

    assert pmap(double, range(30), mode="async", initializer=init, initargs=("a",), workers=8) == [
        2 * x for x in range(30)
    ]
    assert calls == ["a"]

    def broken() -> None:
        msg = "no database"
        raise OSError(msg)

    with pytest.raises(parmap.InitializerError, match="no database"):
        pmap(double, range(5), mode="async", initializer=broken)


JOURNALED: dict[str, Any] = {"fail": True, "ran": []}


async def journaled(x: int) -> int:
    await asyncio.sleep(0)
    JOURNALED["ran"].append(x)
    if x == 3 and JOURNALED["fail"]:
        msg = "bad item 3"
        raise ValueError(msg)
    return x


def test_async_mode_journal_resumes(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    first = pmap(journaled, range(6), mode="async", journal=journal, on_error="return")
    assert isinstance(first[3], ValueError)
    JOURNALED.update(fail=False, ran=[])
    assert pmap(journaled, range(6), mode="async", journal=journal) == list(range(6))
    assert JOURNALED["ran"] == [3]  # the others came from the journal


@pytest.mark.parametrize("way", ["return", "raise", "break", "close", "gc"])
def test_every_way_out_of_an_async_mode_map_leaves_nothing(way: str) -> None:
    before = Snapshot.take()
    if way == "return":
        pmap(double, range(100), mode="async")
    elif way == "raise":
        with pytest.raises(ValueError, match="bad item"):
            pmap(fail_on_3, range(100), mode="async")
    else:
        results = pmap(forever if way != "break" else double, itertools.count(), mode="async", lazy=True)
        if way == "break":
            for r in results:
                if r > 10:
                    break
        elif way == "close":
            results = pmap(double, itertools.count(), mode="async", lazy=True)
            next(results)
            results.close()
        else:
            results = pmap(double, itertools.count(), mode="async", lazy=True)
            next(results)
        del results
        gc.collect()
    assert_no_leaks(before)


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.integers(-1000, 1000), max_size=60),
    ordered=st.booleans(),
    chunksize=st.none() | st.integers(1, 9),
    workers=st.integers(1, 40),
    indexed=st.booleans(),
)
def test_async_mode_and_amap_give_what_builtin_map_gives(
    items: list[int], ordered: bool, chunksize: int | None, workers: int, indexed: bool
) -> None:
    doubled = [2 * x for x in items]
    expected: list[Any] = list(enumerate(doubled)) if indexed else doubled
    options: dict[str, Any] = {"ordered": ordered, "chunksize": chunksize, "workers": workers}
    options["indexed"] = indexed
    got = pmap(double, items, mode="async", **options)

    async def both() -> tuple[list[Any], list[Any]]:
        return await amap(double, items, **options), [r async for r in amap(double, items, **options)]

    awaited, iterated = run(both())
    for result in (got, awaited, iterated):
        assert (result if ordered else sorted(result)) == (expected if ordered else sorted(expected))


# -- amap ---------------------------------------------------------------------------------------


@pytest.mark.process
def test_amap_awaited_gives_the_list_and_iterated_each_result() -> None:
    async def main() -> tuple[list[int], list[int], list[int]]:
        awaited = await amap(double, range(100))
        iterated = [r async for r in amap(double, range(100), workers=7)]
        in_process = await amap(square, range(1000), mode="process", workers=2)
        return awaited, iterated, in_process

    awaited, iterated, in_process = run(main())
    assert awaited == iterated == [2 * x for x in range(100)]
    assert in_process == [x * x for x in range(1000)]


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.process), "serial"])
def test_amap_runs_plain_functions_in_every_mode(mode: str) -> None:
    async def main() -> list[Any]:
        return await amap(square, range(50), mode=mode, indexed=True)

    assert run(main()) == [(x, x * x) for x in range(50)]


def test_amap_callback_runs_on_the_loop_thread_and_errors_keep_their_type() -> None:
    threads: set[str] = set()

    async def main() -> None:
        got = await amap(double, range(10), callback=lambda _: threads.add(threading.current_thread().name))
        assert got == [2 * x for x in range(10)]
        with pytest.raises(ValueError, match="bad item 3") as info:
            await amap(fail_on_3, range(10))
        assert any("item 3 of the input" in n for n in getattr(info.value, "__notes__", []))
        with pytest.raises(ValueError, match="bad item 3"):
            async for _ in amap(fail_on_3, range(10)):
                pass

    run(main())
    assert threads == {threading.current_thread().name}


def test_amap_refuses_bad_input_at_once_and_outside_a_loop() -> None:
    with pytest.raises(RuntimeError, match="call it in a coroutine"):
        amap(double, [1])

    async def main() -> None:
        before = Snapshot.take()
        with pytest.raises(TypeError, match="coroutine function"):
            amap(double, [1], mode="process")
        with pytest.raises(TypeError, match="square is not one"):
            amap(square, [1], mode="async")
        with pytest.raises(ValueError, match="workers"):
            amap(square, [1], workers=0)
        results = amap(double, [1, 2])
        assert await results == [2, 4]
        with pytest.raises(RuntimeError, match="used once"):
            await results
        assert Snapshot.take().children == before.children

    run(main())


def test_a_slow_async_consumer_holds_the_map_back() -> None:
    read = {"n": 0}

    def endless() -> Iterator[int]:
        for i in itertools.count():
            read["n"] = i + 1
            yield i

    async def main() -> None:
        async with amap(square, endless(), mode="thread", workers=2) as results:
            async for r in results:
                if r >= 100:
                    break
            await asyncio.sleep(0.3)  # the map had all the time it needed to run ahead
            # Bounded: the driver's window (2 x workers chunks) and the feeder's two batches,
            # of chunks at most 10,000 items (a stream's ceiling): never the whole input.
            assert read["n"] < 200_000

    run(main())


@pytest.mark.process
def test_the_loop_stays_responsive_during_a_200k_item_process_map() -> None:
    """A heartbeat's worst lag stays under 20 ms while async for consumes a process map.

    (Timing on a shared machine: the bound must hold in one of three runs; a map that
    blocked the loop would lag for the whole map, every time.)
    """

    async def once() -> tuple[float, int]:
        worst = 0.0
        stop = False

        async def heartbeat() -> None:
            nonlocal worst
            while not stop:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - t - 0.001)

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.01)
        total = 0
        async for r in amap(square, range(200_000), mode="process", workers=1):
            total += r
        stop = True
        await beat
        return worst, total

    lags = []
    for _ in range(3):
        worst, total = run(once())
        assert total == sum(x * x for x in range(200_000))
        lags.append(worst)
        if worst < 0.020:
            break
    assert min(lags) < 0.020, f"worst heartbeat lags: {[f'{lag * 1000:.1f} ms' for lag in lags]}"


@pytest.mark.parametrize("mode", ["async", pytest.param("process", marks=pytest.mark.process), "thread"])
@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancelling_the_consumer_stops_the_map_and_leaves_nothing(mode: str, how: str) -> None:
    started = threading.Event()

    def stuck(x: int) -> int:
        started.set()
        time.sleep(0.05)
        return x

    async def main() -> None:
        before = Snapshot.take()
        fn: Any = forever if mode == "async" else (stuck if mode == "thread" else nap)
        if how == "cancel":

            async def consume() -> list[Any]:
                return await amap(fn, itertools.count(), mode=mode, workers=2)

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:

            async def consume() -> None:
                async with async_timeout(0.3):
                    async for _ in amap(fn, itertools.count(), mode=mode, workers=2):
                        pass

            with pytest.raises(TimeoutError):
                await consume()
        assert_no_leaks(before)

    run(main())


@pytest.mark.parametrize("mode", ["async", pytest.param("process", marks=pytest.mark.process)])
def test_leaving_an_async_for_early_leaves_nothing(mode: str) -> None:
    async def main() -> None:
        before = Snapshot.take()
        fn: Any = double if mode == "async" else square
        async with amap(fn, itertools.count(), mode=mode, workers=2) as results:
            async for r in results:
                if r > 50:
                    break
        assert_no_leaks(before)
        dropped = amap(fn, itertools.count(), mode=mode, workers=2)
        async for _ in dropped:
            break
        del dropped
        gc.collect()  # (stopped, the map ends in the background: its items' cancellation needs the loop)
        await settled(before)

    run(main())


def test_an_async_crawler_against_a_local_server() -> None:
    base, stop = start_server(pages=30, delay=0.01)
    try:
        urls = [f"{base}/page/{i}" for i in range(30)]

        async def main() -> list[int]:
            return await amap(afetch, urls, workers=10)

        assert run(main()) == [fetch(url) for url in urls]
    finally:
        stop()


def test_a_sync_map_on_the_thread_of_its_adapters_loop_is_refused_not_hung() -> None:
    async def main() -> None:
        pool = parmap.AsyncAdapter(4, loop=asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match=r"use parmap\.amap"):
            pmap(double, [1, 2], mode=pool)
        assert await amap(double, [1, 2], mode=pool) == [2, 4]

    run(main())


def test_the_loop_of_a_sync_async_mode_map_closes_fns_executor_threads() -> None:
    before = Snapshot.take()

    async def in_executor(x: int) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, square, x)

    assert pmap(in_executor, range(20), mode="async") == [x * x for x in range(20)]
    assert_no_leaks(before)


def test_a_plain_fn_that_returns_coroutines_is_an_error_at_its_first_result() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no "coroutine was never awaited": each one is closed)
        for mode in ("thread", "serial"):
            with pytest.raises(TypeError, match=r"returned a coroutine \(item \d+ .*functools\.partial"):
                pmap(lambda x: double(x), range(20), mode=mode)  # noqa: PLW0108 - the point
        gc.collect()


@pytest.mark.process
def test_a_plain_fn_that_returns_coroutines_in_process_mode_is_told_why() -> None:
    # The coroutine cannot travel back from the worker: its SerializationError says what to do.
    got = pmap(returns_a_coroutine, range(3), mode="process", workers=1, on_error="return")
    assert all(isinstance(e, parmap.SerializationError) for e in got)
    assert "fn returned a coroutine, which only mode='async' awaits" in str(got[0])


def test_an_async_callback_is_refused_at_once() -> None:
    async def note(_: object) -> None:
        pass

    with pytest.raises(TypeError, match=r"callback .* is a coroutine function"):
        pmap(square, [1], mode="thread", callback=note)

    async def main() -> None:
        with pytest.raises(TypeError, match=r"callback .* is a coroutine function"):
            amap(double, [1], callback=note)

    run(main())


def test_an_amap_never_awaited_says_so() -> None:
    async def main() -> None:
        with pytest.warns(RuntimeWarning, match="never awaited nor iterated"):
            amap(double, [1, 2])  # (dropped at once: CPython collects it here)
        closed = amap(double, [1, 2])
        await closed.aclose()  # closed unused: no warning
        del closed
        gc.collect()

    run(main())


@pytest.mark.parametrize("mode", ["async", pytest.param("process", marks=pytest.mark.process)])
def test_an_amap_is_a_coroutine_a_task_can_run_and_cancel(mode: str) -> None:
    async def main() -> None:
        before = Snapshot.take()
        fn: Any = double if mode == "async" else square
        task = asyncio.create_task(amap(fn, range(100), mode=mode))
        assert await task == [2 * x if mode == "async" else x * x for x in range(100)]
        stuck = asyncio.create_task(amap(forever if mode == "async" else nap, itertools.count(), mode=mode))
        await asyncio.sleep(0.2)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert_no_leaks(before)
        results = await asyncio.gather(amap(fn, [1, 2], mode=mode), amap(fn, [3], mode=mode))
        assert results == ([[2, 4], [6]] if mode == "async" else [[1, 4], [9]])
        closed = amap(fn, itertools.count(), mode=mode)
        closed.send(None)  # started, as a task would
        closed.close()  # told to stop; it ends in the background
        await settled(before)

    run(main())


def test_amap_advances_a_progress_bar_per_batch_on_the_loop() -> None:
    class Bar:
        total: int | None = None

        def __init__(self) -> None:
            self.n = 0
            self.threads: set[str] = set()

        def update(self, n: int) -> None:
            self.n += n
            self.threads.add(threading.current_thread().name)

    bar, streamed = Bar(), Bar()

    async def main() -> None:
        assert await amap(double, range(300), progress=bar) == [2 * x for x in range(300)]
        got = [r async for r in amap(double, iter(range(70)), progress=streamed)]
        assert got == [2 * x for x in range(70)]

    run(main())
    assert (bar.n, bar.total, bar.threads) == (300, 300, {threading.current_thread().name})
    assert (streamed.n, streamed.total) == (70, None)
