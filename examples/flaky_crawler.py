"""A crawler against a flaky local server: retries with backoff, without holding a thread.

Every third page of the server answers "503 busy" to its first requests. A plain map fails on
the first of them; ``retries=`` tries each failed page again after a short, growing wait, while
the other pages are fetched meanwhile.

    .venv/bin/python examples/flaky_crawler.py [--pages 30] [--flaky 2] [--retries 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import fetch, positive_int, start_server

from parmap import pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=positive_int, default=30)
    parser.add_argument("--flaky", type=int, default=2, help="503s before every third page answers")
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()

    base, stop = start_server(pages=args.pages, delay=0.01, flaky=args.flaky)
    try:
        urls = [f"{base}/page/{i}" for i in range(args.pages)]
        try:
            pmap(fetch, urls, mode="thread", workers=8)
        except urllib.error.HTTPError as exc:
            print(f"without retries: HTTPError {exc.code} on {exc.url}")
        start = time.perf_counter()
        sizes = pmap(fetch, urls, mode="thread", workers=8, retries=args.retries, retry_delay=0.02)
        took = time.perf_counter() - start
    finally:
        stop()
    print(f"with retries={args.retries}: {len(sizes)} pages, {sum(sizes)} bytes in {took:.2f} s")


if __name__ == "__main__":
    main()
