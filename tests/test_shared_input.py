"""Workers forked from the caller read a list, tuple or range input from their own copy.

The caller then neither pickles the items nor touches them; each worker makes the checks (and,
for anything but plain numbers and strings, the pickle round trip) the pipe would have made.
So every fault behaves as when the items travel: the fault matrix of test_faults.py runs here
through that path. Cheap items run in blocks with one progress mark each; a worker death inside
a block is narrowed down by running the block's items again one at a time.

The fork-from-the-caller path needs a caller that runs a single thread, which pytest's process
is not: those checks run in a script.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parmap import Chunk, Job, SerializationError, WorkerDiedError, pmap, run_chunk
from parmap._chunk import SharedItems, inherited_chunk

TESTS = Path(__file__).parent


def test_shared_items_is_a_read_only_view() -> None:
    view = SharedItems(list(range(10)), 2, 7)
    assert len(view) == 5
    assert list(view) == [2, 3, 4, 5, 6]
    assert (view[0], view[-1]) == (2, 6)
    with pytest.raises(IndexError):
        view[5]
    part = view[1:3]
    assert isinstance(part, SharedItems)
    assert list(part) == [3, 4]
    assert list(view[::2]) == [2, 4, 6]
    assert list(view[4:1]) == []
    assert pickle.loads(pickle.dumps(view)) == [2, 3, 4, 5, 6]  # noqa: S301 - it travels as its items
    assert list(SharedItems(range(100), 10, 13)) == [10, 11, 12]


def test_plain_items_are_used_in_place_and_others_are_copies() -> None:
    plain: list[Any] = [1, 2.5, "three", b"four", None, True, 3j]
    chunk = inherited_chunk(plain, 1, 5)
    assert chunk.start == 1
    assert all(a is b for a, b in zip(chunk.items, plain[1:6], strict=True))
    nested = [[0], [1], [2]]
    chunk = inherited_chunk(tuple(nested), 0, 3)
    assert list(chunk.items) == nested
    assert all(a is not b for a, b in zip(chunk.items, nested, strict=True))  # as if pickled


def test_a_range_needs_no_check() -> None:
    chunk = inherited_chunk(range(3, 100, 3), 2, 4)
    assert (chunk.start, chunk.items) == (2, [9, 12, 15, 18])


def test_an_unpicklable_item_fails_as_if_it_had_travelled() -> None:
    with pytest.raises(SerializationError, match="item 7 could not be pickled") as info:
        inherited_chunk([0, 1, 2, 3, 4, 5, 6, threading.Lock(), 8], 5, 3)
    assert info.value.position == 2


@given(
    size=st.integers(0, 3000),
    bad=st.sets(st.integers(0, 2999), max_size=4),
    keep_going=st.booleans(),
)
def test_marked_blocks_give_what_the_plain_loop_gives(size: int, bad: set[int], keep_going: bool) -> None:
    job = Job(_fail_on_set, star=True, keep_going=keep_going)
    chunk = Chunk(0, [(i, frozenset(bad)) for i in range(size)])
    marks = [0, 0, 0]
    plain = run_chunk(job, chunk)
    marked = run_chunk(job, chunk, progress=marks, slot=1)
    assert _shape(marked.values) == _shape(plain.values)
    assert sorted(marked.failed) == sorted(plain.failed)
    assert marks[1:] == [len(marked.values), 0]  # done: every item that ran, and no block running


def _fail_on_set(x: int, bad: frozenset[int]) -> int:
    if x in bad:
        raise ValueError(x)
    return x


def _shape(values: list[Any]) -> list[Any]:
    return [repr(v) if isinstance(v, BaseException) else v for v in values]


def _exit_on(x: int) -> int:
    if x == 3000:
        os._exit(5)
    return x


@pytest.mark.process
def test_a_death_among_cheap_items_names_the_item() -> None:
    got = pmap(_exit_on, range(5000), mode="process", workers=2, on_error="return")
    assert isinstance(got[3000], WorkerDiedError)
    assert "while running item 3000" in str(got[3000])
    # What the caller reads is the input index; the offset in its chunk stays inside parmap.
    assert got[3000].index == 3000
    assert "position" not in vars(got[3000])
    assert "span" not in vars(got[3000])
    assert [v for i, v in enumerate(got) if i != 3000] == [i for i in range(5000) if i != 3000]


SCRIPT = """
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
import helpers
from test_faults import FAULTS, items_with
from parmap import ProcessAdapter, pmap

