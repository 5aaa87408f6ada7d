"""The public face: ``__all__`` is complete and importable, the package is typed, docs agree."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import parmap

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_complete_and_sorted() -> None:
    public = {
        name
        for name in dir(parmap)  # (with the names imported on first use: amap, AsyncMap, AsyncAdapter)
        if not name.startswith("_") and not isinstance(getattr(parmap, name), types.ModuleType)
    }
    assert public == set(parmap.__all__) - {"__version__"}
    assert list(parmap.__all__) == sorted(parmap.__all__)
    for name in parmap.__all__:
        assert hasattr(parmap, name), name


def test_importing_parmap_does_not_import_asyncio() -> None:
    # asyncio costs ~10 ms at import: only the async API (amap, mode="async") pays for it.
    seen = "'asyncio' in sys.modules"
    code = f"import sys, parmap; print({seen}, parmap.amap.__module__, {seen})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "parmap._amap", "True"]


def test_public_objects_have_docstrings() -> None:
    for name in parmap.__all__:
        obj = getattr(parmap, name)
        if callable(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_private_modules_only() -> None:
    modules = {p.stem for p in (ROOT / "parmap").glob("*.py")} - {"__init__"}
    assert all(m.startswith("_") for m in modules), modules


def test_py_typed() -> None:
    assert (ROOT / "parmap" / "py.typed").exists()


def test_fn_and_items_are_positional_only() -> None:
    params = inspect.signature(parmap.pmap).parameters
    kinds = [p.kind for p in params.values()]
    assert kinds[:2] == [inspect.Parameter.POSITIONAL_ONLY] * 2
    assert all(k is inspect.Parameter.KEYWORD_ONLY for k in kinds[2:])


def test_import_starts_nothing() -> None:
    # Importing parmap must not start processes or threads (checked in a fresh interpreter).
    import subprocess  # noqa: PLC0415

    code = (
        "import threading, parmap, multiprocessing as m;"
        "print(threading.active_count(), len(m.active_children()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "0"]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.DOTALL)
    assert len(blocks) >= 2, "README must start with the demo command and the test command"
    demo, tests = blocks[0].strip(), blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, f"`.ci/run` must run the README's test command: {tests}"
    assert "demo" in demo


LIGHT_IMPORT = """
import sys
import parmap
print(parmap.pmap(abs, [-1, -2], mode="thread"), parmap.pmap(abs, [-3], mode="process"))
heavy = {"importlib.metadata", "email"} | ({"typing_extensions"} if sys.version_info >= (3, 11) else set())
print(sorted(heavy & set(sys.modules)))
try:
    parmap.pmap(abs, [1], mode="no-such-mode")
except ValueError:
    print("importlib.metadata" in sys.modules)
"""


def test_import_and_builtin_modes_load_no_plugin_machinery(tmp_path: Path) -> None:
    # importlib.metadata (~10 ms with the email package it pulls in) is only needed to look up
    # a mode that is not built in; typing_extensions (~8 ms) only before Python 3.11. Every
    # spawned worker imports parmap too, so this is paid per worker on macOS and Windows.
    script = tmp_path / "light.py"
    script.write_text(LIGHT_IMPORT)
    result = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["[1, 2] [3]", "[]", "True"]
