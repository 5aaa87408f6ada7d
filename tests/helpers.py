"""Functions the tests send to workers; a module of their own so every start method imports them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

INIT_STATE: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def identity(x: Any) -> Any:
    return x


def sleep_then(item: tuple[float, Any]) -> Any:
    seconds, value = item
    time.sleep(seconds)
    return value


def where(x: Any) -> tuple[Any, int, int, float, float]:
    """Sleep a little and say where and when: (item, pid, thread id, start, end)."""
    start = time.time()
    time.sleep(0.3)
    return x, os.getpid(), threading.get_ident(), start, time.time()


def fail_on(bad: int):
    def fn(x: int) -> int:
        if x == bad:
            raise KeyError(f"bad item {x}")
        return x

    return fn


def init_state(value: str) -> None:
    INIT_STATE["value"] = value
    INIT_STATE.setdefault("calls", 0)
    INIT_STATE["calls"] += 1


def read_state(x: int) -> tuple[int, str | None]:
    return x, INIT_STATE.get("value")


class Scaler:
    def __init__(self, k: int) -> None:
        self.k = k

    def scale(self, x: int) -> int:
        return self.k * x


class CountedPickles:
    """A callable that counts, in the caller, how often it is pickled."""

    pickled = 0

    def __call__(self, x: int) -> int:
        return x + 1

    def __reduce__(self) -> tuple[type[CountedPickles], tuple[()]]:
        type(self).pickled += 1
        return CountedPickles, ()


def fail_on_multiples(k: int):
    """fn that raises ValueError on multiples of ``k`` (and on nothing else)."""

    def fn(x: int) -> int:
        if x % k == 0:
            raise ValueError(f"multiple of {k}: {x}")
        return x

    return fn


class CustomBaseError(BaseException):
    pass


def raise_base(x: int) -> int:
    if x == 2:
        raise SystemExit(f"exit from item {x}")
    if x == 4:
        raise CustomBaseError(f"custom base from item {x}")
    return x


def failing_initializer() -> None:
    raise RuntimeError("cannot connect to the database")


CALLS: list[int] = []


def record_call(x: int) -> int:
    CALLS.append(x)
    return x


def append_to(path: str, x: int) -> int:
    """Record the call in a file: visible from the caller whatever process ran it."""
    with open(path, "a") as f:  # noqa: PTH123 - a plain append is the point
        f.write(f"{x}\n")
    return x


# --- faults, stage by stage (see tests/test_faults.py) ---------------------------------------


def _in_worker() -> bool:
    import multiprocessing  # noqa: PLC0415

    return multiprocessing.parent_process() is not None


def _rebuild_only_in_caller() -> OnlyInCaller:
    if _in_worker():
        raise ValueError("this object cannot be rebuilt in a worker")
    return OnlyInCaller()


def _rebuild_only_in_worker() -> OnlyInWorker:
    if not _in_worker():
        raise ValueError("this object cannot be rebuilt in the caller")
    return OnlyInWorker()


class OnlyInCaller:
    """Pickles anywhere, unpickles only in the caller: an argument that fails in the worker."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _rebuild_only_in_caller, ()


class OnlyInWorker:
    """Unpickles only in a worker: a result that fails to unpickle in the caller."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _rebuild_only_in_worker, ()


class ExitOnPickle:
    """Raises SystemExit when pickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise SystemExit("no pickling for me")


