"""journal= and key=: results recorded as they come; a map run again skips what is done."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import Executor
from pathlib import Path

import helpers
import pytest
import retry_fns

from parmap import Journal, JournalError, SerializationError, pmap

ITEMS = 30


def _run(
    mode: str | Executor, folder: Path, journal: Path, items: int = ITEMS, **options: object
) -> list[object]:
    return pmap(  # type: ignore[call-overload, no-any-return]
        retry_fns.counted,
        [(x, str(folder)) for x in range(items)],
        mode=mode,
        journal=journal,
        on_error="return",
        **options,
    )


def _same(got: list[object], expected: list[object]) -> bool:
    """Results equal, an exception standing for an exception of the same type and message."""
    return len(got) == len(expected) and all(
        (type(g), str(g)) == (type(e), str(e)) if isinstance(e, BaseException) else g == e
        for g, e in zip(got, expected, strict=True)
    )


def test_a_map_run_again_runs_only_what_is_not_done(mode: str | Executor, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    calls = tmp_path / "calls"
    calls.mkdir()
    first = _run(mode, calls, journal)
    assert retry_fns.calls_of(str(calls)) == list(range(ITEMS))
    second = _run(mode, calls, journal)
    assert _same(second, first)
    failing = [x for x in range(ITEMS) if x % 10 == 7]
    # Only the failures ran again: done items were never sent to a worker.
    assert retry_fns.calls_of(str(calls)) == sorted([*range(ITEMS), *failing])
    record = Journal(journal)
    assert record.done == ITEMS - len(failing)
    assert [f.input_index for f in record.failures] == failing
    assert record.failures[0].type == "ValueError"
    assert record.failures[0].message == "item 7 fails"
    assert "ValueError: item 7 fails" in record.failures[0].traceback


def test_lazy_indexed_unordered_maps_and_callbacks_see_recorded_results(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    _run("thread", tmp_path, journal)
    seen: list[object] = []
    got = pmap(
        retry_fns.counted,
        [(x, str(tmp_path)) for x in range(ITEMS)],
        mode="thread",
        journal=journal,
        on_error="return",
        lazy=True,
        indexed=True,
        ordered=False,
        callback=seen.append,
    )
    pairs = dict(got)  # type: ignore[arg-type]
    assert sorted(pairs) == list(range(ITEMS))
    assert all(pairs[x] == x * x for x in range(ITEMS) if x % 10 != 7)
    assert len(seen) == ITEMS


def test_items_are_matched_by_key_when_the_input_changes(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    calls = tmp_path / "calls"
    calls.mkdir()
    first = [(x, str(calls)) for x in range(10)]
    pmap(
        retry_fns.counted, first, mode="thread", journal=journal, key=lambda item: item[0], on_error="return"
    )
    # Another order, two items gone, two new ones: only the new ones (and the failure) run.
    changed = [(x, str(calls)) for x in [11, 9, 8, 7, 6, 5, 4, 3, 10]]
    got = pmap(
        retry_fns.counted,
        changed,
        mode="thread",
        journal=journal,
        key=lambda item: item[0],
        on_error="return",
    )
    assert [g for g in got if not isinstance(g, Exception)] == [121, 81, 64, 36, 25, 16, 9, 100]
    assert retry_fns.calls_of(str(calls)) == sorted([*range(10), 11, 7, 10])


def test_a_journal_of_another_map_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    _run("serial", tmp_path, journal, items=5)
    before = Journal(journal).done
    with pytest.raises(JournalError, match=r"run\.sqlite.*made by a map of .*counted, not of .*square"):
        pmap(helpers.square, range(5), mode="serial", journal=journal)
    with pytest.raises(JournalError, match="matches items by input index, this map by key"):
        pmap(retry_fns.counted, [(0, str(tmp_path))], mode="serial", journal=journal, key=str)
    assert Journal(journal).done == before


def test_two_running_maps_on_one_journal_are_refused(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    running = pmap(helpers.square, range(100), mode="thread", journal=journal, lazy=True)
    assert next(running) == 0  # it holds the journal now
    with pytest.raises(JournalError, match="in use by another running map"):
        pmap(helpers.square, range(100), mode="thread", journal=journal)
    assert list(running) == [x * x for x in range(1, 100)]
    assert pmap(helpers.square, range(100), mode="thread", journal=journal) == [x * x for x in range(100)]


@pytest.mark.parametrize("content", [b"not a database at all " * 100, b""])
def test_a_damaged_file_is_refused_and_left_as_it_was(tmp_path: Path, content: bytes) -> None:
    journal = tmp_path / "run.sqlite"
    journal.write_bytes(content)
    if content:
        with pytest.raises(JournalError, match=r"run\.sqlite.*cannot be opened as a parmap journal"):
            pmap(helpers.square, range(3), mode="serial", journal=journal)
        assert journal.read_bytes() == content
    else:  # an empty file is a new journal (SQLite's own empty database)
        assert pmap(helpers.square, range(3), mode="serial", journal=journal) == [0, 1, 4]


def test_an_sqlite_file_that_is_no_journal_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE mine (x INTEGER)")
    conn.close()
    with pytest.raises(JournalError, match="not a parmap journal"):
        pmap(helpers.square, range(3), mode="serial", journal=other)


def test_a_result_that_cannot_be_recorded_fails_its_item_only(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    got = pmap(retry_fns.a_lock, range(3), mode="thread", journal=journal, on_error="return")
    assert all(isinstance(value, SerializationError) for value in got)
    assert "cannot be recorded in the journal" in str(got[0])
    record = Journal(journal)
    assert record.done == 0
    assert [f.type for f in record.failures] == ["SerializationError"] * 3


def test_retries_record_only_the_final_failure(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    got = pmap(
        retry_fns.fails_before_try,
        [(0, 5), (1, 2)],
        mode="thread",
        journal=journal,
        retries=1,
        retry_delay=0,
        on_error="return",
    )
    assert isinstance(got[0], ConnectionError)
    assert got[1] == (1, 2)
    record = Journal(journal)
    assert record.done == 1
    assert [(f.input_index, f.message) for f in record.failures] == [(0, "item 0: try 2 failed")]


KILLED = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import retry_fns
    from parmap import pmap

    def slow(item):
        x, folder = item
        if x == 40 and os.environ.get("KILL_AT_40"):
            os.kill(os.getpid(), signal.SIGKILL)  # the caller dies mid-map (serial: fn runs in it)
        time.sleep(0.03)
        return retry_fns.counted(item)

    if __name__ == "__main__":
        folder, journal = sys.argv[1], sys.argv[2]
        got = pmap(slow, [(x, folder) for x in range(60)], mode="serial", journal=journal, on_error="return")
        print(sum(v for v in got if isinstance(v, int)))
    """
)


