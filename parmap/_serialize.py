"""Pickling for the process boundary: plain pickle first, cloudpickle only where it fails.

Items and results take the fast path (``pickle``) and fall back to cloudpickle for lambdas and
other objects pickle refuses. ``fn`` and the initializer go through cloudpickle once per call,
because it pickles importable functions by reference (exactly as pickle does) and everything
else (lambdas, closures, functions of ``__main__`` in a REPL) by value.
"""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any

__all__ = ["dumps", "dumps_by_value", "dumps_code", "loads"]

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


def _by_reference(fn: object) -> bool:
    """True when pickle and cloudpickle would both pickle ``fn`` by reference, the same way."""
    if fn is None:
        return True
    if not isinstance(fn, types.FunctionType | types.BuiltinFunctionType):
        return False
    # __main__ is not importable everywhere (a REPL, a notebook): cloudpickle sends its
    # functions by value. A closure or lambda fails pickle's lookup and goes to cloudpickle.
    return getattr(fn, "__module__", None) not in (None, "__main__")


def dumps_code(obj: Any, *functions: object) -> bytes:
    """Pickle ``obj``, which holds ``functions`` and nothing else that cloudpickle treats apart.

    Module-level functions go by reference either way: pickle does it without importing
    cloudpickle (~0.6 ms in a fresh process). Once cloudpickle is loaded, a module may be
    registered with it to travel by value, so it decides.
    """
    if "cloudpickle" not in sys.modules and all(map(_by_reference, functions)):
        try:
            return pickle.dumps(obj, _PROTOCOL)
        except Exception:  # noqa: BLE001, S110 - not found by name: cloudpickle sends it by value
            pass
    return dumps_by_value(obj)


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` or :func:`dumps_by_value` produced."""
    return pickle.loads(data)  # noqa: S301 - data comes from our own workers or caller
