"""The journal of a map (``pmap(..., journal=path)``): results recorded as they come, for a resume.

An SQLite file (the standard library's ``sqlite3``, write-ahead log): one row per run of
consecutive results (the input indexes ``lo`` .. ``hi - 1`` and their values, pickled
together), with ``key=`` one row per item saying where its value is, and one row per failure
(its type, message and traceback text). The driver (``_driver.py``) asks
:meth:`MapJournal.recorded` which items of a chunk are done and never sends those; it hands
every part's results to :meth:`MapJournal.record` and every final failure to
:meth:`MapJournal.fail`. Rows are written in batches, one transaction at most every
:data:`FLUSH_SECONDS` (or :data:`FLUSH_ITEMS` results): a SIGKILL of the caller loses at most
the results of the last ``FLUSH_SECONDS``, never the file.

A journal belongs to one map: its first run writes which ``fn`` and which keys it uses, and a
run of another map on it is refused (:class:`~parmap.JournalError`), as is a second map
running on it at once (an exclusive lock on the file while a map uses it; POSIX only).
:class:`Journal` reads one without running anything (``python -m parmap FILE``).
"""

from __future__ import annotations

import bisect
import functools
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from parmap._errors import JournalError, SerializationError
from parmap._result import describe_exception
from parmap._serialize import dumps, loads

if TYPE_CHECKING:
    import sqlite3

__all__ = ["FLUSH_ITEMS", "FLUSH_SECONDS", "Journal", "JournalFailure", "MapJournal", "identity"]

FORMAT = "parmap-journal-2"
#: Seconds of results at most that wait in memory before they are written (lost on a SIGKILL).
FLUSH_SECONDS = 0.5
#: Results at most that wait in memory before they are written.
FLUSH_ITEMS = 20_000
# One row per run of consecutive results (a part of a chunk): its values pickled together, so
# that a journal costs about one pickle and one row per chunk, not per item. With key=, each
# item's key also gets a row in `keyed` (where to find its value).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parts (id INTEGER PRIMARY KEY, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    results BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS parts_lo ON parts (lo);
CREATE TABLE IF NOT EXISTS keyed (key TEXT PRIMARY KEY, part INTEGER NOT NULL, pos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, idx INTEGER NOT NULL, type TEXT NOT NULL,
    message TEXT NOT NULL, traceback TEXT NOT NULL, at REAL NOT NULL);
