"""Every ```python block in README.md and docs/ (sub-folders included) runs, as a script of its own.

A block that imports an optional extra's library (``tqdm``, ``distributed``, ``dask``) is skipped,
saying which extra to install, when that library is missing, like the tests that need it.
The Options page (docs/usage.md) shows ``pmap``'s signature as ``inspect.signature`` gives it,
and has a section for every option.

Code of the libraries compared on the "Coming from ..." pages that are not parmap dependencies
(joblib, mpire) is under a titled fence, ```python title="...": it runs too, when its library is
installed (the ``test`` extra installs both; without them such a block is skipped, saying so).
Only pages under docs/coming-from/ may have titled blocks, which the second test checks. Other
fences (bash, text, toml) are not Python and are not run.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from parmap import pmap

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
EXTRAS = {"tqdm": "progress", "distributed": "dask", "dask": "dask"}  # library -> the extra that installs it


@pytest.mark.process
@pytest.mark.parametrize(("page", "index", "code"), BLOCKS)
def test_code_block_runs(page: Path, index: int, code: str, tmp_path: Path) -> None:
    for peer in PEERS:
        if re.search(rf"^\s*(from|import) {peer}\b", code, flags=re.MULTILINE):
            pytest.importorskip(peer, reason=f"{peer} is not installed (pip install -e '.[test]')")
    for library, extra in EXTRAS.items():
        if re.search(rf"^\s*(from|import) {library}\b", code, flags=re.MULTILINE):
            pytest.importorskip(library, reason=f"{library} is not installed (pip install 'parmap[{extra}]')")
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


def _rendered_signature() -> str:
    """``pmap``'s signature as the Options page writes it: names, markers, defaults in order."""
    parts: list[str] = []
    params = list(inspect.signature(pmap).parameters.values())
    for param, after in zip(params, [*params[1:], None], strict=True):
        if param.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        if param.default is inspect.Parameter.empty:
            parts.append(param.name)
        else:
            default = param.default  # (the page quotes strings with double quotes, as the code does)
            shown = f'"{default}"' if isinstance(default, str) else repr(default)
            parts.append(f"{param.name}={shown}")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY and (after is None or after.kind != param.kind):
            parts.append("/")
    return f"pmap({', '.join(parts)})"


def _options_page() -> str:
    return (DOCS / "usage.md").read_text()


def test_the_options_page_shows_pmaps_signature() -> None:
    shown = _blocks(DOCS / "usage.md")[0][1]
    assert " ".join(shown.split()) == _rendered_signature(), "docs/usage.md's signature differs from pmap's"


def test_every_option_has_its_section_on_the_options_page() -> None:
    headings = re.findall(r"^## (.*)$", _options_page(), flags=re.MULTILINE)
    documented = {name for heading in headings for name in re.findall(r"`(\w+)`", heading)}
    missing = [name for name in inspect.signature(pmap).parameters if name not in documented]
    assert not missing, f"options without a section on docs/usage.md: {missing}"
