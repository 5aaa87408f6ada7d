"""Every ```python block in README.md and docs/ (sub-folders included) runs, as a script of its own.

Code of the libraries compared on the "Coming from ..." pages that are not parmap dependencies
(joblib, mpire) is under a titled fence, ```python title="...": it runs too, when its library is
installed (the ``test`` extra installs both; without them such a block is skipped, saying so).
Only pages under docs/coming-from/ may have titled blocks, which the second test checks. Other
fences (bash, text, toml) are not Python and are not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", flags=re.DOTALL)
SHOWN_ONLY = DOCS / "coming-from"  # where peer code may be shown without being run


def _name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix() if page.is_relative_to(DOCS) else page.name


def _blocks(page: Path) -> list[tuple[str, str]]:
    """(info string, code) of every fenced block of ``page``."""
    return [(info.strip(), code) for info, code in FENCE.findall(page.read_text())]


BLOCKS = [
    pytest.param(page, i, code, id=f"{_name(page)}-{i}")
    for page in PAGES
    for i, code in enumerate(code for info, code in _blocks(page) if info.split()[:1] == ["python"])
]
PEERS = ("joblib", "mpire")  # optional libraries a block may import


@pytest.mark.process
@pytest.mark.parametrize(("page", "index", "code"), BLOCKS)
def test_code_block_runs(page: Path, index: int, code: str, tmp_path: Path) -> None:
    for peer in PEERS:
        if re.search(rf"^\s*(from|import) {peer}\b", code, flags=re.MULTILINE):
            pytest.importorskip(peer, reason=f"{peer} is not installed (pip install -e '.[test]')")
    script = tmp_path / f"{page.stem}_{index}.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, f"{_name(page)} block {index} failed:\n{result.stderr}"


def test_only_peer_code_is_shown_without_running() -> None:
    shown = [
        (_name(page), info)
        for page in PAGES
        for info, _ in _blocks(page)
        if info.startswith("python") and info != "python" and not page.is_relative_to(SHOWN_ONLY)
    ]
    assert not shown, f"titled python blocks outside docs/coming-from/: {shown}"
