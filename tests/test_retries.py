"""retries=, retry_on=, retry_delay= and parmap.attempt(): failed items tried again, in every mode."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import pytest
import retry_fns

import parmap
from parmap import ItemTimeoutError, ProcessAdapter, SerializationError, WorkerDiedError, pmap


def test_every_mode_tries_a_failed_item_again(mode: str | Executor) -> None:
    # Item x fails on its tries 1 .. x % 3: each succeeds within retries=2, on the try it says.
    items = [(x, 1 + x % 3) for x in range(12)]
    got = pmap(retry_fns.fails_before_try, items, mode=mode, retries=2, retry_delay=0.001, chunksize=2)
    assert got == [(x, 1 + x % 3) for x in range(12)]


def test_a_reusable_pool_tries_a_failed_item_again() -> None:
    items = [(x, 1 + x % 2) for x in range(8)]
    with ProcessAdapter(2) as pool:
        got = pmap(retry_fns.fails_before_try, items, mode=pool, retries=1, retry_delay=0)
    assert got == [(x, 1 + x % 2) for x in range(8)]


@pytest.mark.parametrize("mode", ["serial", "thread", pytest.param("process", marks=pytest.mark.process)])
def test_the_final_failure_says_every_try(mode: str) -> None:
    with pytest.raises(ConnectionError, match="item 1: try 3 failed") as info:
        pmap(retry_fns.fails_before_try, [(0, 1), (1, 9), (2, 1)], mode=mode, retries=2, retry_delay=0)
    notes = info.value.__notes__
    assert notes[0] == "parmap: raised on item 1 of the input: (1, 9)"
    assert notes[1] == (
        "parmap: tried 3 times; the earlier tries raised: "
        "try 1: ConnectionError: item 1: try 1 failed; try 2: ConnectionError: item 1: try 2 failed"
    )


def test_on_error_return_keeps_the_last_failure_in_place() -> None:
    got = pmap(retry_fns.fails_before_try, [(0, 5), (1, 2)], mode="thread", retries=1, on_error="return")
    assert isinstance(got[0], ConnectionError)
    assert "try 2 failed" in str(got[0])
    assert got[1] == (1, 2)


def test_without_retries_nothing_is_tried_again() -> None:
    with pytest.raises(ConnectionError, match="try 1 failed") as info:
        pmap(retry_fns.fails_before_try, [(0, 2)], mode="thread")
    assert not any("tried" in note for note in info.value.__notes__)
    assert parmap.attempt() == 1  # outside fn


def test_retry_on_picks_the_failures_tried_again() -> None:
    items = [(0, 2)]
    assert pmap(retry_fns.fails_before_try, items, mode="thread", retries=1, retry_on=ConnectionError) == [
        (0, 2)
    ]
    assert pmap(
        retry_fns.fails_before_try, items, mode="thread", retries=1, retry_on=(KeyError, OSError)
    ) == [(0, 2)]
    with pytest.raises(ConnectionError):
        pmap(retry_fns.fails_before_try, items, mode="thread", retries=1, retry_on=KeyError)
    seen: list[BaseException] = []

    def only_once(exc: BaseException) -> bool:
        seen.append(exc)
        return len(seen) == 1

    assert pmap(retry_fns.fails_before_try, items, mode="thread", retries=3, retry_on=only_once) == [(0, 2)]
    assert len(seen) == 1


@pytest.mark.process
def test_what_cannot_change_is_not_tried_again() -> None:
    # A result that cannot be pickled fails the same way every time: never retried by default.
    got = pmap(retry_fns.unpicklable_result, [0], mode="process", retries=3, on_error="return")
    assert isinstance(got[0], SerializationError)
    assert not any("tried" in note for note in got[0].__notes__)


@pytest.mark.process
def test_a_dead_workers_item_is_tried_again_on_a_fresh_worker(tmp_path: Path) -> None:
    got = pmap(retry_fns.dies_on_first_try, [(x, str(tmp_path)) for x in range(4)], workers=2, retries=1)
    dead = {int(path.read_text()) for path in tmp_path.glob("died-*")}
    assert [x for x, _ in got] == [0, 1, 2, 3]
    assert len(dead) >= 1
    assert not dead & {pid for _, pid in got}  # every second try ran in a process that was alive


@pytest.mark.process
def test_an_item_past_its_timeout_is_tried_again() -> None:
    assert pmap(retry_fns.stuck_on_first_try, [7], mode="process", timeout=1, retries=1, retry_delay=0) == [7]
    with pytest.raises(ItemTimeoutError) as info:
        pmap(
            retry_fns.stuck_on_first_try, [7], mode="process", timeout=1, retries=1, retry_on=WorkerDiedError
        )
    assert not any("tried" in note for note in info.value.__notes__)


def test_a_waiting_retry_holds_no_worker() -> None:
    # One thread. Item 0 fails on its first try: item 1, sent before, runs before that item's
    # second try, which goes to the back of the queue instead of holding the thread.
    events: list[tuple[int, int]] = []
    lock = threading.Lock()

    def record(x: int) -> int:
        with lock:
            events.append((x, parmap.attempt()))
        if x == 0 and parmap.attempt() == 1:
            raise ConnectionError
        return x

    assert pmap(record, [0, 1], mode="thread", workers=1, chunksize=1, retries=1, retry_delay=0.05) == [0, 1]
    assert events == [(0, 1), (1, 1), (0, 2)]


def test_an_ordered_lazy_map_delivers_in_order_and_reads_ahead_no_further_than_its_window() -> None:
    read: list[int] = []

    def source() -> Iterator[tuple[int, int]]:
        for x in itertools.count():
            read.append(x)
            yield (x, 3 if x == 0 else 1)  # item 0 needs three tries

    results = pmap(
        retry_fns.fails_before_try, source(), mode="thread", workers=2, chunksize=1, lazy=True, retries=2
    )
    assert next(results) == (0, 3)
    # Item 0's chunk stays in the window while it retries: at most 2 chunks per worker read.
    assert len(read) <= 2 * 2 + 1
    assert [next(results) for _ in range(3)] == [(1, 1), (2, 1), (3, 1)]
    results.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retries": -1}, ValueError, "retries must be a whole number"),
        ({"retries": True}, ValueError, "retries must be a whole number"),
        ({"retries": 1.5}, ValueError, "retries must be a whole number"),
        ({"retries": 1, "retry_delay": -1}, ValueError, "retry_delay must be a number of seconds"),
        ({"retries": 1, "retry_delay": float("nan")}, ValueError, "retry_delay"),
        ({"retries": 1, "retry_delay": float("inf")}, ValueError, "retry_delay"),
        ({"retries": 1, "retry_on": "ConnectionError"}, TypeError, "retry_on must be an exception type"),
        ({"retries": 1, "retry_on": (ValueError, 3)}, TypeError, "retry_on must be"),
    ],
)
def test_bad_retry_options_are_refused_before_anything_starts(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        pmap(abs, [1], mode="process", **options)  # type: ignore[call-overload]
