"""Property: every mode and option gives what builtin ``map`` gives."""

from __future__ import annotations

import helpers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parmap import pmap


@pytest.mark.parametrize(
    ("mode", "examples"),
    [
        ("serial", 100),
        ("thread", 60),
        pytest.param("process", 25, marks=pytest.mark.process),
    ],
)
def test_same_results_as_builtin_map(mode: str, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        items=st.lists(st.integers(-(10**6), 10**6), max_size=300),
        chunksize=st.none() | st.integers(1, 50),
        workers=st.integers(1, 4),
        ordered=st.booleans(),
        indexed=st.booleans(),
        lazy=st.booleans(),
    )
    def check(
        items: list[int], chunksize: int | None, workers: int, ordered: bool, indexed: bool, lazy: bool
    ) -> None:
        got = pmap(
            helpers.square,
            iter(items) if lazy else items,
            mode=mode,
            workers=workers,
            chunksize=chunksize,
            ordered=ordered,
            indexed=indexed,
            lazy=lazy,
        )
        got = list(got)
        expected = list(map(helpers.square, items))
        if indexed:
            assert sorted(got) == list(enumerate(expected))
            if ordered:
                assert [i for i, _ in got] == list(range(len(items)))
        elif ordered:
            assert got == expected
        else:
            assert sorted(got) == sorted(expected)

    check()