"""
_TABLES = {"meta", "parts", "keyed", "failures"}


def identity(fn: Callable[..., Any]) -> str:
    """What names ``fn`` across runs: its module and qualified name (a partial's function's)."""
    if isinstance(fn, functools.partial):
        return f"functools.partial({identity(fn.func)})"
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


class JournalFailure(NamedTuple):
    """An item whose last run failed, as the journal recorded it."""

    key: str
    input_index: int
    type: str
    message: str
    traceback: str


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    import sqlite3  # noqa: PLC0415 - ~2 ms at import: only maps with a journal pay it

    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
    conn = None
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a damaged file fails here
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        msg = f"journal {str(path)!r} cannot be opened as a parmap journal: {describe_exception(exc)}"
        raise JournalError(msg) from exc
    return conn


def _meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    import sqlite3  # noqa: PLC0415

    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return {}
        if not tables >= _TABLES:
            msg = f"{str(path)!r} is an SQLite file but not a parmap journal (tables: {sorted(tables)})"
            raise JournalError(msg)
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        msg = f"journal {str(path)!r} is damaged: {describe_exception(exc)}"
        raise JournalError(msg) from exc


class MapJournal:
    """The journal of the map that runs now: what is done, and what it records."""

    def __init__(self, path: str | os.PathLike[str], *, fn: str, keys: str, keyed: bool) -> None:
        self.path = Path(path)
        self.keyed = keyed  # items matched by key= (else by input index)
        self._lock_fd: int | None = None
        self._conn = _connect(self.path)
        self._parts: list[tuple[int, int, bytes, list[str] | None]] = []  # waiting: lo, hi, results, keys
        self._failures: list[tuple[Any, ...]] = []
        self._waiting = 0  # results waiting in memory
        self._first_pending = 0.0  # when the oldest of them came
        try:
            self._lock()
            meta = _meta(self._conn, self.path)
            if not meta:
                self._create(fn, keys)
            else:
                self._check(meta, fn, keys)
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        """What earlier runs recorded: done ranges (or keys), and the keys of failures."""
        import sqlite3  # noqa: PLC0415

        try:
            self._failed = {row[0] for row in self._conn.execute("SELECT key FROM failures")}
            self._done_keys: set[str] = set()
            self._done_ranges: list[tuple[int, int]] = []
            if self.keyed:
                self._done_keys = {row[0] for row in self._conn.execute("SELECT key FROM keyed")}
            else:
                for lo, hi in self._conn.execute("SELECT lo, hi FROM parts ORDER BY lo"):
                    if self._done_ranges and lo <= self._done_ranges[-1][1]:
                        last = self._done_ranges[-1]
                        self._done_ranges[-1] = (last[0], max(last[1], hi))
                    else:
                        self._done_ranges.append((lo, hi))
        except sqlite3.Error as exc:
            msg = f"journal {str(self.path)!r} is damaged: {describe_exception(exc)}"
            raise JournalError(msg) from exc
        self._starts = [lo for lo, _ in self._done_ranges]

    def _lock(self) -> None:
        """An exclusive lock on the file while this map uses it: a second map is refused."""
        try:
            import fcntl  # noqa: PLC0415 - POSIX only
        except ImportError:  # Windows: no second-map check (docs/long-maps.md)
            return
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            msg = f"journal {str(self.path)!r} is in use by another running map; wait for it to end"
            raise JournalError(msg) from None
        self._lock_fd = fd

    def _create(self, fn: str, keys: str) -> None:
        import sqlite3  # noqa: PLC0415

        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            self._conn.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [
                    ("format", FORMAT),
                    ("fn", fn),
                    ("keys", keys),
                    ("created", time.strftime("%Y-%m-%d %H:%M:%S")),
                ],
            )
        except sqlite3.Error as exc:
            msg = f"journal {str(self.path)!r} could not be written: {describe_exception(exc)}"
            raise JournalError(msg) from exc

    def _check(self, meta: dict[str, str], fn: str, keys: str) -> None:
        where = f"journal {str(self.path)!r}"
        if meta.get("format") != FORMAT:
            msg = f"{where} has format {meta.get('format')!r}, not {FORMAT!r}: it was not made by this parmap"
            raise JournalError(msg)
        if meta.get("fn") != fn:
            msg = f"{where} was made by a map of {meta.get('fn')}, not of {fn}: use another file for this map"
            raise JournalError(msg)
        if meta.get("keys") != keys:
            msg = f"{where} matches items by {meta.get('keys')}, this map by {keys}: use another file"
            raise JournalError(msg)
        self._conn.execute("PRAGMA journal_mode=WAL")

    # -- what earlier runs recorded -------------------------------------------------------------

    def recorded(self, start: int, keys: Sequence[str] | None, size: int) -> dict[int, Any]:
        """The recorded results of the items of a chunk (input indexes ``start`` ..), by position."""
        if self.keyed:
            assert keys is not None
            wanted = {k: pos for pos, k in enumerate(keys) if k in self._done_keys}
            return self._by_key(wanted) if wanted else {}
        # The done ranges that overlap start .. start + size - 1: none is the usual case.
        first = bisect.bisect_right(self._starts, start + size - 1)
        if not first or self._done_ranges[first - 1][1] <= start:
            return {}
        found: dict[int, Any] = {}
        rows = self._conn.execute(
            "SELECT lo, results FROM parts WHERE lo < ? AND hi > ?", (start + size, start)
        )
        for lo, blob in rows:
            for i, value in enumerate(loads(blob)):
                if 0 <= lo + i - start < size:
                    found[lo + i - start] = value
        return found

    def _by_key(self, wanted: dict[str, int]) -> dict[int, Any]:
        found: dict[int, Any] = {}
        parts: dict[int, list[Any]] = {}
        keys = list(wanted)
        for lo in range(0, len(keys), 500):  # (SQLite's limit on bound parameters)
            chunk = keys[lo : lo + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, part, pos FROM keyed WHERE key IN ({marks})"  # noqa: S608 - marks only
            for key, part, pos in self._conn.execute(query, chunk):
                if part not in parts:
                    row = self._conn.execute("SELECT results FROM parts WHERE id = ?", (part,)).fetchone()
                    parts[part] = loads(row[0])
                found[wanted[key]] = parts[part][pos]
        return found

    # -- recording --------------------------------------------------------------------------------

    def record(self, start: int, keys: Sequence[str] | None, values: list[Any]) -> dict[int, BaseException]:
        """Record the results of consecutive items (input indexes ``start`` ..), pickled together.

        Returns the errors of the results that cannot be pickled, by position: those items fail,
        the others are recorded.
        """
        try:
            blob = dumps(values)
        except Exception:  # noqa: BLE001 - which one? Each alone, then the rest in runs
            return self._record_apart(start, keys, values)
        self._pending(len(values))
        self._parts.append((start, start + len(values), blob, None if keys is None else list(keys)))
        self._maybe_flush()
        return {}

    def _record_apart(
        self, start: int, keys: Sequence[str] | None, values: list[Any]
    ) -> dict[int, BaseException]:
        errors: dict[int, BaseException] = {}
        for pos, value in enumerate(values):
            try:
                dumps(value)
            except Exception as why:  # noqa: BLE001, PERF203 - whatever the reason, it cannot be recorded
                what = f"the result of item {start + pos} ({type(value).__name__})"
                errors[pos] = SerializationError(
                    f"{what} cannot be recorded in the journal: {describe_exception(why)}"
                )
        run: list[int] = []
        for pos in [*range(len(values)), len(values)]:
            if pos < len(values) and pos not in errors:
                run.append(pos)
                continue
            if run:
                lo, hi = run[0], run[-1] + 1
                self.record(start + lo, None if keys is None else keys[lo:hi], values[lo:hi])
                run = []
        return errors

    def fail(self, key: str, index: int, exc: BaseException, tb: str | None) -> None:
        """Record an item's final failure (its type, message and traceback text)."""
        text = tb or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._pending(1)
        self._failures.append((key, index, type(exc).__qualname__, str(exc), text, time.time()))
        self._maybe_flush()

    def _pending(self, items: int) -> None:
        if not self._waiting:
            self._first_pending = time.monotonic()
        self._waiting += items

    def _maybe_flush(self) -> None:
        if self._waiting >= FLUSH_ITEMS or time.monotonic() - self._first_pending >= FLUSH_SECONDS:
            self.flush()

    def flush_due(self) -> float | None:
        """When the results waiting in memory must be written (``time.monotonic``), if any wait."""
        return self._first_pending + FLUSH_SECONDS if self._waiting else None

    def flush(self) -> None:
        """Write what waits, in one transaction."""
        import sqlite3  # noqa: PLC0415

        if not self._waiting:
            return
        parts, failures, self._parts, self._failures, self._waiting = self._parts, self._failures, [], [], 0
        try:
            with self._conn:  # (one transaction)
                self._conn.execute("BEGIN")
                for lo, hi, blob, keys in parts:
                    part = self._conn.execute(
                        "INSERT INTO parts (lo, hi, results) VALUES (?, ?, ?)", (lo, hi, blob)
                    ).lastrowid
                    if keys is not None:
                        self._conn.executemany(
                            "INSERT OR REPLACE INTO keyed (key, part, pos) VALUES (?, ?, ?)",
                            [(key, part, pos) for pos, key in enumerate(keys)],
                        )
                    self._forget_failures(lo, hi, keys)
                self._conn.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)", failures)
        except sqlite3.Error as exc:
            msg = f"journal {str(self.path)!r} could not be written: {describe_exception(exc)}"
            raise JournalError(msg) from exc

    def _forget_failures(self, lo: int, hi: int, keys: list[str] | None) -> None:
        """A failure of an earlier run that now succeeded is no failure any more."""
        if not self._failed:
            return
        gone = [k for k in (keys if keys is not None else map(str, range(lo, hi))) if k in self._failed]
        if gone:
            self._conn.executemany("DELETE FROM failures WHERE key = ?", [(k,) for k in gone])
            self._failed.difference_update(gone)

    def close(self) -> None:
        """Write what waits, release the file."""
        try:
            if getattr(self, "_waiting", 0):
                self.flush()
        finally:
            self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # (releases the lock)
                self._lock_fd = None


