"""Adapter instances that ``pmap`` starts itself, safe to share between calls in several threads.

An adapter given to ``pmap`` unstarted is started for the call and shut down when it ends. Two
threads doing that with one instance would start it twice, or shut it down under the other's
map. So each call claims the instance: the first claim starts it (unless its owner already
did, with ``with``), and the last release shuts down what a claim started. A claim that comes
while the last one is shutting it down waits for that, then starts it afresh.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from parmap._adapters import Adapter

__all__ = ["claim", "release"]


class _Claims:
    __slots__ = ("gate", "started", "users")

    def __init__(self) -> None:
        self.gate = threading.Lock()  # held while the adapter starts or shuts down
        self.users = 0
        self.started = False  # a claim started it: the last release shuts it down


_guard = threading.Lock()
# By id: an adapter need not be hashable. An entry lives only while some call holds a claim,
# so the adapter is alive and its id cannot be reused meanwhile.
_claims: dict[int, _Claims] = {}


def claim(adapter: Adapter, start: Callable[[], None]) -> None:
    """Use ``adapter`` for one call; if it is not running, ``start()`` starts it."""
    with _guard:
        claims = _claims.setdefault(id(adapter), _Claims())
        claims.users += 1
    try:
        with claims.gate:
            if not adapter.running:
                try:
                    start()
                except BaseException:
                    with contextlib.suppress(Exception):  # what it started half-way
                        adapter.shutdown(wait=False, cancel=True)
                    raise
                claims.started = True
    except BaseException:
        _forget(adapter, claims, leaving=True)
        raise


def release(adapter: Adapter, *, clean: bool) -> None:
    """End one call's use of ``adapter``; the last one shuts down what a claim started."""
    with _guard:
        claims = _claims[id(adapter)]
    with claims.gate:
        with _guard:
            claims.users -= 1
            last = claims.users == 0
        if last and claims.started:
            claims.started = False
            adapter.shutdown(wait=clean, cancel=not clean)
        _forget(adapter, claims, leaving=False)


def _forget(adapter: Adapter, claims: _Claims, *, leaving: bool) -> None:
    with _guard:
        claims.users -= leaving
        if claims.users == 0 and _claims.get(id(adapter)) is claims:
            del _claims[id(adapter)]
