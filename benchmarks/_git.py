"""Which parmap a benchmark measured: the commit, and whether parmap/ had uncommitted changes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_state() -> str:
    """The commit measured, and a short hash of any uncommitted changes to parmap/."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(ROOT), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        changes = git("status", "--porcelain", "parmap") + git("diff", "HEAD", "--", "parmap")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    if not changes.strip():
        return f"git {commit}"
    digest = hashlib.blake2b(changes.encode(), digest_size=4).hexdigest()
    return f"git {commit} with uncommitted changes to parmap/ (diff {digest})"