class NotRebuildableError(Exception):
    """Pickles, but cannot be rebuilt: its __init__ needs two arguments."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Python's own reduce, spelled out: tblib (installed by distributed on import, and
        # inherited by forked workers) would otherwise rebuild the exception without __init__.
        return (type(self), self.args)


def fault(item: tuple[str, int]) -> Any:
    """Run item ``(kind, x)``: ``kind`` says how this item goes wrong ("ok" for not at all)."""
    import ctypes  # noqa: PLC0415
    import signal  # noqa: PLC0415

    kind, x = item
    if kind == "exit":
        os._exit(3)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)
    if kind == "unpicklable-result":
        return threading.Lock()
    if kind == "exit-on-pickle-result":
        return ExitOnPickle()
    if kind == "caller-unpicklable-result":
        return OnlyInWorker()
    if kind == "not-rebuildable":
        raise NotRebuildableError(1, 2)
    if kind == "pid-then-sleep":
        with open(f"{x}", "w") as f:  # noqa: PTH123 - x is a path here
            f.write(str(os.getpid()))
        time.sleep(60)
    return x


def increment_file(path: str, pause: float = 0.002, *, use_lock: bool = True, in_step: Any = None) -> int:
    """Read a counter from a file, wait a little, write it back plus one: a race without a lock.

    ``in_step``: a barrier of two parties (a ``threading.Barrier``, or a ``Manager().Barrier``
    for processes) that makes the race certain: two writers both read the counter before either
    writes (each pair of calls so loses exactly one increment), and both have written before
    either reads again. Items run in pairs, on exactly two workers.
    """
    import parmap  # noqa: PLC0415

    def bump() -> int:
        with open(path) as f:  # noqa: PTH123
            value = int(f.read() or 0)
        if in_step is not None:
            in_step.wait(30)  # both have read ...
        time.sleep(pause)
        with open(path, "w") as f:  # noqa: PTH123
            f.write(str(value + 1))
        if in_step is not None:
            in_step.wait(30)  # ... both have written: neither reads a half-written file
        return value + 1

    if not use_lock:
        return bump()
    with parmap.lock():
        return bump()


def lock_in_initializer() -> None:
    import parmap  # noqa: PLC0415

    with parmap.lock():
        INIT_STATE["locked-init"] = True


def nested_lock_use(x: int) -> int:
    import parmap  # noqa: PLC0415

    with parmap.lock(), parmap.lock():  # re-entrant in serial mode
        return x


def read_locked_init(x: int) -> tuple[int, object]:
    return x, INIT_STATE.get("locked-init")


def pid_of(_: object) -> int:
    return os.getpid()


def thread_name_of(_: object) -> str:
    return threading.current_thread().name


def exit_worker_on(item: tuple[str, int]) -> int:
    """Kill the (Dask) worker process running this item if it is marked "die"."""
    kind, x = item
    if kind == "die":
        os._exit(7)
    return x


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(_: object) -> dict[str, str | None]:
    """The thread-pool variables as a worker sees them."""
    return {var: os.environ.get(var) for var in THREAD_VARS}


def run_script(
    script: Path, *args: object, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with this interpreter from its own folder; its output is captured as text."""
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=script.parent,
    )


def no_fork_first_env() -> dict[str, str]:
    """The environment for a script whose workers must come from the default start method.

    A single-threaded script forks its first workers from itself, which never imports the main
    module again: naming the start method tests what forkserver and spawn workers do.
    """
    from parmap._launch import default_start_method  # noqa: PLC0415 - only the tests that spawn scripts

    return {**os.environ, "PARMAP_START_METHOD": default_start_method()}


def outlive_the_other(item: tuple[int, str]) -> bool | int:
    """Item 1 notes its worker's pid and returns; item 0 waits (up to 10 s) for that worker to end.

    True when it ended while item 0, and so the map, still ran.
    """
    x, path = item
    if x == 1:
        Path(path).write_text(str(os.getpid()))
        return os.getpid()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = Path(path).read_text() if Path(path).exists() else ""
        if text:
            try:
                if psutil.Process(int(text)).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
        time.sleep(0.01)
    return False


def fail_first_with_worker(x: int) -> str:
    """Item 0 raises a ValueError naming the thread and process that ran it; others return them."""
    where = f"{os.getpid()}/{threading.current_thread().name}"
    if x == 0:
        raise ValueError(where)
    return where


FIRST_CALL = {"waited": False}


def first_call_waits(x: int) -> int:
    """``x * x``; the first call in this process (after a reset) first waits 3 ms, off the CPU."""
    if not FIRST_CALL["waited"]:
        FIRST_CALL["waited"] = True
        time.sleep(0.003)
    return x * x


def drop_private_exit_hooks() -> None:
    """An initializer: this worker loses the private exit hooks parmap uses (see _cpython.py)."""
    import atexit  # noqa: PLC0415
    import multiprocessing.util  # noqa: PLC0415

    for module, name in ((multiprocessing.util, "_exit_function"), (atexit, "_run_exitfuncs")):
        if hasattr(module, name):
            delattr(module, name)


def locked_square(x: int) -> int:
    import parmap  # noqa: PLC0415

    with parmap.lock():
        return x * x


def stuck_until_released(item: tuple[str, int]) -> int:
    """Item 4 waits until the file ``release`` appears in the folder (60 s at most), then notes
    ``returned`` there; the others take 10 ms. A map that returned before the release did not
    wait for item 4."""
    folder, x = item
    if x != 4:
        time.sleep(0.01)
        return x
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(folder, "release")) and time.monotonic() < deadline:  # noqa: PTH110, PTH118
        time.sleep(0.01)
    open(os.path.join(folder, "returned"), "w").close()  # noqa: PTH118, PTH123
    return x
