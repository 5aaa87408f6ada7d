"""The driver (``_driver.py``) against a scripted adapter: no workers, every step decided by the test.

``ScriptedAdapter.submit`` runs nothing: it records the chunk and its future. A script chooses
when and how each chunk completes (ran in full, only its first items, its worker died, never).
The script runs right after the driver subscribed to the new future (``add_done_callback``),
so a completion made there reaches the driver's queue in exactly the order the script chose.
Every completion reports 0 s elapsed, so automatic chunk sizes are deterministic too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Literal

import pytest

from parmap import WorkerDiedError, pmap
from parmap._adapters import Adapter
from parmap._chunk import Chunk
from parmap._job import Job
from parmap._result import ChunkResult
from parmap._worker import run_chunk


def tenfold(x: int) -> int:
    return 10 * x


def fails_on_13(x: int) -> int:
    if x == 13:
        raise ValueError("bad item 13")
    return 10 * x


class Sent:
    """One ``submit``: the part of the input it carries and the future the driver waits on."""

    def __init__(self, adapter: ScriptedAdapter, job: Job, chunk: Chunk) -> None:
        self.adapter, self.job, self.chunk = adapter, job, chunk
        self.future = _ScriptedFuture()

    @property
    def part(self) -> tuple[int, list[Any]]:
        return self.chunk.start, list(self.chunk.items)

    def run(self, first: int | None = None) -> None:
        """Run the chunk (only its ``first`` items: a part that came back short) in this thread."""
        chunk = self.chunk if first is None else Chunk(self.chunk.start, list(self.chunk.items)[:first])
        result = run_chunk(self.job, chunk)
        result.elapsed = 0.0
        self.adapter.log.append(("done", self.chunk.start))
        self.future.set_result(result)  # (raises if the driver cancelled it: no test expects that)

    def die(self, position: int | None) -> None:
        """Fail the future as ``WorkerHandle.death_error`` does: ``position`` within this part."""
        item = "one of its items" if position is None else f"item {self.chunk.start + position}"
        error = WorkerDiedError(f"a worker process (pid 0) died (SIGKILL) while running {item}")
        error.position = position
        self.adapter.log.append(("died", self.chunk.start))
        self.future.set_exception(error)


Script = Callable[["ScriptedAdapter", Sent], None]


class _ScriptedFuture(Future[ChunkResult]):
    hook: Callable[[], None] | None = None

    def add_done_callback(self, fn: Callable[[Future[ChunkResult]], object]) -> None:
        super().add_done_callback(fn)
        hook, self.hook = self.hook, None
        if hook is not None:  # the driver has subscribed: the script may complete it now
            hook()


def run_each(_: ScriptedAdapter, sent: Sent) -> None:
    sent.run()


class ScriptedAdapter(Adapter):
    """Records every call in ``log`` and every chunk in ``sent``; ``script`` completes them."""

    def __init__(self, workers: int = 2, script: Script = run_each) -> None:
        self._workers = workers
        self._running = False
        self.script = script
        self.sent: list[Sent] = []
        self.log: list[tuple[Any, ...]] = []

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        assert not self._running
        self.log.append(("start",))
        self._running = True

    def expect(self, chunks: int | None) -> None:
        self.log.append(("expect", chunks))

    def drain(self) -> None:
        self.log.append(("drain",))

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        self.log.append(("shutdown", wait, cancel))
        self._running = False

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        assert self._running
        sent = Sent(self, job, chunk)
        self.sent.append(sent)
        self.log.append(("submit", chunk.start, len(chunk.items)))
        start = chunk.start
        sent.future.add_done_callback(lambda f: f.cancelled() and self.log.append(("cancel", start)))
        sent.future.hook = lambda: self.script(self, sent)
        return sent.future

    def pending(self) -> list[Sent]:
        return [s for s in self.sent if not s.future.done()]

    def events(self, *kinds: str) -> list[tuple[Any, ...]]:
        return [e for e in self.log if e[0] in kinds]


def when_pending(count: int, order: Sequence[int]) -> Script:
    """Once ``count`` chunks are pending, run them all, in ``order`` (positions among them)."""

    def script(adapter: ScriptedAdapter, _: Sent) -> None:
        pending = adapter.pending()
        if len(pending) == count:
            for i in order:
                pending[i].run()

    return script


def by_part(actions: dict[tuple[int, int], Callable[[Sent], None]]) -> Script:
    """Complete the part at ``(start, size)`` with its action, any other part in full at once."""

    def script(_: ScriptedAdapter, sent: Sent) -> None:
        actions.get((sent.chunk.start, len(sent.chunk.items)), Sent.run)(sent)

    return script


ORDERS = [pytest.param([3, 2, 1, 0], id="reverse"), pytest.param([2, 0, 3, 1], id="shuffled")]


# --- order ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("indexed", [False, True])
def test_ordered_results_come_in_input_order_whatever_the_completion_order(
    order: list[int], indexed: bool
) -> None:
    adapter = ScriptedAdapter(workers=2, script=when_pending(4, order))
    got = pmap(tenfold, range(12), mode=adapter, chunksize=3, indexed=indexed)
    expected = [tenfold(x) for x in range(12)]
    assert got == (list(enumerate(expected)) if indexed else expected)
    assert adapter.events("done") == [("done", 3 * i) for i in order]  # the script did reorder


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("indexed", [False, True])
def test_unordered_results_come_in_completion_order(order: list[int], indexed: bool) -> None:
    adapter = ScriptedAdapter(workers=2, script=when_pending(4, order))
    got = pmap(tenfold, range(12), mode=adapter, chunksize=3, ordered=False, indexed=indexed)
    done = [x for i in order for x in range(3 * i, 3 * i + 3)]
    assert got == [(x, tenfold(x)) if indexed else tenfold(x) for x in done]


class HoldFirstUntilDrain(ScriptedAdapter):
    def drain(self) -> None:
        super().drain()
        self.sent[0].run()


def test_a_list_map_does_not_let_a_late_chunk_hold_up_the_others() -> None:
    # Finished chunks waiting for chunk 0 leave the window: every result is kept anyway.
    adapter = HoldFirstUntilDrain(workers=1, script=lambda _, s: s.run() if s.chunk.start else None)
    assert pmap(tenfold, range(6), mode=adapter, chunksize=1) == list(map(tenfold, range(6)))
    steps = [("submit", 0, 1)] + [e for x in range(1, 6) for e in (("submit", x, 1), ("done", x))]
    assert adapter.events("submit", "done", "drain") == [*steps, ("drain",), ("done", 0)]


# --- parts: a chunk that came back short, a chunk whose worker died ---------------------------------


@pytest.mark.parametrize("on_error", ["raise", "return"])
def test_the_rest_of_a_part_that_came_back_short_is_sent_again(on_error: Literal["raise", "return"]) -> None:
    adapter = ScriptedAdapter(workers=1, script=by_part({(0, 5): lambda s: s.run(2)}))
    got = pmap(tenfold, range(10), mode=adapter, chunksize=5, on_error=on_error)
    assert got == list(map(tenfold, range(10)))
    assert [s.part for s in adapter.sent] == [(0, [0, 1, 2, 3, 4]), (5, [5, 6, 7, 8, 9]), (2, [2, 3, 4])]
    assert adapter.sent[2].chunk.budget == 0.0  # no time budget on a map whose workers get items


def test_a_resent_part_that_comes_back_short_is_sent_again_from_where_it_stopped() -> None:
    script = by_part({(0, 5): lambda s: s.run(2), (2, 3): lambda s: s.run(1)})
    adapter = ScriptedAdapter(workers=1, script=script)
    assert pmap(tenfold, range(10), mode=adapter, chunksize=5) == list(map(tenfold, range(10)))
    assert [s.part for s in adapter.sent][2:] == [(2, [2, 3, 4]), (3, [3, 4])]


def test_a_death_in_a_resent_part_names_the_item_by_its_input_index() -> None:
    script = by_part({(0, 4): lambda s: s.run(1), (1, 3): lambda s: s.die(1)})
    adapter = ScriptedAdapter(workers=1, script=script)
    got = pmap(tenfold, range(8), mode=adapter, chunksize=4, on_error="return")
    assert isinstance(got[2], WorkerDiedError)
    assert got[2].index == 2
    assert got[:2] + got[3:] == [tenfold(x) for x in (0, 1, 3, 4, 5, 6, 7)]
    assert [s.part for s in adapter.sent][2:] == [(1, [1, 2, 3]), (1, [1]), (3, [3])]


def test_return_puts_a_death_in_its_items_place_and_reruns_the_others() -> None:
    adapter = ScriptedAdapter(workers=1, script=by_part({(4, 4): lambda s: s.die(2)}))
    got = pmap(tenfold, range(8), mode=adapter, chunksize=4, on_error="return")
    error = got[6]
    assert isinstance(error, WorkerDiedError)
    assert error.index == 6
    assert "position" not in vars(error)  # an adapter's offset never reaches the caller
    assert error.__notes__ == ["parmap: raised on item 6 of the input: 6"]
    assert got[:6] + got[7:] == [tenfold(x) for x in (0, 1, 2, 3, 4, 5, 7)]
    assert [s.part for s in adapter.sent][2:] == [(4, [4, 5]), (7, [7])]


def test_raise_stops_at_a_death_after_the_items_before_it() -> None:
    adapter = ScriptedAdapter(workers=1, script=by_part({(4, 4): lambda s: s.die(2)}))
    got: list[int] = []
    with pytest.raises(WorkerDiedError) as info:
        got.extend(pmap(tenfold, range(8), mode=adapter, chunksize=4, lazy=True))
    assert info.value.index == 6
    assert got == [tenfold(x) for x in range(6)]
    assert [s.part for s in adapter.sent][2:] == [(4, [4, 5])]  # item 7 is not run again
    assert adapter.log[-1] == ("shutdown", False, True)


def test_a_death_that_names_no_item_reruns_its_items_one_at_a_time() -> None:
    adapter = ScriptedAdapter(workers=1, script=by_part({(4, 4): lambda s: s.die(None)}))
    assert pmap(tenfold, range(8), mode=adapter, chunksize=4) == list(map(tenfold, range(8)))
    assert [s.part for s in adapter.sent][2:] == [(4, [4]), (5, [5]), (6, [6]), (7, [7])]


# --- a failure with on_error="raise" ends the map --------------------------------------------------


def test_ordered_failure_cancels_later_chunks_and_submits_no_more() -> None:
    # Chunks of 3, six in flight (3 workers): item 13 fails in chunk 4 (12..14), which completes first.
    def script(adapter: ScriptedAdapter, _: Sent) -> None:
        if len(adapter.sent) == 6:
            adapter.sent[4].run()
            adapter.sent[0].run()

    adapter = ScriptedAdapter(workers=3, script=script)
    it = pmap(fails_on_13, range(100), mode=adapter, chunksize=3, lazy=True)
    assert next(it) == 0
    assert [s.future.cancelled() for s in adapter.sent] == [False] * 5 + [True]  # only what follows
    for sent in adapter.sent[1:4]:  # chunks before the failure are still awaited, then delivered
        sent.run()
    rest: list[int] = []
    with pytest.raises(ValueError, match="bad item 13") as info:
        rest.extend(it)
    assert rest == [tenfold(x) for x in range(1, 13)]
    assert info.value.__notes__ == ["parmap: raised on item 13 of the input: 13"]
    assert len(adapter.sent) == 6  # the window had room, but no more input was read
    assert adapter.events("cancel", "shutdown") == [("cancel", 15), ("shutdown", False, True)]


def test_unordered_failure_ends_the_map_at_once_and_cancels_the_rest() -> None:
    adapter = ScriptedAdapter(workers=3, script=lambda _, s: s.run() if s.chunk.start == 12 else None)
    it = pmap(fails_on_13, range(100), mode=adapter, chunksize=3, ordered=False, lazy=True)
    assert next(it) == 120
    with pytest.raises(ValueError, match="bad item 13"):
        next(it)
    assert len(adapter.sent) == 6
    cancelled = [("cancel", start) for start in (0, 3, 6, 9, 15)]
    assert adapter.events("cancel", "shutdown") == [*cancelled, ("shutdown", False, True)]


# --- the window ------------------------------------------------------------------------------------


def test_a_lazy_map_keeps_at_most_two_chunks_per_worker_in_flight() -> None:
    produced = consumed = 0
    in_flight: list[int] = []

    def endless() -> Iterator[int]:
        nonlocal produced
        for x in itertools.count():
            produced += 1
            yield x

    def script(adapter: ScriptedAdapter, sent: Sent) -> None:
        # The driver runs only once the results of the chunks it delivered were all consumed.
        in_flight.append(len(adapter.sent) - consumed // 3)
        assert produced == 3 * len(adapter.sent)  # read exactly what the chunks hold, no more
        when_pending(6, range(5, -1, -1))(adapter, sent)

    adapter = ScriptedAdapter(workers=3, script=script)
    it = pmap(tenfold, endless(), mode=adapter, chunksize=3, lazy=True)
    for x in range(40):
        assert next(it) == tenfold(x)
        consumed += 1
    it.close()
    assert max(in_flight) == 6  # 2 x workers, reached and never passed
    assert len(in_flight) == len(adapter.sent) == 18
    assert produced == 54
    assert ("drain",) not in adapter.log  # an endless input is never exhausted
    assert adapter.log[-1] == ("shutdown", False, True)


# --- hints and the adapter's life --------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 12])
def test_drain_comes_once_after_the_whole_input_was_submitted(size: int) -> None:
    adapter = ScriptedAdapter(workers=2, script=when_pending(4, [3, 2, 1, 0]))
    assert pmap(tenfold, range(size), mode=adapter, chunksize=3) == list(map(tenfold, range(size)))
    kinds = [e[0] for e in adapter.log]
    assert kinds.count("drain") == 1
    last_submit = max(i for i, kind in enumerate(kinds) if kind == "submit")
    assert last_submit < kinds.index("drain") < kinds.index("shutdown")
    assert adapter.log[-1] == ("shutdown", True, False)


@pytest.mark.parametrize(
    ("items", "chunksize", "hint"),
    [(list(range(10)), 3, 4), (list(range(10)), None, 10), (iter(range(10)), 3, None)],
    ids=["sized-fixed", "sized-auto", "unsized"],
)
def test_expect_gets_the_chunk_count_before_start(
    items: Any, chunksize: int | None, hint: int | None
) -> None:
    adapter = ScriptedAdapter()
    pmap(tenfold, items, mode=adapter, chunksize=chunksize)
    assert adapter.log[:2] == [("expect", hint), ("start",)]


def test_a_running_adapter_is_used_without_hints_and_left_running() -> None:
    adapter = ScriptedAdapter()
    with adapter:
        assert pmap(tenfold, range(10), mode=adapter, chunksize=3) == list(map(tenfold, range(10)))
        assert adapter.running
        assert adapter.events("start", "expect", "drain", "shutdown") == [("start",)]
    assert adapter.log[-1] == ("shutdown", True, False)


# --- ways out -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "del"])
def test_leaving_a_lazy_map_early_cancels_what_is_in_flight(how: str) -> None:
    adapter = ScriptedAdapter(workers=2, script=lambda _, s: s.run() if s.chunk.start == 0 else None)
    it = pmap(tenfold, itertools.count(), mode=adapter, chunksize=1, lazy=True)
    assert next(it) == 0
    assert len(adapter.pending()) == 3
    if how == "close":
        it.close()
    else:
        del it  # the last reference: the generator is finalized at once
    assert not adapter.running
    assert adapter.log[-4:] == [("cancel", 1), ("cancel", 2), ("cancel", 3), ("shutdown", False, True)]
    assert ("drain",) not in adapter.log


def test_an_input_that_raises_ends_the_map_and_shuts_down() -> None:
    def broken() -> Iterator[int]:
        yield from range(5)
        raise RuntimeError("the input broke")

    adapter = ScriptedAdapter(workers=1, script=lambda _, s: s.run() if s.chunk.start == 0 else None)
    with pytest.raises(RuntimeError, match="the input broke"):
        pmap(tenfold, broken(), mode=adapter, chunksize=2)
    assert adapter.sent[1].future.cancelled()
    assert adapter.log[-2:] == [("cancel", 2), ("shutdown", False, True)]
    assert not adapter.running


# --- chunk sizes ---------------------------------------------------------------------------------


def test_an_explicit_chunksize_is_used_exactly() -> None:
    adapter = ScriptedAdapter()
    assert pmap(tenfold, range(10), mode=adapter, chunksize=4) == list(map(tenfold, range(10)))
    assert adapter.events("submit") == [("submit", 0, 4), ("submit", 4, 4), ("submit", 8, 2)]


class CappedAdapter(ScriptedAdapter):
    max_chunk = 3


@pytest.mark.parametrize("chunksize", [None, 5])
def test_max_chunk_caps_every_chunk(chunksize: int | None) -> None:
    adapter = CappedAdapter()
    assert pmap(tenfold, range(40), mode=adapter, chunksize=chunksize) == list(map(tenfold, range(40)))
    sizes = [size for _, _, size in adapter.events("submit")]
    assert max(sizes) == 3
    assert sum(sizes) == 40
    assert [start for _, start, _ in adapter.events("submit")] == list(itertools.accumulate([0, *sizes[:-1]]))
