"""Every ```python block in README.md and docs/ runs, as a script of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(page, i, code, id=f"{page.name}-{i}")
    for page in PAGES
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL))
]


@pytest.mark.process
@pytest.mark.parametrize(("page", "index", "code"), BLOCKS)
def test_code_block_runs(page: Path, index: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"{page.stem}_{index}.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, f"{page.name} block {index} failed:\n{result.stderr}"
