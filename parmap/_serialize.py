"""Pickling for the process boundary: plain pickle first, cloudpickle only where it fails.

Items and results take the fast path (``pickle``) and fall back to cloudpickle for lambdas and
other objects pickle refuses. ``fn`` and the initializer go through cloudpickle once per call,
because it pickles importable functions by reference (exactly as pickle does) and everything
else (lambdas, closures, functions of ``__main__`` in a REPL) by value.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["dumps", "dumps_by_value", "loads"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` with pickle, or with cloudpickle when pickle cannot."""
    try:
        return pickle.dumps(obj, _PROTOCOL)
    except Exception:  # noqa: BLE001 - any failure means "try the slower, wider pickler"
        return dumps_by_value(obj)


def dumps_by_value(obj: Any) -> bytes:
    """Pickle ``obj`` with cloudpickle (imported lazily: workers may never need it)."""
    import cloudpickle  # noqa: PLC0415

    return cloudpickle.dumps(obj, _PROTOCOL)  # type: ignore[no-any-return]


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` or :func:`dumps_by_value` produced."""
    return pickle.loads(data)  # noqa: S301 - data comes from our own workers or caller
