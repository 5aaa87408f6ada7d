"""Soak: many process maps in a row, some failing, some losing a worker, leave nothing behind."""

from __future__ import annotations

import functools

import helpers
import pytest
from conftest import Snapshot, assert_no_leaks

from parmap import WorkerDiedError, pmap

pytestmark = [pytest.mark.process, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_300_process_maps_in_a_row() -> None:
    before = Snapshot.take()
    for n in range(300):
        if n % 5 == 0:  # a worker dies
            got = pmap(
                helpers.fault, [("ok", 0), ("exit", 1), ("ok", 2)], workers=2, chunksize=2, on_error="return"
            )
            assert [got[0], got[2]] == [0, 2]
            assert isinstance(got[1], WorkerDiedError)
        elif n % 3 == 0:  # fn raises and the map stops
            with pytest.raises(ValueError):
                pmap(helpers.fail_on_multiples(7), range(1, 30), workers=2)
        else:
            fn = functools.partial(helpers.add, n)
            assert pmap(fn, range(20), workers=2) == [n + x for x in range(20)]
    assert_no_leaks(before)
