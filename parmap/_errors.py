"""The exceptions parmap raises.

Exceptions raised by ``fn`` reach the caller with their own type; these are parmap's own::

    Exception
     └── ParmapError                              base of everything parmap raises itself
          ├── WorkerDiedError(ParmapError, RuntimeError)
          │        a worker process ended while it ran an item (exit code or signal named)
          ├── ItemTimeoutError(ParmapError, TimeoutError)
          │        an item ran longer than ``timeout=`` seconds
          ├── InitializerError(ParmapError, RuntimeError)
          │        the initializer raised (or ``fn`` could not be loaded): no item can run
          ├── LockUnavailableError(ParmapError, RuntimeError)
          │        ``parmap.lock()`` called where no ``pmap(..., lock=...)`` call runs
          └── SerializationError(ParmapError, pickle.PicklingError)
                   fn, an item, a result or an exception could not cross the process boundary

The first three name the item concerned in a note, like exceptions raised by ``fn``.

    RemoteTraceback(Exception)
        not raised: attached as ``__cause__`` of an exception that came back from a worker
        process, so the worker-side traceback is printed with it.
"""

from __future__ import annotations

import pickle

__all__ = [
    "InitializerError",
    "ItemTimeoutError",
    "JournalError",
    "LockUnavailableError",
    "ParmapError",
    "RemoteTraceback",
    "SerializationError",
    "WorkerDiedError",
]


class ParmapError(Exception):
    """Base class of the errors parmap raises itself (not those raised by ``fn``).

    Attributes:
        index: the input index of the item the error is about (the one its note names), once
            the error reaches you; None where no single item is concerned.
    """

    index: int | None = None
    # For adapters (see docs/adapters.md), read and cleared by the driver before an error
    # reaches the caller: the position in its chunk of the item that was running, when an
    # error fails the whole chunk; or, instead, the positions lo .. hi - 1 of which one was
    # running (the driver runs those one at a time to find it).
    position: int | None = None
    span: tuple[int, int] | None = None


class InitializerError(ParmapError, RuntimeError):
    """The initializer raised, or ``fn`` could not be loaded in a worker: no item can run."""


class LockUnavailableError(ParmapError, RuntimeError):
    """``parmap.lock()`` was called outside ``fn`` (or the initializer) of a ``pmap(..., lock=...)``."""


class ItemTimeoutError(ParmapError, TimeoutError):
    """An item ran longer than ``timeout=`` seconds; in process mode its worker was replaced."""


class WorkerDiedError(ParmapError, RuntimeError):
    """A worker process ended while it held items; the message names them and how it died."""


class SerializationError(ParmapError, pickle.PicklingError):
    """Something could not be pickled or unpickled on its way to or from a worker process."""


class JournalError(ParmapError, RuntimeError):
    """A ``journal=`` file that this map cannot use; the message names the file and why.

    It was made by another map (another fn, or other keys), another running map uses it, or it
    is not a parmap journal (damaged, or another file). The file is left as it was.
    """


class RemoteTraceback(Exception):  # noqa: N818 - named after concurrent.futures' twin
    """The traceback text of an exception raised in a worker process."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'
