"""md5 of every file of the Python standard library, with a progress bar (the ``progress`` extra).

.venv/bin/pip install '.[progress]' && .venv/bin/python examples/progress_md5.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import workloads too

from workloads import list_files, md5_file

from parmap import pmap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=None, help="hash only the first N files")
    args = parser.parse_args()
    files = list_files(limit=args.limit)
    digests = pmap(md5_file, files, mode="thread", progress={"desc": "md5", "unit": "file"})
    print(f"{len(digests)} files hashed; first: {Path(files[0]).name} {digests[0]}")


if __name__ == "__main__":
    main()
