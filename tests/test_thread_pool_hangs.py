"""ThreadAdapter: maps that used to hang, timeouts the watchdog missed, and pools shared by threads.

Nothing here depends on timing: a stuck item waits on an Event that its test sets at the end
(every wait has a bound far beyond what a passing test needs), and orderings are made certain
with Events, never with sleeps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from parmap import ItemTimeoutError, ThreadAdapter, pmap
from parmap._chunk import Chunk
from parmap._job import Job
from parmap._stopwatch import Stopwatch, poll_interval
from parmap._threads import _overdue_item, _Worker

# A regression here is a hang: fail it sooner than the suite's 120 s.
pytestmark = pytest.mark.timeout(60)

LONG = 90.0  # bound on every wait; beyond the timeout above, so a hang fails as a hang


def square(x: int) -> int:
    return x * x


def thread_of(x: int) -> threading.Thread:  # only where it runs matters
    return threading.current_thread()


class Stuck:
    """``fn`` that blocks on the given items until :meth:`finish`; other items pass through."""

    def __init__(self, *items: int) -> None:
        self.items = set(items)
        self.started = threading.Event()  # a stuck item is running
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []  # where stuck items ran
        self.returned: list[int] = []  # stuck items whose fn call has returned

    def __call__(self, x: int) -> int:
        if x in self.items:
            self.threads.append(threading.current_thread())
            self.started.set()
            self.release.wait(LONG)
            self.returned.append(x)
        return x

    def finish(self) -> None:
        """Release the stuck items and wait for their threads (abandoned ones end once fn returns)."""
        self.release.set()
        for thread in self.threads:
            thread.join(LONG)


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target`` in a started thread; its result (or exception) lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# -- one adapter instance, many maps ------------------------------------------------------


def test_an_unstarted_adapter_serves_map_after_map() -> None:
    pool = ThreadAdapter(2)
    for _ in range(3):
        assert pmap(square, range(5), mode=pool) == [0, 1, 4, 9, 16]
        assert not pool.running


def test_maps_before_inside_and_after_with_blocks() -> None:
    pool = ThreadAdapter(2)
    assert pmap(square, range(4), mode=pool) == [0, 1, 4, 9]
    for _ in range(2):
        with pool:
            used = set(pmap(thread_of, range(20), mode=pool, chunksize=1))
            assert pmap(square, range(4), mode=pool) == [0, 1, 4, 9]
        # shutdown(wait=True) joined its threads
        assert not any(t.is_alive() for t in used)
        assert not pool.running
        assert pmap(square, range(4), mode=pool) == [0, 1, 4, 9]


def test_start_on_a_running_pool_changes_nothing() -> None:
    with ThreadAdapter(2) as pool:
        assert pmap(square, range(4), mode=pool) == [0, 1, 4, 9]  # its threads now wait for chunks
        pool.start()
        assert pmap(square, range(4), mode=pool) == [0, 1, 4, 9]


def test_start_after_shutdown_is_a_fresh_pool_while_an_old_thread_is_busy() -> None:
    stuck = Stuck(0)
    pool = ThreadAdapter(1)
    pool.start()
    first, out = in_thread(lambda: pmap(stuck, [0], mode=pool))
    try:
        assert stuck.started.wait(LONG)
        pool.shutdown(wait=False)  # its one thread is still in fn
        pool.start()
        ran_on = set(pmap(thread_of, range(4), mode=pool))
        assert not ran_on & set(stuck.threads)  # a fresh thread, not the old pool's
        pool.shutdown()
    finally:
        stuck.finish()
        first.join(LONG)
    assert out == {"result": [0]}  # the old pool's thread finished its chunk all the same


def test_shutdown_runs_a_queued_chunk_that_a_retiring_thread_took() -> None:
    stuck = Stuck(0)
    pool = ThreadAdapter(1, max_tasks_per_worker=1)
    pool.start()
    try:
        first = pool.submit(Job(stuck), Chunk(0, [0]))
        assert stuck.started.wait(LONG)
        second = pool.submit(Job(stuck), Chunk(1, [1]))  # queued: the one thread is busy
        pool.shutdown(wait=False)
        stuck.release.set()
        # The thread has run its share, but a fresh one could not start now: it runs this one.
        assert first.result(LONG).values == [0]
        assert second.result(LONG).values == [1]
    finally:
        stuck.finish()


def exit_generator_on_1(x: int) -> int:
    if x == 1:
        raise GeneratorExit("from fn")  # the one exception run_chunk lets through
    return x


def test_an_exception_that_escapes_the_chunk_fails_it_and_the_thread_goes_on() -> None:
    with ThreadAdapter(1) as pool:
        got = pmap(exit_generator_on_1, range(4), mode=pool, chunksize=4, on_error="return")
        assert isinstance(got[1], GeneratorExit)
        assert [got[0], *got[2:]] == [0, 2, 3]
        assert pmap(square, range(3), mode=pool) == [0, 1, 4]


# -- timeouts ------------------------------------------------------------------------------


def test_a_warm_pool_enforces_the_timeout() -> None:
    stuck = Stuck(0, 1)
    try:
        with ThreadAdapter(2) as pool:
            assert pmap(abs, range(4), mode=pool) == [0, 1, 2, 3]  # its threads are now idle
            # One chunk: it goes to an idle thread, where no other chunk can start the watchdog.
            got = pmap(stuck, range(4), mode=pool, chunksize=4, timeout=0.2, on_error="return")
            assert [type(v) for v in got[:2]] == [ItemTimeoutError, ItemTimeoutError]
            assert got[2:] == [2, 3]
            assert not stuck.returned  # failed while fn still ran: the watchdog did it
    finally:
        stuck.finish()


@pytest.mark.parametrize("timeout", [10**400, math.inf], ids=["huge-int", "inf"])
def test_a_huge_or_infinite_timeout_is_no_limit(timeout: float) -> None:
    endless, stuck = Stuck(0), Stuck(0)
    try:
        with ThreadAdapter(2) as pool:
            assert pmap(square, range(5), mode=pool, timeout=timeout) == [0, 1, 4, 9, 16]
            # While an item with that timeout runs, the watchdog still enforces a finite one.
            mapper, out = in_thread(lambda: pmap(endless, [0], mode=pool, timeout=timeout))
            assert endless.started.wait(LONG)
            got = pmap(stuck, [0, 1], mode=pool, timeout=0.2, on_error="return")
            assert isinstance(got[0], ItemTimeoutError)
            assert got[1] == 1
            assert not endless.returned  # not timed out
            endless.release.set()
            mapper.join(LONG)
            assert out == {"result": [0]}
    finally:
        endless.finish()
        stuck.finish()


@pytest.mark.parametrize("timeout", [10**400, math.inf], ids=["huge-int", "inf"])
def test_poll_interval_and_stopwatch_take_any_timeout(timeout: float) -> None:
    assert poll_interval([timeout]) == 0.25
    assert poll_interval([timeout, 0.1]) == pytest.approx(0.01)
    stopwatch = Stopwatch()
    assert not stopwatch.overdue("worker", "mark", timeout, 0.0)
    assert not stopwatch.overdue("worker", "mark", timeout, 1e300)


def test_shutdown_waits_for_an_overdue_item_only_until_it_is_abandoned() -> None:
    stuck = Stuck(0)
    pool = ThreadAdapter(1)
    pool.start()
    mapper, out = in_thread(lambda: pmap(stuck, [0], mode=pool, timeout=0.2, on_error="return"))
    try:
        assert stuck.started.wait(LONG)
        pool.shutdown(wait=True)  # the watchdog gives up on item 0; its thread is not waited for
        assert not stuck.returned
    finally:
        stuck.finish()
        mapper.join(LONG)
    assert isinstance(out["result"][0], ItemTimeoutError)


def _timed_worker(position: int, count: int) -> _Worker:
    worker = _Worker(lambda _: None)  # (its thread is never started)
    worker.task = (Job(abs, timeout=1.0), Chunk(0, [1, 2, 3]), Future())
    worker.mark.cells[:] = [1, position, count]  # (chunk 1 of this thread)
    return worker


def test_the_watchdog_never_times_out_a_chunk_whose_items_have_all_run() -> None:
    stopwatch = Stopwatch()
    done = _timed_worker(3, 0)  # count 0: the results are being handed over
    assert _overdue_item(stopwatch, done, 0.0) is None
    assert _overdue_item(stopwatch, done, 100.0) is None
    running = _timed_worker(2, 1)  # an item that does run past the timeout is named
    assert _overdue_item(stopwatch, running, 100.0) is None
    assert _overdue_item(stopwatch, running, 101.5) == 2


def test_an_item_at_the_same_position_of_the_next_chunk_gets_a_fresh_timer() -> None:
    stopwatch = Stopwatch()
    worker = _timed_worker(0, 1)
    assert _overdue_item(stopwatch, worker, 0.0) is None
    worker.mark.cells[0] += 1  # the next chunk: its item 0 was first seen at 0.9
    assert _overdue_item(stopwatch, worker, 0.9) is None
    assert _overdue_item(stopwatch, worker, 1.5) is None
    assert _overdue_item(stopwatch, worker, 2.0) == 0


# -- one pool, several threads --------------------------------------------------------------


def _map_from_threads(pool: ThreadAdapter, clients: int, **options: Any) -> None:
    barrier = threading.Barrier(clients)

    def client(k: int) -> list[list[int]]:
        barrier.wait(LONG)  # all at once
        items = range(10 * k, 10 * k + 25)
        return [pmap(square, items, mode=pool, chunksize=2, **options) for _ in range(10)]

    started = [in_thread(lambda k=k: client(k)) for k in range(clients)]
    for thread, out in started:
        thread.join(LONG)
        assert "error" not in out, out.get("error")
    for k, (_, out) in enumerate(started):
        assert out["result"] == [[x * x for x in range(10 * k, 10 * k + 25)]] * 10


def test_a_running_pool_serves_maps_from_several_threads() -> None:
    # Threads retire after 3 items and a timeout is watched: threads are spawned, retired and
    # looked at by the watchdog while other maps submit.
    with ThreadAdapter(3, max_tasks_per_worker=3) as pool:
        _map_from_threads(pool, 4, timeout=LONG)


def test_an_unstarted_pool_serves_maps_from_several_threads() -> None:
    # Each map may start the pool or find it running; the last one shuts it down.
    pool = ThreadAdapter(2)
    _map_from_threads(pool, 4, timeout=LONG)
    assert not pool.running
