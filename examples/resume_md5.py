"""A long map that survives its caller's death: md5 of a tree with a journal, killed, resumed.

    .venv/bin/python examples/resume_md5.py run.sqlite --kill-after 2000   # dies (SIGKILL) mid-map
    .venv/bin/python examples/resume_md5.py run.sqlite                     # finishes only the rest
    .venv/bin/python -m parmap run.sqlite                                  # what the journal holds

Files are matched by path (``key=``), so files added or removed between the runs are fine.
Each run prints how many files it hashed itself and how many it took from the journal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import list_files, md5_file

from parmap import Journal, pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("journal", help="the journal file (made on the first run)")
    parser.add_argument("root", nargs="?", default=None, help="directory (default: the standard library)")
    parser.add_argument("--kill-after", type=int, default=None, help="SIGKILL this process after N results")
    args = parser.parse_args()
    files = list_files(args.root)
    before = Journal(args.journal).done if Path(args.journal).exists() else 0
    results = pmap(md5_file, files, mode="thread", journal=args.journal, key=str, lazy=True)
    for got, _digest in enumerate(results, 1):
        if args.kill_after is not None and got == args.kill_after:
            print(f"killed after {got} of {len(files)} files", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would: no cleanup at all
    after = Journal(args.journal)
    print(f"{len(files)} files: {after.done - before} hashed by this run, {before} taken from the journal")


if __name__ == "__main__":
    main()
