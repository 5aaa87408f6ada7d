"""The fault matrix: every way an item can fail on its way through a worker process.

Each fault hits one item of a map of 8 items in chunks of 4; with on_error="return" that item
alone gets the error (with its index) and every other item is computed; with on_error="raise"
the error propagates naming the item. Real deaths and real pickling, no mocks. Leak checks
(conftest) follow every test.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import helpers
import pytest
from conftest import make_mode

from parmap import SerializationError, WorkerDiedError, pmap

pytestmark = pytest.mark.process

BAD = 5  # index of the faulty item among 8


def items_with(bad: Any) -> list[Any]:
    return [bad if i == BAD else ("ok", i) for i in range(8)]


# (id, the bad item, expected type, pattern of the message)
FAULTS = [
    (
        "arg-unpicklable-in-caller",
        ("ok", threading.Lock()),
        SerializationError,
        r"item 5 could not be pickled",
    ),
    (
        "arg-systemexit-in-reduce",
        ("ok", helpers.ExitOnPickle()),
        SerializationError,
        r"item 5 could not be pickled",
    ),
    (
        "arg-unpickle-fails-in-worker",
        ("ok", helpers.OnlyInCaller()),
        SerializationError,
        r"unpickled in the worker",
    ),
    ("result-unpicklable-in-worker", ("unpicklable-result", 0), SerializationError, r"result of fn \(lock\)"),
    (
        "result-systemexit-in-reduce",
        ("exit-on-pickle-result", 0),
        SerializationError,
        r"could not be pickled",
    ),
    (
        "result-unpickle-fails-in-caller",
        ("caller-unpicklable-result", 0),
        SerializationError,
        r"unpickled in the caller",
    ),
    (
        "exception-not-rebuildable",
        ("not-rebuildable", 0),
        SerializationError,
        r"NotRebuildableError\(1 and 2\)",
    ),
    ("worker-os-exit", ("exit", 0), WorkerDiedError, r"exit code 3\) while running item 5"),
    ("worker-sigkill-itself", ("kill", 0), WorkerDiedError, r"SIGKILL\) while running item 5"),
    ("worker-segfault", ("segfault", 0), WorkerDiedError, r"SIGSEGV\) while running item 5"),
]


@pytest.mark.parametrize(("bad", "error", "pattern"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_fault_costs_only_its_item(bad: Any, error: type[Exception], pattern: str) -> None:
    got = pmap(helpers.fault, items_with(bad), mode="process", workers=2, chunksize=4, on_error="return")
    check_only_its_item(got, error, pattern)
    assert pmap(helpers.square, range(10), mode="process") == [x * x for x in range(10)]  # all is well after


SERIALIZATION_FAULTS = [f for f in FAULTS if f[2] is SerializationError]


@pytest.mark.parametrize(
    ("bad", "error", "pattern"),
    [f[1:] for f in SERIALIZATION_FAULTS],
    ids=[f[0] for f in SERIALIZATION_FAULTS],
)
def test_fault_costs_only_its_item_on_a_borrowed_process_pool(
    bad: Any, error: type[Exception], pattern: str
) -> None:
    # A worker death breaks a ProcessPoolExecutor for good (a stdlib limit); pickling faults must not.
    with make_mode("process-executor") as executor:
        got = pmap(helpers.fault, items_with(bad), mode=executor, chunksize=4, on_error="return")
        check_only_its_item(got, error, pattern)
        assert pmap(helpers.square, range(5), mode=executor) == [0, 1, 4, 9, 16]


def check_only_its_item(got: list[Any], error: type[Exception], pattern: str) -> None:
    assert len(got) == 8
    assert isinstance(got[BAD], error), got[BAD]
    assert re.search(pattern, str(got[BAD])), str(got[BAD])
    assert any("item 5 of the input" in note for note in got[BAD].__notes__)
    assert [v for i, v in enumerate(got) if i != BAD] == [i for i in range(8) if i != BAD]


@pytest.mark.parametrize(("bad", "error", "pattern"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_fault_raises_naming_the_item(bad: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern) as info:
        pmap(helpers.fault, items_with(bad), mode="process", workers=2, chunksize=4)
    assert any("item 5 of the input" in note for note in info.value.__notes__)


def test_worker_killed_from_outside(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    items = [("ok", i) for i in range(6)]
    items[2] = ("pid-then-sleep", str(marker))
    result: list[Any] = []
    runner = threading.Thread(
        target=lambda: result.extend(
            pmap(helpers.fault, items, mode="process", workers=2, chunksize=1, on_error="return")
        )
    )
    runner.start()
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the item never started"
        time.sleep(0.02)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    runner.join(30)
    assert not runner.is_alive()
    assert isinstance(result[2], WorkerDiedError)
    assert "SIGKILL) while running item 2" in str(result[2])
    assert [v for i, v in enumerate(result) if i != 2] == [0, 1, 3, 4, 5]


@pytest.mark.parametrize("mode", ["serial", "thread"])
def test_serial_and_thread_pickle_nothing(mode: str) -> None:
    lock = threading.Lock()
    got = pmap(helpers.fault, [("ok", lock), ("unpicklable-result", 0)], mode=mode)
    assert got[0] is lock
    assert isinstance(got[1], type(threading.Lock()))