def test_a_map_whose_caller_was_killed_resumes_where_its_journal_ends(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    shutil.copy(Path(retry_fns.__file__), tmp_path / "retry_fns.py")
    calls, journal = tmp_path / "calls", tmp_path / "run.sqlite"
    calls.mkdir()
    env = {**os.environ, "KILL_AT_40": "1"}
    killed = helpers.run_script(script, calls, journal, env=env)
    assert killed.returncode == -signal.SIGKILL
    done = {index for index, _ in Journal(journal).results()}  # what survived the kill
    assert done  # 40 items of 30 ms: at least one batch was written (every 0.5 s)
    before = retry_fns.calls_of(str(calls))
    resumed = helpers.run_script(script, calls, journal)
    assert resumed.returncode == 0, resumed.stderr
    expected = sum(x * x for x in range(60) if x % 10 != 7)
    assert int(resumed.stdout) == expected
    again = retry_fns.calls_of(str(calls))
    for x in before:
        again.remove(x)
    assert not set(again) & done  # nothing recorded as done ran again
    assert sorted(set(again) | done) == list(range(60))


def test_python_m_parmap_tells_what_a_journal_holds(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    _run("serial", tmp_path, journal, items=10)
    out = subprocess.run(
        [sys.executable, "-m", "parmap", str(journal)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "done: 9; failed: 1" in out.stdout
    assert "item 7 (7): ValueError: item 7 fails" in out.stdout
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"x" * 1000)
    out = subprocess.run(
        [sys.executable, "-m", "parmap", str(bad)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 1
    assert "bad.sqlite" in out.stderr


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"journal": 5}, TypeError, "journal must be a file path"),
        ({"key": str}, ValueError, "key= matches items .* needs journal=PATH"),
        ({"journal": "x.sqlite", "key": 3}, TypeError, "key must be callable"),
    ],
)
def test_bad_journal_options_are_refused_before_anything_starts(
    options: dict[str, object], error: type[Exception], match: str, tmp_path: Path
) -> None:
    os.chdir(tmp_path)
    with pytest.raises(error, match=match):
        pmap(abs, [1], mode="process", **options)  # type: ignore[call-overload]
    assert not (tmp_path / "x.sqlite").exists()
