"""Modes by name: ``"dask"``, modes registered with :func:`register_adapter`, and entry points.

A third-party package adds a mode by declaring an entry point in the ``parmap.adapters`` group
whose object is a factory, ``factory(workers) -> Adapter``; it is loaded the first time
``pmap(..., mode=name)`` asks for that name, so installing a plugin costs nothing at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from parmap._adapters import Adapter

if TYPE_CHECKING:
    from importlib.metadata import EntryPoints

__all__ = [
    "BUILTIN_MODES",
    "ENTRY_POINT_GROUP",
    "AdapterFactory",
    "find_adapter",
    "known_modes",
    "register_adapter",
]

AdapterFactory = Callable[[int | None], Adapter]
ENTRY_POINT_GROUP = "parmap.adapters"
BUILTIN_MODES = ("serial", "thread", "process", "auto")


def _dask(workers: int | None) -> Adapter:
    from parmap._dask import DaskAdapter  # noqa: PLC0415 - only for mode="dask"

    if workers is not None:
        msg = f"workers={workers!r} cannot be used with mode='dask': the cluster's workers decide"
        raise ValueError(msg)
    return DaskAdapter()


_factories: dict[str, AdapterFactory] = {"dask": _dask}


def register_adapter(name: str, factory: AdapterFactory) -> None:
    """Make ``pmap(..., mode=name)`` run on ``factory(workers)``.

    Args:
        name: the mode's name; the built-in ``"serial"``, ``"thread"`` and ``"process"`` cannot
            be replaced. Registering a name again replaces the earlier factory.
        factory: called in the caller's thread with the ``workers=`` given to ``pmap`` (None
            for the default) and returns a new, unstarted :class:`Adapter` that ``pmap`` starts
            and shuts down. An :class:`Adapter` subclass whose first argument is ``workers`` will do.

    Raises:
        ValueError: ``name`` is empty or a built-in mode.
        TypeError: ``factory`` is not callable.
    """
    if not isinstance(name, str) or not name:
        msg = f"name must be a non-empty string, got {name!r}"
        raise ValueError(msg)
    if name in BUILTIN_MODES:
        msg = f"{name!r} is a built-in mode and cannot be replaced; register the adapter under another name"
        raise ValueError(msg)
    candidate: object = factory  # checked at run time: entry points can name anything
    if not callable(candidate):
        msg = f"factory must be callable, got {factory!r}"
        raise TypeError(msg)
    _factories[name] = factory


def _declared() -> EntryPoints:
    """The entry points of the group (importlib.metadata costs ~10 ms: imported only here)."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    return entry_points(group=ENTRY_POINT_GROUP)


def find_adapter(name: str) -> AdapterFactory | None:
    """The factory registered for ``name``, loading it from an entry point if need be."""
    factory = _factories.get(name)
    if factory is None:
        for entry in _declared():
            if entry.name == name:
                factory = entry.load()
                register_adapter(name, factory)
                break
    return factory


def known_modes() -> list[str]:
    """Every mode name pmap knows now: built-in, registered, and declared by entry points."""
    names = {*_factories, *(entry.name for entry in _declared())}
    return [*BUILTIN_MODES, *sorted(names - set(BUILTIN_MODES))]
