"""progress= (a real tqdm bar on a captured stream) and max_tasks_per_worker= (workers replaced)."""

from __future__ import annotations

import collections
import io
import sys

import helpers
import pytest
from tqdm import tqdm

from parmap import ProcessAdapter, ThreadAdapter, pmap

MODES = ["serial", "thread", pytest.param("process", marks=pytest.mark.process)]


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    # tqdm's own monitor thread outlives the bars; it is tqdm's, not parmap's: keep it off here.
    monkeypatch.setattr(tqdm, "monitor_interval", 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lazy", [False, True])
def test_progress_bar_counts_items_to_the_total(mode: str, lazy: bool) -> None:
    stream = io.StringIO()
    got = pmap(helpers.square, range(500), mode=mode, lazy=lazy, progress={"file": stream, "mininterval": 0})
    assert list(got) == [x * x for x in range(500)]
    assert "500/500" in stream.getvalue()


def test_progress_with_the_callers_bar_and_unknown_length() -> None:
    stream = io.StringIO()
    with tqdm(file=stream, mininterval=0) as bar:
        got = pmap(helpers.square, iter(range(300)), mode="thread", progress=bar)
        assert bar.n == 300
    assert len(got) == 300
    assert "300" in stream.getvalue()


def test_progress_true_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    pmap(helpers.square, range(50), mode="serial", progress=True)
    assert "50/50" in capsys.readouterr().err


def test_progress_without_tqdm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"parmap\[progress\]"):
        pmap(helpers.square, range(3), mode="process", progress=True)


def test_progress_wrong_type() -> None:
    with pytest.raises(TypeError, match="progress"):
        pmap(helpers.square, range(3), progress="yes")


@pytest.mark.process
def test_process_workers_are_replaced_after_max_tasks() -> None:
    pids = pmap(helpers.pid_of, range(20), mode="process", workers=2, max_tasks_per_worker=3)
    counts = collections.Counter(pids)
    assert max(counts.values()) <= 3
    assert len(counts) >= 7  # 20 items, at most 3 per worker


@pytest.mark.process
def test_max_tasks_caps_even_a_fixed_chunksize() -> None:
    pids = pmap(helpers.pid_of, range(12), mode="process", workers=2, chunksize=10, max_tasks_per_worker=4)
    assert max(collections.Counter(pids).values()) <= 4


def test_threads_are_replaced_after_max_tasks() -> None:
    names = pmap(helpers.thread_name_of, range(30), mode="thread", workers=3, max_tasks_per_worker=5)
    counts = collections.Counter(names)  # names are unique per thread (ids may be reused)
    assert max(counts.values()) <= 5
    assert len(counts) >= 6
    with ThreadAdapter(3, max_tasks_per_worker=5) as pool:
        assert pmap(helpers.square, range(30), mode=pool) == [x * x for x in range(30)]


@pytest.mark.process
def test_a_reusable_pool_recycles_across_calls() -> None:
    with ProcessAdapter(2, max_tasks_per_worker=4) as pool:
        pids = [pid for _ in range(5) for pid in pmap(helpers.pid_of, range(4), mode=pool, chunksize=1)]
    assert max(collections.Counter(pids).values()) <= 4


@pytest.mark.parametrize("adapter", [ThreadAdapter, pytest.param(ProcessAdapter, marks=pytest.mark.process)])
def test_a_chunk_stopped_at_a_failure_counts_only_the_items_that_ran(adapter: type[ThreadAdapter]) -> None:
    with adapter(1, max_tasks_per_worker=10) as pool:
        with pytest.raises(ValueError, match="/") as info:  # a chunk of 10 that stops at its first item
            pmap(helpers.fail_first_with_worker, range(10), mode=pool, chunksize=10)
        # 1 + 9 items: the same worker runs the next call's chunk of 9.
        later = pmap(helpers.fail_first_with_worker, range(1, 10), mode=pool, chunksize=9)
    assert set(later) == {str(info.value)}


@pytest.mark.parametrize("mode", ["serial"])
def test_max_tasks_needs_workers(mode: str) -> None:
    with pytest.raises(ValueError, match="max_tasks_per_worker"):
        pmap(helpers.square, range(3), mode=mode, max_tasks_per_worker=2)
