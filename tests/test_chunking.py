"""Automatic chunk sizing: one item per chunk until measured, then a target duration per chunk."""

from __future__ import annotations

import operator
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parmap import pmap
from parmap._chunking import MAX_CHUNK, STREAM_MAX_CHUNK, ChunkSizer


def test_fixed_size_is_kept() -> None:
    sizer = ChunkSizer(workers=4, target=0.05, fixed=7, total=1000)
    sizer.observe(7, 100.0)
    assert [sizer.next_size() for _ in range(3)] == [7, 7, 7]


def test_first_chunks_hold_one_item_until_measured() -> None:
    sizer = ChunkSizer(workers=2, target=0.05, total=6)
    assert [sizer.next_size() for _ in range(4)] == [1, 1, 1, 1]


def test_budgeted_chunks_start_as_even_shares_and_skip_the_ramp() -> None:
    # Workers that stop a chunk at its time budget: no one-item probes, no growth limit.
    sizer = ChunkSizer(workers=2, target=0.05, total=200_000, budgeted=True)
    first = sizer.next_size()
    assert first == 50_000
    sizer.taken(first)
    sizer.observe(first, first * 1e-7)
    assert sizer.next_size() == 150_000 // 4  # the tail rule still shares what is left


def test_pieces_of_an_unfinished_chunk_take_the_target_and_shrink_at_the_end() -> None:
    sizer = ChunkSizer(workers=2, target=0.05, total=100_000, budgeted=True)
    assert sizer.piece(100_000) == 25_000  # nothing measured yet: a share of what is left
    sizer.observe(100, 0.1)  # 1 ms per item: 50 per target
    assert sizer.piece(100_000) == 50
    assert sizer.piece(40) == 10  # a quarter of what is left, for 2 workers
    assert sizer.piece(4) == 2  # but not below a twentieth of the target (2.5 items)
    heavy = ChunkSizer(workers=2, target=0.05, total=6, budgeted=True)
    assert heavy.next_size() == 1  # six gcd pairs: one per chunk, as without a budget


def test_heavy_items_stay_one_per_chunk() -> None:
    sizer = ChunkSizer(workers=2, target=0.05, total=6)
    sizer.next_size()
    sizer.taken(1)
    sizer.observe(1, 0.4)  # one gcd pair: 0.4 s
    assert sizer.next_size() == 1


def test_trivial_items_grow_fast_but_not_at_once() -> None:
    sizer = ChunkSizer(workers=2, target=0.05, total=200_000)
    sizes = [sizer.next_size()]
    for _ in range(8):
        sizer.taken(sizes[-1])
        sizer.observe(sizes[-1], sizes[-1] * 1e-7)  # 0.1 microsecond per item
        sizes.append(sizer.next_size())
    assert sizes[:4] == [1, 8, 64, 512]
    assert max(sizes) > 10_000


def test_tail_shrinks_when_the_length_is_known() -> None:
    sizer = ChunkSizer(workers=2, target=10.0, total=100)
    sizer.observe(1, 1.0)
    sizer.taken(96)
    assert sizer.next_size() == 1  # 4 left on 2 workers: one each, not one chunk of 4


def test_tail_of_trivial_items_is_not_cut_into_round_trips() -> None:
    # 0.1 microsecond per item: 1,000 items are 0.1 ms of work, less than one round trip.
    sizer = ChunkSizer(workers=2, target=0.05, total=200_000)
    for _ in range(10):
        size = sizer.next_size()
        sizer.taken(size)
        sizer.observe(size, size * 1e-7)
    sizer.taken(sizer._remaining - 1_000)  # noqa: SLF001 - a thousand items left
    assert sizer.next_size() == 1_000


@given(
    workers=st.integers(1, 64),
    total=st.none() | st.integers(0, 10**7),
    observations=st.lists(st.tuples(st.integers(0, 10**5), st.floats(0, 100)), max_size=20),
)
def test_sizes_are_always_between_1_and_the_maximum(
    workers: int, total: int | None, observations: list[tuple[int, float]]
) -> None:
    sizer = ChunkSizer(workers=workers, target=0.05, total=total)
    for items, seconds in observations:
        size = sizer.next_size()
        assert 1 <= size <= MAX_CHUNK
        sizer.taken(size)
        sizer.observe(items, seconds)


def test_unbounded_input_gets_stream_sized_chunks() -> None:
    sizer = ChunkSizer(workers=2, target=10.0, total=None)
    sizer.observe(1, 1e-9)
    for _ in range(10):
        size = sizer.next_size()
        sizer.observe(size, size * 1e-9)
    assert sizer.next_size() == STREAM_MAX_CHUNK


@pytest.mark.process
def test_streaming_a_long_generator_holds_little_memory() -> None:
    items = 500_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in pmap(operator.neg, (i for i in range(items)), lazy=True, workers=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == items
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MB while streaming"
