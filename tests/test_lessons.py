"""The demo's lessons follow its own numbers: which mode won, and why, from the times measured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from lessons import Machine, cpu_share, lesson, winner

IDLE = Machine(cpus=2, free=1.9)
BUSY = Machine(cpus=2, free=0.8)


def times(serial: float, thread: float, process: float) -> dict[str, float]:
    return {"serial": serial, "thread": thread, "process": process}


def test_the_winner_is_the_fastest_mode_unless_within_noise_of_serial() -> None:
    assert winner(times(1.0, 0.5, 0.8)) == "thread"
    assert winner(times(1.0, 0.95, 0.97)) == "serial"  # within 10%: no mode "won"
    assert winner(times(1.0, 1.5, 0.4)) == "process"


def test_threads_slower_than_serial_on_md5_are_not_called_a_help() -> None:
    # The case the demo got wrong: threads 0.68x serial on md5, and the lesson said threads help.
    text = lesson("md5", "files", times(1.0, 1.0 / 0.68, 1.1), 300, BUSY)
    assert "threads help" not in text
    assert text.startswith("md5: no mode beat serial")
    assert "threads 0.68x" in text
    assert "not on this run" in text
    assert "only about 0.8 of 2 were free" in text


def test_the_usual_outcome_is_said_to_be_usual() -> None:
    text = lesson("gcd", "cpu", times(2.0, 2.1, 1.05), 6, IDLE)
    assert text.startswith("gcd: processes won (threads 0.95x, processes 1.90x")
    assert "As usual" in text
    assert "not on this run" not in text


@pytest.mark.parametrize(
    ("machine", "reason"),
    [
        (Machine(cpus=1), "only 1 worker can run at a time"),
        (Machine(cpus=4, workers=1), "only 1 worker can run at a time"),
        (Machine(cpus=2, free=1.2), "other programs were using the CPUs"),
        (Machine(cpus=2, free=1.8), "noise: run it again"),
        (Machine(cpus=2, free=None), "noise: run it again"),
    ],
)
def test_an_unusual_outcome_gives_the_reason_the_run_points_to(machine: Machine, reason: str) -> None:
    text = lesson("gcd", "cpu", times(1.0, 1.0, 1.02), 60, machine)
    assert "Usually processes win here" in text
    assert reason in text


def test_too_few_items_for_the_workers_is_named() -> None:
    text = lesson("gcd", "cpu", times(1.0, 1.0, 1.0), 2, Machine(cpus=4))
    assert "2 items cannot keep 4 workers busy" in text


def test_tiny_tasks_gain_with_processes_or_not_at_all() -> None:
    won = lesson("factorial", "tiny", times(1.0, 1.0, 0.6), 20_000, IDLE)
    assert won.startswith("factorial: processes won (threads 1.00x, processes 1.67x")
    assert "As usual" in won
    assert "As usual" in lesson("factorial", "tiny", times(1.0, 1.05, 1.3), 20_000, IDLE)
    threads = lesson("factorial", "tiny", times(1.0, 0.5, 1.0), 20_000, IDLE)
    assert "Usually processes or serial win here" in threads


def test_io_won_by_threads_is_usual_and_by_processes_is_explained() -> None:
    assert "As usual" in lesson("crawler", "io", times(2.0, 0.1, 1.0), 40, IDLE)
    text = lesson("crawler", "io", times(2.0, 1.0, 0.5), 8, IDLE)
    assert "processes won" in text
    assert "as many processes as threads were enough" in text


def test_cpu_share_is_near_one_for_a_process_alone() -> None:
    # A bound on a share, not on time: a lone spinning process gets some CPU, never more than all.
    assert 0.0 < cpu_share(0.05) <= 1.05
