"""``python -m parmap JOURNAL...``: what a map's journal says, without running anything."""

from __future__ import annotations

import sys

from parmap._errors import JournalError
from parmap._journal import Journal

_USAGE = """usage: python -m parmap JOURNAL [JOURNAL ...]
What a pmap(..., journal=JOURNAL) recorded: items done, items failed and why.
"""


def main(argv: list[str] | None = None) -> int:
    """Print each journal's summary: the map, how many items are done, what failed and why."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths or paths[0] in ("-h", "--help"):
        sys.stdout.write(_USAGE)
        return 0 if paths else 2
    return max(_show(path) for path in paths)


def _show(path: str) -> int:
    try:
        sys.stdout.write(Journal(path).summary() + "\n")
    except JournalError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
