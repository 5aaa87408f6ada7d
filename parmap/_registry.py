"""Every mode by name, in one table: built-in, ``"dask"``, registered, and entry points.

The table holds the built-in modes, ``"dask"``, the modes registered with
:func:`register_adapter`, and, once asked for, modes that installed packages declare.

An entry names its adapter class (``"dask"``'s is imported when first asked for); what the
mode supports is what that class says (``recycles_workers``, ``starts_processes``,
``supports_timeout``, ``pool_mode``: see :class:`~parmap._adapters.Adapter`), so ``_api`` asks
the entry, never compares names.

A third-party package adds a mode by declaring an entry point in the ``parmap.adapters`` group
whose object is a factory, ``factory(workers) -> Adapter``; it is loaded the first time
``pmap(..., mode=name)`` asks for that name, so installing a plugin costs nothing at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from parmap._adapters import Adapter, SerialAdapter
from parmap._auto import AutoAdapter
from parmap._process import ProcessAdapter
from parmap._threads import ThreadAdapter

if TYPE_CHECKING:
    from importlib.metadata import EntryPoints

__all__ = [
    "BUILTIN_MODES",
    "ENTRY_POINT_GROUP",
    "AdapterFactory",
    "ModeEntry",
    "find_mode",
    "known_modes",
    "recycling_modes",
    "register_adapter",
]

AdapterFactory = Callable[[int | None], Adapter]
ENTRY_POINT_GROUP = "parmap.adapters"
BUILTIN_MODES = ("serial", "thread", "process", "auto", "async")


class ModeEntry:
    """One mode: how to make its adapter for a call, and what that adapter supports."""

    __slots__ = ("_class", "_factory", "_where", "name")

    def __init__(
        self,
        name: str,
        kind: type[Adapter] | None = None,
        *,
        where: str = "",
        factory: AdapterFactory | None = None,
    ) -> None:
        self.name = name
        self._class = kind
        self._where = where  # "module:Class" of a mode whose module is imported on first use
        self._factory = factory  # a registered or declared mode's factory(workers)

    @property
    def adapter_class(self) -> type[Adapter]:
        """The class of the adapters it makes (a plug-in's factory says nothing: the base class)."""
        if self._class is None:
            if not self._where:
                return Adapter
            module, name = self._where.split(":")
            self._class = getattr(importlib.import_module(module), name)
        return self._class

    @property
    def recycles_workers(self) -> bool:
        return self.adapter_class.recycles_workers

    @property
    def starts_processes(self) -> bool:
        return self.adapter_class.starts_processes

    @property
    def runs_coroutines(self) -> bool:
        return self.adapter_class.runs_coroutines

    @property
    def pool_mode(self) -> str | None:
        return self.adapter_class.pool_mode

    def make(self, workers: int | None, max_tasks: int | None, items: Iterable[Any]) -> Adapter:
        """A new, unstarted adapter for a call with these ``workers=``, ``max_tasks_per_worker=``."""
        if self._factory is not None:
            return self._factory(workers)
        return self.adapter_class.for_mode(workers, max_tasks=max_tasks, items=items, modes=_make)


def _make(name: str, workers: int | None) -> Adapter:
    """The adapter of built-in mode ``name`` (for AutoAdapter, which picks one)."""
    return _table[name].make(workers, None, ())


# The built-in modes' classes are imported with parmap (a first map pays no import); "async"'s
# and "dask"'s modules on first use.
_table: dict[str, ModeEntry] = {
    "serial": ModeEntry("serial", SerialAdapter),
    "thread": ModeEntry("thread", ThreadAdapter),
    "process": ModeEntry("process", ProcessAdapter),
    "auto": ModeEntry("auto", AutoAdapter),
    "async": ModeEntry("async", where="parmap._async:AsyncAdapter"),  # (imports asyncio)
    "dask": ModeEntry("dask", where="parmap._dask:DaskAdapter"),
}


def register_adapter(name: str, factory: AdapterFactory) -> None:
    """Make ``pmap(..., mode=name)`` run on ``factory(workers)``.

    Args:
        name: the mode's name; the built-in ``"serial"``, ``"thread"``, ``"process"``,
            ``"auto"`` and ``"async"`` cannot be replaced. Registering a name again replaces
            the earlier factory.
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
    _table[name] = ModeEntry(name, factory=factory)


def _declared() -> EntryPoints:
    """The entry points of the group (importlib.metadata costs ~10 ms: imported only here)."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    return entry_points(group=ENTRY_POINT_GROUP)


def find_mode(name: str, *, declared: bool = True) -> ModeEntry | None:
    """The entry for mode ``name``; with ``declared``, looked up in entry points if need be."""
    entry = _table.get(name)
    if entry is None and declared:
        for point in _declared():
            if point.name == name:
                register_adapter(name, point.load())
                return _table[name]
    return entry


def known_modes() -> list[str]:
    """Every mode name pmap knows now: built-in, registered, and declared by entry points."""
    names = {*_table, *(entry.name for entry in _declared())}
    return [*BUILTIN_MODES, *sorted(names - set(BUILTIN_MODES))]


def recycling_modes() -> list[str]:
    """The built-in modes that honour ``max_tasks_per_worker`` (their workers are replaced)."""
    return [name for name in BUILTIN_MODES if _table[name].recycles_workers]
