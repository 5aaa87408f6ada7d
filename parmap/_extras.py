"""Optional dependencies (the extras), imported only when a feature asks for them."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["require"]


def require(module: str, *, extra: str, feature: str) -> Any:
    """Import ``module``, or raise an ImportError that names the extra to install for ``feature``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", maxsplit=1)[0]
        msg = f"{feature} needs {top}, which is not installed: pip install 'parmap[{extra}]'"
        raise ImportError(msg) from exc
