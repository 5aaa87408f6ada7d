"""mode="dask" against mode="process" and one-task-per-item ``Client.map``, on the same items.

The workload is the articles' factorial loop (``reduce(mul, range(1, ~300))``) on 165,000
items: small CPU tasks, where the cost of one Dask task per item (about a millisecond of
scheduler time each) dwarfs the work. The cluster is a LocalCluster of 2 worker processes with
1 thread each, started before timing. Needs the dask extra: ``pip install '.[dask,bench]'``.

    .venv/bin/python benchmarks/bench_dask.py [--items 165000] [--deadline 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

_EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

from workloads import factorial_task, positive_int  # type: ignore[import-not-found]  # noqa: E402

from parmap import DaskAdapter, pmap  # noqa: E402

CLIENT_MAP = """
import sys, time
sys.path.insert(0, {examples!r})
import distributed
from workloads import factorial_task

if __name__ == "__main__":
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            client.gather(client.map(abs, range(10)))
            print("ready", flush=True)
            started = time.perf_counter()
            client.gather(client.map(factorial_task, range({items})))
            print(time.perf_counter() - started, flush=True)
"""


def _client_map(items: int, deadline: int) -> tuple[str, str, float | None]:
    """One Dask task per item, in a child process: the client itself may block far past the deadline."""
    code = CLIENT_MAP.format(examples=_EXAMPLES, items=items)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"  # the cluster is up: the clock starts
        started = time.perf_counter()
        try:
            child.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return "Client.map, one task per item", f"not done after {deadline} s", None
        assert time.perf_counter() - started <= deadline + 1
        return "Client.map, one task per item", "once", float(child.stdout.read().split()[-1])


def main(argv: list[str] | None = None) -> int:
    """Time the three ways and print them with their ratio to process mode."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=positive_int, default=165_000)
    parser.add_argument("--deadline", type=positive_int, default=30, help="seconds given to Client.map")
    parser.add_argument("--repeat", type=positive_int, default=3)
    args = parser.parse_args(argv)
    import distributed  # noqa: PLC0415 - the dask extra

    items = list(range(args.items))
    expected = [factorial_task(x) for x in items[:100]]
    rows: list[tuple[str, str, float | None]] = []
    pmap(abs, [0], mode="process")  # the fork server, once per interpreter

    def timed(label: str, run: object) -> None:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            got = run()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
            assert got[:100] == expected
        rows.append((label, f"median of {args.repeat}", statistics.median(times)))

    timed("pmap mode='process' (2 workers)", lambda: pmap(factorial_task, items, workers=2))
    cluster_options = {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    with distributed.LocalCluster(**cluster_options) as cluster, distributed.Client(cluster) as client:
        client.gather(client.map(abs, range(10)))  # warm up
        timed(
            "pmap mode='dask' (LocalCluster, 2 workers)",
            lambda: pmap(factorial_task, items, mode=DaskAdapter(client)),
        )
    rows.append(_client_map(args.items, args.deadline))
    reference = rows[0][2]
    assert reference is not None
    print(f"{args.items:,} items of factorial_task; 2 workers; ratio = time / time of pmap mode='process'")
    print(f"{'way':<44} {'timing':<22} {'seconds':>8} {'ratio':>7}")
    for label, how, seconds in rows:
        shown = f"{seconds:8.2f} {seconds / reference:6.2f}x" if seconds is not None else f"{'-':>8} {'-':>7}"
        print(f"{label:<44} {how:<22} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
