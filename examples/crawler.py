"""A crawler against a local HTTP server that answers each page after a delay (no internet needed).

Fetching a page is waiting, not computing, so threads overlap the waits: with W threads the
crawl takes about pages x delay / W. Processes overlap them too, but only one per CPU.

    .venv/bin/python examples/crawler.py [--pages 40] [--delay 0.05] [--workers 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import fetch, positive_int, start_server

from parmap import pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=positive_int, default=40)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the server waits per page")
    parser.add_argument("--workers", type=positive_int, default=16, help="threads for the crawl")
    args = parser.parse_args()

    base, stop = start_server(pages=args.pages, delay=args.delay)
    try:
        urls = [f"{base}/page/{i}" for i in range(args.pages)]
        start = time.perf_counter()
        expected = [fetch(url) for url in urls]
        serial = time.perf_counter() - start

        start = time.perf_counter()
        sizes = pmap(fetch, urls, mode="thread", workers=args.workers)  # the one-line change
        threaded = time.perf_counter() - start
    finally:
        stop()
    assert sizes == expected

    print(f"{args.pages} pages of {args.delay * 1000:.0f} ms each, {sum(sizes)} bytes in all")
    print(f"  for loop                        {serial:6.3f} s")
    speedup = serial / threaded
    print(f"  pmap mode='thread' workers={args.workers:<3}  {threaded:6.3f} s  speedup {speedup:.2f}x")


if __name__ == "__main__":
    main()
