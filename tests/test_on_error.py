"""on_error="raise" and on_error="return" in every mode, BaseExceptions, failing initializers."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import helpers
import pytest

from parmap import InitializerError, RemoteTraceback, pmap

Mode = str | Executor


def test_return_puts_the_exception_in_the_items_place(mode: Mode) -> None:
    got = pmap(helpers.fail_on_multiples(7), range(50), mode=mode, on_error="return", chunksize=4)
    assert len(got) == 50
    for x, value in enumerate(got):
        if x % 7 == 0:
            assert isinstance(value, ValueError)
            assert str(value) == f"multiple of 7: {x}"
            assert any(f"item {x} of the input" in n for n in value.__notes__)
        else:
            assert value == x


def test_return_unordered_with_index(mode: Mode) -> None:
    got = pmap(
        helpers.fail_on_multiples(5), range(30), mode=mode, on_error="return", ordered=False, indexed=True
    )
    assert sorted(i for i, _ in got) == list(range(30))
    for i, value in got:
        assert isinstance(value, ValueError) == (i % 5 == 0)


def test_raise_is_the_first_failure_in_order_for_lazy_maps(mode: Mode) -> None:
    got: list[int] = []
    results = pmap(helpers.fail_on_multiples(13), range(1, 100), mode=mode, lazy=True, chunksize=3)
    with pytest.raises(ValueError, match="multiple of 13: 13"):
        got.extend(results)
    assert got == list(range(1, 13))


def test_raise_with_an_automatic_chunksize(mode: Mode) -> None:
    with pytest.raises(ValueError, match="multiple of 1000: 1000"):
        pmap(helpers.fail_on_multiples(1000), range(1, 5000), mode=mode)


def test_base_exceptions_from_fn_are_never_lost(mode: Mode) -> None:
    got = pmap(helpers.raise_base, range(6), mode=mode, on_error="return", chunksize=2)
    assert got[:2] == [0, 1]
    assert isinstance(got[2], SystemExit)
    assert isinstance(got[4], helpers.CustomBaseError)
    assert [got[3], got[5]] == [3, 5]
    with pytest.raises(SystemExit, match="exit from item 2"):
        pmap(helpers.raise_base, range(6), mode=mode)


def test_failing_initializer_is_one_clear_error_and_fn_never_runs(mode: Mode, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    fn = functools.partial(helpers.append_to, str(calls))
    for on_error in ("raise", "return"):
        with pytest.raises(
            InitializerError, match="failing_initializer raised RuntimeError: cannot connect"
        ) as info:
            pmap(fn, range(100), mode=mode, initializer=helpers.failing_initializer, on_error=on_error)
        cause = info.value.__cause__
        if isinstance(cause, RemoteTraceback):  # from another process: the worker's traceback
            assert "cannot connect to the database" in cause.tb
        else:
            assert isinstance(cause, RuntimeError)
    assert not calls.exists()


def test_every_item_fails(mode: Mode) -> None:
    got = pmap(helpers.fail_on_multiples(1), range(20), mode=mode, on_error="return")
    assert len(got) == 20
    assert all(isinstance(v, ValueError) for v in got)


def test_bad_on_error_value() -> None:
    with pytest.raises(ValueError, match="on_error"):
        pmap(abs, [1], on_error="ignore")  # type: ignore[call-overload]


@pytest.mark.parametrize("lazy", [False, True])
def test_a_failure_stops_reading_an_unbounded_input(mode: Mode, lazy: bool) -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for x in itertools.count(1):
            pulled += 1
            yield x

    with pytest.raises(ValueError, match="multiple of 50: 50"):
        list(pmap(helpers.fail_on_multiples(50), source(), mode=mode, lazy=lazy, chunksize=5))
    assert pulled < 50 + 2 * 32 * 5
