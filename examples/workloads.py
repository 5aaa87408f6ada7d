"""The workloads of the articles parmap grew out of: file hashing, tiny and heavy CPU tasks, a crawler.

Everything that runs in a worker process lives here, in an importable module, so that worker
processes (forkserver or spawn) can import it by name. ``demo.py``, the other examples and
``benchmarks/_tasks.py`` import it.
"""

from __future__ import annotations

import argparse
import hashlib
import operator
import os
import stat
import sysconfig
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "GCD_PAIRS",
    "factorial_task",
    "fetch",
    "gcd",
    "list_files",
    "md5_file",
    "start_server",
]

_BLOCK = 1 << 16
# Third-party packages installed under the stdlib path are not the standard library, and they
# differ from machine to machine.
_SKIP_DIRS = frozenset({"site-packages", "dist-packages"})


# --- md5 of real files: I/O plus hashing (hashlib releases the GIL on large buffers) ---------


def md5_file(path: str) -> str:
    """Return the md5 hex digest of the file at ``path``, read in blocks."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum workload, not security
    with open(path, "rb") as f:  # noqa: PTH123 - plain open is the workload being measured
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def list_files(root: str | None = None, limit: int | None = None) -> list[str]:
    """Return up to ``limit`` readable regular files under ``root``, sorted.

    ``root`` defaults to the standard library directory (its compiled ``__pycache__`` files
    included); third-party packages installed under it (``site-packages``) are skipped.
    """
    base = root if root is not None else sysconfig.get_paths()["stdlib"]
    skip = _SKIP_DIRS if root is None else frozenset()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = os.path.join(dirpath, name)  # noqa: PTH118 - os.walk yields strings
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK):
                found.append(path)
    found.sort()
    return found if limit is None else found[:limit]


# --- many tiny CPU tasks -----------------------------------------------------------------------


def factorial_task(n: int) -> int:
    """Multiply 1..~300 (a few tens of microseconds of pure-Python CPU work) and return it."""
    return reduce(operator.mul, range(1, 300 + n % 7))


# --- a few heavy CPU tasks ---------------------------------------------------------------------

GCD_PAIRS: list[tuple[int, int]] = [
    (1963309, 2265973),
    (1879675, 2493670),
    (2030677, 3814172),
    (1551645, 2229620),
    (1988912, 4736670),
    (2198964, 7876293),
]


def gcd(pair: tuple[int, int]) -> int:
    """Greatest common divisor by counting down from ``min(a, b)``: slow on purpose."""
    a, b = pair
    for candidate in range(min(a, b), 0, -1):
        if a % candidate == 0 and b % candidate == 0:
            return candidate
    return max(a, b)  # only reached when one of them is 0


# --- a crawler against a local server (simulated network latency) -----------------------------

_HOST = "127.0.0.1"
# Never route the local crawl through a proxy from the environment (http_proxy and friends).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _PageServer(ThreadingHTTPServer):
    """A threading HTTP server that knows how many pages it has and how slow to be."""

    # socketserver's default listen backlog is 5: with more clients connecting at once the
    # kernel drops their SYNs, and each retries after a full second, which swamps the timing.
    request_queue_size = 128

    def __init__(self, pages: int, delay: float, flaky: int = 0) -> None:
        super().__init__((_HOST, 0), _PageHandler)
        self.pages = pages
        self.delay = delay
        self.flaky = flaky  # every third page answers 503 to its first `flaky` requests
        self.asked: dict[int, int] = {}  # page -> requests so far
        self.asked_lock = threading.Lock()


class _PageHandler(BaseHTTPRequestHandler):
    timeout = 10  # a stuck client cannot keep a handler thread (and server_close) waiting
    server: _PageServer

    def do_GET(self) -> None:
        prefix, _, index = self.path.partition("/page/")
        if prefix or not index.isdigit() or int(index) >= self.server.pages:
            self.send_error(404)
            return
        time.sleep(self.server.delay)
        i = int(index)
        with self.server.asked_lock:
            asked = self.server.asked[i] = self.server.asked.get(i, 0) + 1
        if i % 3 == 0 and asked <= self.server.flaky:
            self.send_error(503, "busy: try again")
            return
        # Page sizes differ, so the crawl's results (byte counts) tell the pages apart.
        body = (f"<html><body><h1>page {i}</h1>" + "<p>lorem ipsum</p>" * (i % 13 + 1)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Stay quiet: the demo's table is the output."""