def pid_of(x):
    return os.getpid()

class Where:
    # Writes the pid of the process that pickles it.
    def __init__(self, path):
        self.path = path
    def __reduce__(self):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return Where, (self.path,)

def path_of(w):
    return w.path

def mutate(x):
    x.append("worker")
    return len(x)

def once_on(item):
    # Dies the first time it meets item 3000, then works: a worker killed from outside.
    x, marker = item
    if x == 3000 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return x

def nap(x):
    time.sleep(0.002)
    if x % 17 == 16:
        raise ValueError(x)
    return x

def slow_start(x):
    # The first items outlast the 10 ms budget of the first part: it comes back unfinished.
    if x < 3:
        time.sleep(0.02)
    return os.getpid()

FORKS = [0]
DOOMED = {}  # which fork of the next map dies before its worker starts, and after how long

def count_fork():
    FORKS[0] += 1

def maybe_die():
    if FORKS[0] == DOOMED.get("fork"):
        time.sleep(DOOMED["after"])
        os._exit(3)

class Recording(ProcessAdapter):
    # Notes each part it is given: (start, size, budget).
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.parts = []
    def submit(self, job, chunk):
        self.parts.append((chunk.start, len(chunk.items), chunk.budget))
        return super().submit(job, chunk)

def inputs(tmp):
    return {
        "list": pmap(helpers.square, list(range(50_000)), workers=2) == [x * x for x in range(50_000)],
        "tuple": pmap(helpers.square, tuple(range(9)), workers=2, chunksize=2),
        "range": pmap(helpers.square, range(3, 40_000, 7), workers=2)
        == [x * x for x in range(3, 40_000, 7)],
        "star": pmap(helpers.add, [(1, 2), (3, 4)] * 500, workers=2, star=True) == [3, 7] * 500,
    }

def copies(tmp):
    pickled_in = os.path.join(tmp, "pickled")
    where = pmap(path_of, [Where(pickled_in)] * 6, workers=2, chunksize=2)
    mine = [[i] for i in range(6)]
    mutated = pmap(mutate, mine, workers=2)
    pickled_by = sorted(set(int(p) for p in open(pickled_in).read().split()))
    return {"where": where, "pickled_by": pickled_by, "mutated": mutated, "mine": mine}

def faults(tmp):
    out = {}
    for name, bad, error, pattern in FAULTS:
        got = pmap(helpers.fault, items_with(bad), workers=2, chunksize=4, on_error="return")
        v = got[5]
        notes = getattr(v, "__notes__", [])
        out[name] = [type(v).__name__, str(v), notes, [x for i, x in enumerate(got) if i != 5]]
    return out

def died_once(tmp):
    marker = os.path.join(tmp, "died-once")
    # One chunk: item 3000 runs in a block of 1024 (blocks double from 1 while they take < 1 ms).
    got = pmap(once_on, [(i, marker) for i in range(5000)], workers=2, chunksize=5000)
    return got == list(range(5000))

def budget(tmp):
    # Items of 2 ms: the first chunks (even shares, 10 ms budget) come back unfinished.
    pool = Recording(2)
    got = pmap(nap, range(60), mode=pool, on_error="return")
    out = {"values": [repr(v) if isinstance(v, ValueError) else v for v in got], "parts": pool.parts}
    try:
        pmap(nap, range(60), workers=2)
    except ValueError as exc:
        out["raised"] = str(exc)
    return out

def recycled(tmp):
    # max_tasks_per_worker counts the items a worker ran, not the size of the part it was sent.
    pool = Recording(1, max_tasks_per_worker=100)
    return {"pids": len(set(pmap(slow_start, range(100), mode=pool))), "parts": pool.parts}

def died_at_start(tmp, after):
    # A worker that dies before it starts (here: in an at-fork hook) never ran the part it was
    # sent ahead of its "ready": another worker runs it. At once: the other is still starting;
    # after 0.3 s: the other has finished its part and left (the input was all sent).
    os.register_at_fork(before=count_fork, after_in_child=maybe_die)
    DOOMED.update(fork=2, after=after)
    try:
        return pmap(helpers.square, list(range(2000)), workers=2) == [x * x for x in range(2000)]
    except Exception as exc:
        return repr(exc)

SCENARIOS = {
    "inputs": inputs,
    "copies": copies,
    "faults": faults,
    "died_once": died_once,
    "budget": budget,
    "recycled": recycled,
    "died_at_start_now": lambda tmp: died_at_start(tmp, 0.0),
    "died_at_start_later": lambda tmp: died_at_start(tmp, 0.3),
}

