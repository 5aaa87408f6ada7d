"""The journal of a map (``pmap(..., journal=path)``): results recorded as they come, for a resume.

An SQLite file (the standard library's ``sqlite3``, write-ahead log) with one row per item
that finished: its key (the input index, or ``repr(key(item))``), its pickled value or, for a
failure, the exception's type, message and traceback text. The driver (``_driver.py``) asks
:meth:`MapJournal.recorded` which items of a chunk are done and never sends those; it hands
every result and final failure to :meth:`MapJournal.record`. Rows are written in batches, one
transaction at most every :data:`FLUSH_SECONDS` (or :data:`FLUSH_ROWS` rows): a SIGKILL of
the caller loses at most the results of the last ``FLUSH_SECONDS``, never the file.

A journal belongs to one map: its first run writes which ``fn`` and which keys it uses, and a
run of another map on it is refused (:class:`~parmap.JournalError`), as is a second map
running on it at once (an exclusive lock on the file while a map uses it; POSIX only).
:class:`Journal` reads one without running anything (``python -m parmap FILE``).
"""

from __future__ import annotations

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

__all__ = ["FLUSH_ROWS", "FLUSH_SECONDS", "Journal", "JournalFailure", "MapJournal", "identity"]

FORMAT = "parmap-journal-1"
#: Seconds of results at most that wait in memory before they are written (lost on a SIGKILL).
FLUSH_SECONDS = 0.5
#: Rows at most that wait in memory before they are written.
FLUSH_ROWS = 2000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    value BLOB,
    error_type TEXT,
    error_message TEXT,
    error_tb TEXT,
    at REAL NOT NULL
);
"""


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
        if not {"meta", "items"} <= tables:
            msg = f"{str(path)!r} is an SQLite file but not a parmap journal (tables: {sorted(tables)})"
            raise JournalError(msg)
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        msg = f"journal {str(path)!r} is damaged: {describe_exception(exc)}"
        raise JournalError(msg) from exc


class MapJournal:
    """The journal of the map that runs now: what is done, and what it records."""

    def __init__(self, path: str | os.PathLike[str], *, fn: str, keys: str) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._conn = _connect(self.path)
        try:
            self._lock()
            meta = _meta(self._conn, self.path)
            if not meta:
                self._create(fn, keys)
            else:
                self._check(meta, fn, keys)
            self.done: set[str] = {row[0] for row in self._conn.execute("SELECT key FROM items WHERE ok = 1")}
        except BaseException:
            self.close()
            raise
        self._rows: list[tuple[Any, ...]] = []
        self._first_pending = 0.0  # when the oldest row not written yet was recorded
        self.written = 0

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

    def recorded(self, keys: Sequence[str]) -> dict[str, Any]:
        """The recorded values of the items of ``keys`` that are done."""
        wanted = [k for k in keys if k in self.done]
        values: dict[str, Any] = {}
        for lo in range(0, len(wanted), 500):  # (SQLite's limit on bound parameters)
            part = wanted[lo : lo + 500]
            marks = ",".join("?" * len(part))
            for key, blob in self._conn.execute(f"SELECT key, value FROM items WHERE key IN ({marks})", part):  # noqa: S608 - marks only
                values[key] = loads(blob)
        return values

    def record(
        self, key: str, index: int, value: Any, *, failed: bool, tb: str | None = None
    ) -> BaseException | None:
        """Record an item's result (or final failure); a result that cannot be pickled: its error."""
        now = time.monotonic()
        if failed:
            exc: BaseException = value
            text = tb or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            row: tuple[Any, ...] = (key, index, 0, None, type(exc).__qualname__, str(exc), text, time.time())
        else:
            try:
                blob = dumps(value)
            except Exception as why:  # noqa: BLE001 - whatever the reason, it cannot be recorded
                what = f"the result of item {index} ({type(value).__name__})"
                msg = f"{what} cannot be recorded in the journal: {describe_exception(why)}"
                return SerializationError(msg)
            row = (key, index, 1, blob, None, None, None, time.time())
        if not self._rows:
            self._first_pending = now
        self._rows.append(row)
        if len(self._rows) >= FLUSH_ROWS or now - self._first_pending >= FLUSH_SECONDS:
            self.flush()
        return None

    def flush_due(self) -> float | None:
        """When the rows waiting in memory must be written (``time.monotonic``), if any wait."""
        return self._first_pending + FLUSH_SECONDS if self._rows else None

    def flush(self) -> None:
        """Write the rows waiting, in one transaction."""
        import sqlite3  # noqa: PLC0415

        if not self._rows:
            return
        rows, self._rows = self._rows, []
        try:
            with self._conn:  # (one transaction)
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            msg = f"journal {str(self.path)!r} could not be written: {describe_exception(exc)}"
            raise JournalError(msg) from exc
        self.done.update(row[0] for row in rows if row[2])
        self.written += len(rows)

    def close(self) -> None:
        """Write what waits, release the file."""
        try:
            if getattr(self, "_rows", None):
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
            self.done = conn.execute("SELECT count(*) FROM items WHERE ok = 1").fetchone()[
                0
            ]  #: results recorded
            rows = conn.execute(
                "SELECT key, idx, error_type, error_message, error_tb FROM items WHERE ok = 0 ORDER BY idx"
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
            for index, blob in conn.execute("SELECT idx, value FROM items WHERE ok = 1 ORDER BY idx"):
                yield index, loads(blob)
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