class Journal:
    """A map's journal, read without running anything: what is done, what failed and why.

    ``Journal("run.sqlite").failures`` lists the items whose last run failed; ``done`` counts
    those whose result is recorded. ``python -m parmap run.sqlite`` prints :meth:`summary`.

    Raises:
        JournalError: the file is not a parmap journal, or is damaged.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sqlite3  # noqa: PLC0415

        self.path = Path(path)
        if not self.path.exists():
            msg = f"journal {str(self.path)!r} does not exist"
            raise JournalError(msg)
        conn = _connect(self.path, read_only=True)
        try:
            meta = _meta(conn, self.path)
            if not meta:
                msg = f"{str(self.path)!r} is an empty SQLite file, not a parmap journal"
                raise JournalError(msg)
            self.fn = meta.get("fn", "?")  #: the function the map applied
            self.keys = meta.get("keys", "?")  #: how its items were matched
            self.created = meta.get("created", "?")
            #: how many results are recorded
            self.done: int = conn.execute("SELECT coalesce(sum(hi - lo), 0) FROM parts").fetchone()[0]
            rows = conn.execute(
                "SELECT key, idx, type, message, traceback FROM failures ORDER BY idx"
            ).fetchall()
            self.failures = [JournalFailure(*row) for row in rows]  #: items whose last run failed
        except sqlite3.Error as exc:
            msg = f"journal {str(self.path)!r} is damaged: {describe_exception(exc)}"
            raise JournalError(msg) from exc
        finally:
            conn.close()

    def results(self) -> Iterator[tuple[int, Any]]:
        """``(input index, result)`` of every item done, in input order of the run that recorded it."""
        conn = _connect(self.path, read_only=True)
        try:
            for lo, blob in conn.execute("SELECT lo, results FROM parts ORDER BY lo, id"):
                yield from enumerate(loads(blob), lo)
        finally:
            conn.close()

    def summary(self) -> str:
        """A few lines: the map, how many items are done, and each failure's type and message."""
        lines = [
            f"{self.path}: journal of a map of {self.fn}",
            f"items matched by {self.keys}; started {self.created}",
            f"done: {self.done}; failed: {len(self.failures)}",
        ]
        lines += [f"  item {f.input_index} ({f.key}): {f.type}: {f.message}" for f in self.failures[:50]]
        if len(self.failures) > 50:
            lines.append(f"  ... and {len(self.failures) - 50} more (Journal(path).failures lists them all)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}: {self.done} done, {len(self.failures)} failed)"
