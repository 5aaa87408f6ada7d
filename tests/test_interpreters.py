"""``concurrent.futures.InterpreterPoolExecutor`` (Python 3.14) as a borrowed executor.

It subclasses ``ThreadPoolExecutor``, but each worker thread runs its own interpreter: fn, the
items and the results cross by pickling, as to a process, and a thread lock cannot cross.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from parmap import SerializationError, pmap
from parmap._adapters import ExecutorAdapter, shares_memory

InterpreterPoolExecutor: Any = getattr(concurrent.futures, "InterpreterPoolExecutor", None)
pytestmark = pytest.mark.skipif(
    InterpreterPoolExecutor is None, reason="InterpreterPoolExecutor: Python 3.14+"
)


@pytest.fixture
def interpreters() -> Iterator[concurrent.futures.Executor]:
    with InterpreterPoolExecutor(2) as executor:
        yield executor


def from_this_module(x: int) -> int:
    """Pickled by reference: an interpreter of the pool cannot import this test module."""
    return x


def test_a_map_through_an_interpreter_pool(interpreters: concurrent.futures.Executor) -> None:
    # (fn from a module the pool's interpreters can import, or by value: see the last test)
    assert pmap(abs, range(-50, 0), mode=interpreters) == list(range(50, 0, -1))
    assert pmap(lambda x: x + 1, range(5), mode=interpreters) == [1, 2, 3, 4, 5]


def test_it_is_taken_for_the_process_like_executor_it_is(interpreters: concurrent.futures.Executor) -> None:
    assert not shares_memory(interpreters)
    adapter = ExecutorAdapter(interpreters)
    assert adapter.chunk_seconds == 0.05  # chunks cross a boundary: bigger, as for processes
    assert adapter.workers == 2
    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        assert shares_memory(threads)
        assert ExecutorAdapter(threads).chunk_seconds == 0.01


def test_a_thread_lock_is_refused_as_for_processes(interpreters: concurrent.futures.Executor) -> None:
    with pytest.raises(ValueError, match="lock=True needs workers that share memory"):
        pmap(abs, range(3), mode=interpreters, lock=True)
    with pytest.raises(ValueError, match="cannot be pickled"):
        pmap(abs, range(3), mode=interpreters, lock=threading.Lock())


def test_an_error_of_fn_names_its_item(interpreters: concurrent.futures.Executor) -> None:
    def fails_on_three(x: int) -> float:  # a closure: it travels by value
        return 1 / (x - 3)

    with pytest.raises(ZeroDivisionError) as info:
        pmap(fails_on_three, range(6), mode=interpreters, chunksize=2)
    assert any("item 3 of the input" in note for note in getattr(info.value, "__notes__", []))
    got = pmap(fails_on_three, range(6), mode=interpreters, on_error="return")
    assert isinstance(got[3], ZeroDivisionError)
    assert [v for i, v in enumerate(got) if i != 3] == [-1 / 3, -1 / 2, -1.0, 1.0, 0.5]


def test_a_result_that_cannot_cross_is_a_serialization_error(
    interpreters: concurrent.futures.Executor,
) -> None:
    got = pmap(lambda _: threading.Lock(), range(2), mode=interpreters, on_error="return")
    assert all(isinstance(value, SerializationError) for value in got), got


def test_fn_its_interpreters_cannot_import_is_said_so(interpreters: concurrent.futures.Executor) -> None:
    with pytest.raises(SerializationError, match=r"No module named 'test_interpreters' \(.*default sys.path"):
        pmap(from_this_module, range(3), mode=interpreters)