def start_server(pages: int = 40, delay: float = 0.05, flaky: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve ``/page/0`` .. ``/page/{pages-1}`` on 127.0.0.1, each after ``delay`` seconds.

    ``flaky``: every third page answers "503 busy" to its first ``flaky`` requests.

    Returns the base URL (``http://127.0.0.1:PORT``) and a function that stops the server,
    waits for its threads and closes its socket; calling it again does nothing.
    """
    server = _PageServer(pages, delay, flaky)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="page-server", daemon=True
    )
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()  # closes the socket and joins the request threads
        thread.join()

    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}", stop


def fetch(url: str) -> int:
    """GET ``url`` (127.0.0.1 only) and return the length of the body in bytes."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname != _HOST:
        msg = f"fetch only contacts http://{_HOST}, got {url!r}"
        raise ValueError(msg)
    with _OPENER.open(url, timeout=10) as response:
        return len(response.read())


async def afetch(url: str) -> int:
    """``fetch`` for async code: GET ``url`` (127.0.0.1 only) over asyncio streams; the body's length.

    Standard library only (HTTP/1.0, one connection per request), so that the async examples
    need no HTTP client package; real code would use an async client such as aiohttp or httpx.
    """
    import asyncio  # noqa: PLC0415 - only the async examples pay for it

    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname != _HOST or parts.port is None:
        msg = f"afetch only contacts http://{_HOST}:PORT, got {url!r}"
        raise ValueError(msg)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(_HOST, parts.port), 10)
    try:
        writer.write(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {_HOST}\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)  # HTTP/1.0: the server closes at the end
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        msg = f"GET {url}: {head.splitlines()[0].decode(errors='replace') if head else 'no response'}"
        raise OSError(msg)
    return len(body)


# --- the four workloads together, as the demo and the benchmark run them -----------------------


@dataclass(frozen=True)
class Sizes:
    """Input sizes of one run."""

    files: int | None  # None: every file of the standard library
    factorials: int
    gcd_pairs: int
    pages: int
    delay: float


FULL = Sizes(files=None, factorials=20_000, gcd_pairs=len(GCD_PAIRS), pages=40, delay=0.05)
QUICK = Sizes(files=200, factorials=2_000, gcd_pairs=2, pages=8, delay=0.02)


@dataclass(frozen=True)
class Workload:
    """A function, its inputs, and the kind of work it is (files, tiny, cpu or io)."""

    name: str
    fn: Callable[[Any], Any]
    items: list[Any]
    kind: str


@contextmanager
def article_workloads(sizes: Sizes) -> Iterator[list[Workload]]:
    """The articles' four workloads; the crawler's local server runs while the block runs."""
    files = list_files(limit=sizes.files)
    for path in files:  # into the page cache, so that the first configuration is not penalised
        Path(path).read_bytes()
    base, stop = start_server(pages=sizes.pages, delay=sizes.delay)
    try:
        yield [
            Workload("md5 of stdlib files", md5_file, files, "files"),
            Workload("factorial (tiny tasks)", factorial_task, list(range(sizes.factorials)), "tiny"),
            Workload("brute-force gcd", gcd, GCD_PAIRS[: sizes.gcd_pairs], "cpu"),
            Workload(
                f"crawler ({sizes.delay * 1000:.0f} ms/page)",
                fetch,
                [f"{base}/page/{i}" for i in range(sizes.pages)],
                "io",
            ),
        ]
    finally:
        stop()


def positive_int(text: str) -> int:
    """An ``argparse`` type: a positive integer."""
    value = int(text)
    if value < 1:
        msg = f"must be a positive integer, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value