if __name__ == "__main__":
    got = SCENARIOS[sys.argv[3]](sys.argv[2])
    print(json.dumps({"me": os.getpid(), "got": got, "threads": threading.active_count()}))
"""


fork_first = pytest.mark.skipif(
    sys.platform != "linux", reason="workers are forked from the caller only on Linux"
)


def run_scenario(name: str, tmp_path: Path) -> tuple[Any, str]:
    """Run one of SCRIPT's scenarios in a fresh single-threaded interpreter: what it got, its stderr."""
    script = tmp_path / "shared.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PARMAP_START_METHOD"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, str(script), str(TESTS), str(tmp_path), name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["threads"] == 1, "a thread was left behind"
    return out, result.stderr


@pytest.mark.process
@fork_first
@pytest.mark.parametrize("kind", ["list", "tuple", "range", "star"])
def test_forked_workers_read_each_kind_of_input_from_their_copy(kind: str, tmp_path: Path) -> None:
    out, _ = run_scenario("inputs", tmp_path)
    assert out["got"][kind] == ([x * x for x in range(9)] if kind == "tuple" else True)


@pytest.mark.process
@fork_first
def test_items_that_are_not_plain_are_pickled_by_the_workers_only(tmp_path: Path) -> None:
    out, _ = run_scenario("copies", tmp_path)
    assert out["got"]["where"] == [str(tmp_path / "pickled")] * 6
    assert out["me"] not in out["got"]["pickled_by"]


@pytest.mark.process
@fork_first
def test_workers_change_their_own_copy_of_the_input(tmp_path: Path) -> None:
    out, _ = run_scenario("copies", tmp_path)
    assert out["got"]["mutated"] == [2] * 6
    assert out["got"]["mine"] == [[i] for i in range(6)]


@pytest.mark.process
@fork_first
def test_the_fault_matrix_holds_for_input_the_workers_hold(tmp_path: Path) -> None:
    from test_faults import FAULTS  # noqa: PLC0415 - the same matrix, through this path

    out, _ = run_scenario("faults", tmp_path)
    for name, _, error, pattern in FAULTS:
        kind, message, notes, others = out["got"][name]
        assert kind == error.__name__, (name, message)
        assert re.search(pattern, message), (name, message)
        assert any("item 5 of the input" in note for note in notes), (name, notes)
        assert others == [i for i in range(8) if i != 5], name


@pytest.mark.process
@fork_first
def test_a_death_that_does_not_come_again_runs_the_items_again_one_at_a_time(tmp_path: Path) -> None:
    out, stderr = run_scenario("died_once", tmp_path)
    assert out["got"] is True
    assert re.search(r"died \(exit code 9\) while running one of items \d+\.\.\d+", stderr)
    assert "running those items again one at a time" in stderr


@pytest.mark.process
@fork_first
def test_a_part_past_its_budget_comes_back_unfinished_and_its_rest_runs_anew(tmp_path: Path) -> None:
    out, _ = run_scenario("budget", tmp_path)
    got = out["got"]
    assert got["values"] == [repr(ValueError(x)) if x % 17 == 16 else x for x in range(60)]
    parts = got["parts"]
    assert parts[:4] == [[0, 15, 0.01], [15, 11, 0.01], [26, 8, 0.01], [34, 6, 0.01]]
    rests = [p for p in parts[4:] if any(s < p[0] < s + n for s, n, _ in parts[:4])]
    assert rests, parts
    assert all(budget == 0.1 for _, _, budget in rests)
    assert got["raised"] == "16"


@pytest.mark.process
@fork_first
def test_max_tasks_per_worker_counts_the_items_that_ran(tmp_path: Path) -> None:
    # 100 items for a worker allowed 100: one worker ran them all, unfinished parts included.
    out, _ = run_scenario("recycled", tmp_path)
    assert any(start == 1 for start, _, _ in out["got"]["parts"]), out["got"]["parts"]
    assert out["got"]["pids"] == 1, out["got"]["parts"]


@pytest.mark.process
@fork_first
@pytest.mark.parametrize("when", ["now", "later"])
def test_a_part_sent_to_a_worker_that_died_at_start_runs_on_another(when: str, tmp_path: Path) -> None:
    out, stderr = run_scenario(f"died_at_start_{when}", tmp_path)
    assert out["got"] is True
    assert "failed to start" not in stderr  # its chunk went to another worker, as it was
