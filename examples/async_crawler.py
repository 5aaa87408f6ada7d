"""A crawler in async code: amap over a coroutine function, with the event loop never blocked.

The pages come from the local server of crawler.py. ``afetch`` is an ``async def``, so amap
runs it with mode="async": up to --workers requests in flight on this event loop, no threads.
Meanwhile a heartbeat task sleeps a few milliseconds at a time and records how late the loop
wakes it. Then the same pages are fetched with the blocking ``pmap(fetch, mode="thread")``
called inside the coroutine: the results must match page by page, and the heartbeat shows
that this call held the loop.

    .venv/bin/python examples/async_crawler.py [--pages 200] [--delay 0.05] [--workers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import afetch, fetch, positive_int, start_server

from parmap import amap, pmap

T = TypeVar("T")
BEAT = 0.005  # seconds the heartbeat sleeps between two checks of the loop
THREADS = 16  # workers of the blocking reference crawl, as in crawler.py


async def heartbeat(lags: list[float]) -> None:
    """Sleep BEAT at a time, forever; record how late the loop woke this task each time."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(BEAT)
        lags.append(loop.time() - start - BEAT)


async def timed(work: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """Run ``work()`` beside a heartbeat: its result, its seconds, the heartbeat's worst lag."""
    lags: list[float] = []
    beat = asyncio.create_task(heartbeat(lags))
    await asyncio.sleep(0)  # the heartbeat starts before the work does
    start = time.perf_counter()
    result = await work()
    seconds = time.perf_counter() - start
    await asyncio.sleep(BEAT * 2)  # a heartbeat held back until now reports its lag
    beat.cancel()
    return result, seconds, max(lags, default=0.0)


async def crawl(urls: list[str], workers: int) -> None:
    async def with_amap() -> list[int]:
        return await amap(afetch, urls, workers=workers)  # mode="async": afetch is a coroutine fn

    async def blocking() -> list[int]:
        return pmap(fetch, urls, mode="thread", workers=THREADS)  # holds the loop until it ends

    sizes, seconds, lag = await timed(with_amap)
    expected, sync_seconds, sync_lag = await timed(blocking)

    print(
        f"  amap(afetch) mode='async' workers={workers:<4}  {seconds:6.3f} s  worst lag {lag * 1000:8.1f} ms"
    )
    print(
        f"  pmap(fetch) mode='thread' workers={THREADS:<4}  {sync_seconds:6.3f} s  "
        f"worst lag {sync_lag * 1000:8.1f} ms (blocks the loop)"
    )
    differ = [i for i, (got, want) in enumerate(zip(sizes, expected, strict=True)) if got != want]
    if differ:
        sys.exit(f"byte counts differ from fetch's on pages {differ}")
    print(f"same byte count for every page as fetch: yes ({sum(sizes)} bytes in all)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=positive_int, default=200)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the server waits per page")
    parser.add_argument("--workers", type=positive_int, default=100, help="requests in flight")
    args = parser.parse_args()

    base, stop = start_server(pages=args.pages, delay=args.delay)
    try:
        urls = [f"{base}/page/{i}" for i in range(args.pages)]
        print(f"{args.pages} pages of {args.delay * 1000:.0f} ms each")
        asyncio.run(crawl(urls, args.workers))
    finally:
        stop()


if __name__ == "__main__":
    main()
