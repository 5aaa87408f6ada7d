"""Shared fixtures: the mode matrix and a leak check around every test.

The leak check counts this process's child processes (recursively), Python threads and open
file descriptors before and after each test. multiprocessing's fork server and resource
tracker are started once per interpreter by design (they are not workers and are reused), so
a session fixture starts them first and the check leaves them out.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from parmap import ProcessAdapter, pmap
from parmap._launch import default_start_method

# The behaviour suite runs once per entry; process-based ones carry the `process` marker.
MODE_PARAMS = [
    pytest.param("serial", id="serial"),
    pytest.param("thread", id="thread"),
    pytest.param("process", id="process", marks=pytest.mark.process),
    pytest.param("thread-executor", id="thread-executor"),
    pytest.param("process-executor", id="process-executor", marks=pytest.mark.process),
    pytest.param("dask", id="dask", marks=pytest.mark.dask),
]
PARALLEL_PARAMS = [p for p in MODE_PARAMS if p.values[0] != "serial"]


def _service_pids() -> set[int]:
    """multiprocessing's per-interpreter helpers: the fork server and the resource tracker."""
    pids = set()
    forkserver = getattr(multiprocessing, "forkserver", None)
    if forkserver is not None:
        pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # noqa: SLF001
        if pid:
            pids.add(pid)
    from multiprocessing import resource_tracker  # noqa: PLC0415

    pid = getattr(resource_tracker._resource_tracker, "_pid", None)  # noqa: SLF001
    if pid:
        pids.add(pid)
    return pids


@dataclass(frozen=True)
class Snapshot:
    children: frozenset[int]
    threads: int
    fds: int
    fd_targets: tuple[tuple[int, str], ...] = ()  # what each descriptor pointed to (Linux)

    @classmethod
    def take(cls) -> Snapshot:
        me = psutil.Process()
        services = _service_pids()
        children = {
            c.pid
            for c in me.children(recursive=True)
            if c.pid not in services and c.status() != psutil.STATUS_ZOMBIE
        }
        # TCP sockets are left out: parmap opens none, and a LocalCluster's in-process scheduler
        # accepts new connections from its workers whenever they like.
        fds = me.num_fds() - len(me.net_connections(kind="inet")) if hasattr(me, "num_fds") else 0
        return cls(frozenset(children), threading.active_count(), fds, _fd_targets())


def wait_for_no_leaks(before: Snapshot, seconds: float = 5.0) -> Snapshot:
    """Poll until nothing beyond ``before`` remains; return the last snapshot."""
    deadline = time.monotonic() + seconds
    while True:
        now = Snapshot.take()
        clean = now.children <= before.children and now.threads <= before.threads and now.fds <= before.fds
        if clean or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def assert_no_leaks(before: Snapshot) -> None:
    after = wait_for_no_leaks(before)
    assert after.children <= before.children, f"child processes left: {after.children - before.children}"
    assert after.threads <= before.threads, f"threads left: {[t.name for t in threading.enumerate()]}"
    assert after.fds <= before.fds, (  # (the message, with its listing, is made only on failure)
        f"file descriptors left: {before.fds} -> {after.fds}; {_fd_change(before, after)}"
    )


def _fd_targets() -> tuple[tuple[int, str], ...]:
    """What this process's descriptors point to (Linux), to tell which one a failure left."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return ()

    def target(entry: Path) -> str:
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own descriptor)
            return str(entry.readlink())
        return "?"

    return tuple(sorted((int(e.name), target(e)) for e in fd_dir.iterdir()))


def _fd_change(before: Snapshot, after: Snapshot) -> str:
    """The descriptors opened and closed between two snapshots, and the threads now running."""
    old, new = set(before.fd_targets), set(after.fd_targets)
    threads = [t.name for t in threading.enumerate()]
    return f"opened: {sorted(new - old)}; closed: {sorted(old - new)}; threads: {threads}"


@pytest.fixture(scope="session", autouse=True)
def _warm_services() -> None:
    """Start the fork server (and resource tracker) once, before any baseline is taken.

    Also make multiprocessing's shared-memory arena (kept open for reuse): a plain pmap may
    fork its workers from here and not need it, a pool on the fork server does.
    """
    pmap(abs, [1], mode="process")
    with ProcessAdapter(1, start_method=default_start_method()) as pool:
        pmap(abs, [1], mode=pool, lock=True)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(default_start_method())) as ex:
        ex.submit(abs, 1).result()


@pytest.fixture(scope="session")
def dask_client() -> Iterator[object]:
    """A real LocalCluster (2 worker processes, 1 thread each) and its client, for the session.

    Its processes and threads exist before any test's leak baseline is taken (a session
    fixture is set up before function fixtures), and they are warmed up: the client's helper
    threads start on first use.
    """
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    import dask  # noqa: PLC0415

    # One task per worker thread at a time (the default queues 1.1x): a fast item then never
    # waits behind a slow one on the same worker, so completion order can be tested.
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
        )
    client = distributed.Client(cluster)
    client.gather(client.map(abs, range(-5, 5)))
    done = threading.Event()
    client.submit(abs, 1).add_done_callback(lambda _: done.set())  # starts its callback thread
    done.wait(30)
    client.cancel(client.scatter([1, 2]))
    with distributed.Lock("parmap-warm-up"):
        pass
    yield client
    client.close()
    cluster.close()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[Snapshot]:
    """Every test must leave no child process, thread or file descriptor behind."""
    if request.node.get_closest_marker("dask"):
        request.getfixturevalue("dask_client")  # the cluster is the session's, not the test's
    before = Snapshot.take()
    yield before
    assert_no_leaks(before)


@contextlib.contextmanager
def make_mode(name: str) -> Iterator[str | Executor]:
    """A value for ``pmap(mode=...)``; borrowed executors are owned (and shut down) here."""
    if name == "thread-executor":
        with ThreadPoolExecutor(3) as ex:
            yield ex
    elif name == "process-executor":
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(default_start_method())) as ex:
            yield ex
    else:
        yield name


@pytest.fixture(params=MODE_PARAMS)
def mode(request: pytest.FixtureRequest) -> Iterator[str | Executor]:
    """Every mode, including executors that pmap borrows and a Dask cluster."""
    if request.param == "dask":
        request.getfixturevalue("dask_client")  # mode="dask" finds it as the current client
    with make_mode(request.param) as value:
        yield value


@pytest.fixture(params=PARALLEL_PARAMS)
def parallel_mode(request: pytest.FixtureRequest) -> Iterator[str | Executor]:
    """Only the modes that run several items at once."""
    if request.param == "dask":
        request.getfixturevalue("dask_client")
    with make_mode(request.param) as value:
        yield value


def is_windows() -> bool:
    return sys.platform == "win32" or os.name == "nt"
