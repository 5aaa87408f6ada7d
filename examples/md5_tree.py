"""md5 of every file under a directory: reading files and hashing them, which threads overlap.

Prints one ``digest  path`` line per file (like ``md5sum``) for the first few files, then how
long each mode took. Reads and ``hashlib`` (on buffers of 2 KiB or more) release the GIL, so
threads help; processes help too, at the price of sending every digest back through a pipe.

    .venv/bin/python examples/md5_tree.py [ROOT] [--limit N] [--show 5]

ROOT defaults to the standard library's directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads by name

from workloads import list_files, md5_file

from parmap import pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", nargs="?", default=None, help="directory (default: the standard library)")
    parser.add_argument("--limit", type=int, default=None, help="hash only the first N files")
    parser.add_argument("--show", type=int, default=5, help="print the digests of the first N files")
    args = parser.parse_args()
    files = list_files(args.root, limit=args.limit)
    if not files:
        parser.error(f"no readable files under {args.root}")
    for path in files:  # into the page cache, so that the first mode is not the only one to read the disk
        Path(path).read_bytes()

    timings = {}
    digests: list[str] = []
    for mode in ("serial", "thread", "process"):
        start = time.perf_counter()
        got = pmap(md5_file, files, mode=mode)
        timings[mode] = time.perf_counter() - start
        assert not digests or got == digests, mode
        digests = got

    for path, digest in zip(files[: args.show], digests, strict=False):
        print(f"{digest}  {path}")
    print(f"{len(files)} files hashed")
    for mode, seconds in timings.items():
        print(f"  mode={mode!r:<10} {seconds:6.3f} s  speedup {timings['serial'] / seconds:.2f}x")


if __name__ == "__main__":
    main()
