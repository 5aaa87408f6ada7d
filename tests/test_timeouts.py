"""timeout=: an item that runs too long fails alone, on time; serial mode refuses it up front."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import helpers
import pytest

from parmap import ItemTimeoutError, pmap

TIMED_MODES = ["thread", pytest.param("process", marks=pytest.mark.process)]


def stuck_items(folder: Path) -> Iterator[tuple[str, int]]:
    """Nine items; item 4 is stuck until ``folder/release`` appears (see helpers)."""
    yield from ((str(folder), i) for i in range(9))


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    (tmp_path / "release").touch()  # what a thread left running waits for ends now


@pytest.mark.parametrize("mode", TIMED_MODES)
def test_overdue_item_fails_alone_and_the_map_goes_on(mode: str, folder: Path) -> None:
    got = pmap(
        helpers.stuck_until_released,
        list(stuck_items(folder)),
        mode=mode,
        workers=2,
        chunksize=3,
        timeout=0.5,
        on_error="return",
    )
    assert not (folder / "returned").exists()  # on time: the map did not wait for item 4
    assert isinstance(got[4], ItemTimeoutError)
    assert isinstance(got[4], TimeoutError)
    assert "item 4 ran longer than timeout=0.5 s" in str(got[4])
    assert [v for i, v in enumerate(got) if i != 4] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert pmap(helpers.square, range(5), mode=mode) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("mode", TIMED_MODES)
def test_overdue_item_raises_by_default(mode: str, folder: Path) -> None:
    with pytest.raises(TimeoutError, match="item 4 ran longer") as info:
        pmap(
            helpers.stuck_until_released,
            list(stuck_items(folder)),
            mode=mode,
            workers=2,
            chunksize=1,
            timeout=0.5,
        )
    assert not (folder / "returned").exists()  # raised on time: item 4 had not returned
    assert any("item 4 of the input" in n for n in info.value.__notes__)
    assert info.value.index == 4


@pytest.mark.parametrize("mode", TIMED_MODES)
def test_timeout_is_per_item_not_per_chunk(mode: str) -> None:
    # Six items of 0.2 s in one chunk take 1.2 s together, each well under the timeout.
    items = [(0.2, i) for i in range(6)]
    assert pmap(helpers.sleep_then, items, mode=mode, workers=1, chunksize=6, timeout=0.6) == list(range(6))


@pytest.mark.process
def test_process_worker_is_replaced() -> None:
    items = [(0.01, "a"), (30.0, "stuck"), (0.01, "b"), (0.01, "c")]
    got = pmap(
        helpers.sleep_then, items, mode="process", workers=1, chunksize=1, timeout=0.3, on_error="return"
    )
    assert got[0] == "a"
    assert isinstance(got[1], ItemTimeoutError)
    assert "killed and replaced" in str(got[1])
    assert got[2:] == ["b", "c"]


def test_serial_mode_refuses_a_timeout() -> None:
    with pytest.raises(ValueError, match="cannot interrupt fn"):
        pmap(helpers.square, range(3), mode="serial", timeout=1)


def test_borrowed_executor_refuses_a_timeout() -> None:
    with ThreadPoolExecutor(2) as ex, pytest.raises(ValueError, match="cannot interrupt fn"):
        pmap(helpers.square, range(3), mode=ex, timeout=1)


@pytest.mark.parametrize("value", [0, -1, "1", True, float("nan")])
def test_bad_timeout(value: object) -> None:
    with pytest.raises(ValueError, match="timeout"):
        pmap(helpers.square, range(3), mode="thread", timeout=value)  # type: ignore[call-overload]
