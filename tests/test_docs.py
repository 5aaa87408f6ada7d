"""Every ```python block in README.md and docs/ (sub-folders included) runs, as a script of its own.

Which blocks run is decided by the fence's info string alone: exactly ``python`` runs. Code of
the libraries compared on the "Coming from ..." pages that are not parmap dependencies (joblib,
mpire) is shown under a title instead, ```python title="...", and is not run; only pages under
docs/coming-from/ may do that, which the second test checks. Other fences (bash, text, toml)
are not Python and are not run.
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
    for i, code in enumerate(code for info, code in _blocks(page) if info == "python")
]


@pytest.mark.process
@pytest.mark.parametrize(("page", "index", "code"), BLOCKS)
def test_code_block_runs(page: Path, index: int, code: str, tmp_path: Path) -> None:
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
    assert not shown, f"python blocks that would not run (only docs/coming-from/ may have them): {shown}"
