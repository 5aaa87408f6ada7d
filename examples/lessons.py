"""What the demo's table says, in words: derived from the times it measured, never fixed in advance.

For each workload: which mode won and by how much, whether that is the usual outcome for
that kind of work, why it usually is, and, when this run differs, the likely reasons that this
run's own figures point to (few CPUs, CPUs busy with other programs, too few items to share out).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["USUAL", "Machine", "Usual", "cpu_share", "lesson", "winner"]

#: Within this factor of each other, two modes are "about the same" (the machines are noisy).
SAME = 1.1
NAMES = {"serial": "serial", "thread": "threads", "process": "processes"}


def cpu_share(seconds: float) -> float:
    """Spin for ``seconds``: the share of that time this process got on a CPU (1.0: a whole one).

    Run in one process per CPU at once, the shares add up to the CPUs that other programs
    left free.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        pass
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


@dataclass(frozen=True)
class Machine:
    """What the run knew of the machine: the CPUs it may use, the workers asked for, how many were free."""

    cpus: int
    workers: int | None = None  # None: pmap's defaults
    free: float | None = None  # CPUs other programs left free, measured (None: not measured)

    @property
    def busy(self) -> bool:
        """Other programs held half a CPU or more while the demo ran."""
        return self.free is not None and self.free <= self.cpus - 0.5


@dataclass(frozen=True)
class Usual:
    """The usual outcome for one kind of work, and why."""

    winners: frozenset[str]  # the modes that usually win
    why: str  # holds on any machine


USUAL = {
    "files": Usual(
        frozenset({"thread", "process"}),
        "reading a file and hashing a buffer of 2 KiB or more release the GIL, so other workers "
        "run meanwhile",
    ),
    "tiny": Usual(
        frozenset({"serial", "process"}),
        "each item is microseconds of work: threads take turns on the GIL and gain nothing; "
        "processes gain only where CPUs are free, because pmap sends thousands of items per "
        "message, so pickling costs little per item",
    ),
    "cpu": Usual(
        frozenset({"process"}),
        "pure Python holds the GIL, so threads take turns; only processes run it on several CPUs at once",
    ),
    "io": Usual(
        frozenset({"thread"}),
        "waiting for the network releases the GIL, and threads overlap many waits cheaply "
        "(pmap starts more threads than processes)",
    ),
}


def winner(seconds: Mapping[str, float]) -> str:
    """The fastest mode; serial unless another beats it by more than the noise (``SAME``)."""
    best = min(seconds, key=seconds.__getitem__)
    return best if seconds["serial"] / seconds[best] >= SAME else "serial"


def _reasons(kind: str, won: str, items: int, machine: Machine) -> list[str]:
    """Likely reasons why this run's winner is not the usual one, from the run's own figures."""
    reasons = []
    parallel = min(machine.cpus, machine.workers or machine.cpus)
    if parallel <= 1:
        reasons.append(f"only {parallel} worker can run at a time here, so no mode can overlap work")
    elif machine.busy:
        reasons.append(
            f"other programs were using the CPUs: only about {machine.free:.1f} of {machine.cpus} "
            "were free, so workers waited for one"
        )
    if kind != "io" and items < 2 * parallel:
        reasons.append(f"{items} items cannot keep {parallel} workers busy to the end")
    if kind == "files" and won == "serial":
        reasons.append(
            "small files (most of the standard library's are a few KiB) are mostly opened, not "
            "hashed, and that part holds the GIL"
        )
    if kind == "io" and won == "process":
        reasons.append("with this few pages, as many processes as threads were enough to wait on them all")
    if not reasons:
        reasons.append("noise: run it again, or with --repeat 5, to see whether it holds")
    return reasons


def lesson(name: str, kind: str, seconds: Mapping[str, float], items: int, machine: Machine) -> str:
    """One line (or a few) on what this workload's times show, and why."""
    won = winner(seconds)
    speed = {mode: seconds["serial"] / s for mode, s in seconds.items()}
    figures = f"threads {speed['thread']:.2f}x, processes {speed['process']:.2f}x serial's speed"
    if won == "serial":
        head = f"no mode beat serial by {SAME:.1f}x or more ({figures})"
    else:
        head = f"{NAMES[won]} won ({figures})"
    usual = USUAL[kind]
    if won in usual.winners:
        return f"{name}: {head}. As usual: {usual.why}."
    expected = " or ".join(NAMES[mode] for mode in sorted(usual.winners))
    why = "; ".join(_reasons(kind, won, items, machine))
    return f"{name}: {head}. Usually {expected} win here ({usual.why}); not on this run. Likely: {why}."
