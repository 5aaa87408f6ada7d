"""Static checks run in CI by mypy --strict and by basedpyright (standard mode): pmap's types follow fn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from typing_extensions import assert_type

from parmap import AsyncMap, amap, pmap


def add(a: int, b: int) -> float:
    return a + b


assert_type(pmap(len, ["ab"]), list[int])
assert_type(pmap(str, [1], lazy=True), Iterator[str])
assert_type(pmap(len, ["ab"], indexed=True), list[tuple[int, int]])
assert_type(pmap(len, ["ab"], indexed=True, lazy=True), Iterator[tuple[int, int]])
assert_type(pmap(add, [(1, 2)], star=True), list[float])
assert_type(pmap(lambda x: x * 2, [1], mode="thread"), list[int])
assert_type(pmap(lambda s: s.upper(), ["a"], lazy=True), Iterator[str])
assert_type(pmap(lambda x: x / 2, range(3), indexed=True, ordered=False), list[tuple[int, float]])
assert_type(pmap(add, [(1, 2)], star=True, lazy=True, indexed=True), Iterator[tuple[int, float]])
assert_type(pmap(len, ["ab"], mode="process", workers=2, timeout=1.0, on_error="return"), list[int])


# amap: results follow fn, a coroutine function's too (its awaited value, not the coroutine).
async def fetch_len(url: str) -> int:
    return len(url)


async def async_add(a: int, b: int) -> float:
    return a + b


async def use_amap() -> None:
    assert_type(await amap(fetch_len, ["a"]), list[int])
    assert_type(await amap(len, ["ab"], mode="thread"), list[int])
    assert_type(await amap(fetch_len, ["a"], indexed=True), list[tuple[int, int]])
    assert_type(await amap(async_add, [(1, 2)], star=True), list[float])
    assert_type(await amap(async_add, [(1, 2)], star=True, indexed=True), list[tuple[int, float]])
    assert_type(amap(fetch_len, ["a"], workers=200, timeout=1.0), AsyncMap[int])
    async for length in amap(fetch_len, ["a"], mode="async"):
        assert_type(length, int)
    async with amap(str, [1], mode="process") as results:
        async for text in results:
            assert_type(text, str)
    assert_type(pmap(fetch_len, ["a"], mode="async"), list[int])
    assert_type(await asyncio.create_task(amap(fetch_len, ["a"])), list[int])
