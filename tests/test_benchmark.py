"""The benchmark's own pieces: scenarios, task classes, targets, the status pass."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import measure  # noqa: E402
import peers  # noqa: E402
import run  # noqa: E402
import scenarios  # noqa: E402


@pytest.fixture
def gate():
    scenarios.GATE.clear()
    yield scenarios.GATE
    scenarios.GATE.set()  # no gate task may be left waiting
    scenarios.GATE.clear()


def test_quick_and_full_have_the_same_scenarios():
    assert list(scenarios.FULL) == list(scenarios.QUICK) == list(scenarios.ORDER)
    for name in scenarios.ORDER:
        for quick in (False, True):
            scen = scenarios.scenarios(quick)[name]
            assert scen.name == name
            assert scen.plan() == scen.plan()  # seeded: the same list for every process


def test_the_new_scenarios_are_the_ones_asked_for():
    full = scenarios.FULL
    assert (full["sleep0_100k"].n, full["sleep0_100k"].mix) == (100_000, "sleep0")
    assert (full["block100"].n, full["block100"].wait_max) == (100, 0.5)
    assert full["status1k"].passes == "status"
    tasks, polling, waits = full["block100"].build()
    assert all(type(t).__name__ == "FakeTaskBlocking" and t.time_wait == 0.5 for t in tasks)
    assert not any(polling)


def test_sleep_zero_task_sleeps_zero_and_doubles(monkeypatch):
    slept = []
    monkeypatch.setattr(scenarios.time, "sleep", slept.append)
    task = scenarios.SleepZeroTask(21)
    assert task.run() == 42 and task.get_output() == 42
    assert slept == [0]


def test_gate_task_waits_for_the_gate(gate):
    task = scenarios.GateTask(5)
    worker = threading.Thread(target=task.run)
    worker.start()
    worker.join(0.05)
    assert worker.is_alive() and task.get_output() is None
    gate.set()
    worker.join(5)
    assert task.get_output() == 10


def test_targets_scale_under_quick_where_they_depend_on_size():
    def by_label(quick):
        return {(t.scenario, t.label): t for t in scenarios.targets(quick)}

    full, quick = by_label(False), by_label(True)
    assert full["poll10k", "makespan <= 2.05 s"].value == pytest.approx(2.05)
    assert full["poll10k", "CPU <= 0.5 s"].value == pytest.approx(0.5)
    assert full["block100", "makespan <= 0.55 s"].value == pytest.approx(0.55)
    assert full["instant100k", ">= 1,000,000 tasks/s"].value == 1_000_000
    assert full["sleep0_100k", ">= 200,000 tasks/s"].value == 200_000
    assert full["sleep0_100k", "<= 8 threads"].value == 8
    poll = scenarios.QUICK["poll10k"]
    assert quick["poll10k", f"makespan <= {poll.wait_max + 0.05:.2f} s"].value < 2.0
    assert quick["status1k", "handle.done() <= 150 ns"].value == 150
    for t in scenarios.targets(False) + scenarios.targets(True):
        assert t.scenario in scenarios.ORDER


def test_a_same_run_target_needs_both_in_most_runs():
    same = next(t for t in scenarios.targets(False) if isinstance(t, scenarios.SameRun))

    def rep(makespan, cpu):
        return {"quiet": {"makespan_s": makespan, "cpu_s": cpu}}

    both, slow, costly = rep(2.01, 0.3), rep(2.2, 0.3), rep(2.01, 0.9)
    assert run.same_run_verdict(same, [both, both, slow]) == (2, 3, True)
    # Each part's median passes here, but no run met both at once.
    assert run.same_run_verdict(same, [slow, costly, both]) == (1, 3, False)
    assert run.same_run_verdict(same, [{"quiet": {"error": "x"}}]) == (0, 0, None)


def test_the_status_pass_times_every_check_of_taskrunner(gate):
    scen = scenarios.QUICK["status1k"]
    tasks, polling, _ = scen.build()
    impl = peers.Taskrunner(len(tasks))
    impl.setup()
    try:
        result = measure.status_pass(impl, tasks, polling, quick=True)
    finally:
        gate.set()
        impl.runner.shutdown(wait=True)
    timed = set(result["open_ns"])
    assert timed == set(result["final_ns"])
    assert {"d[i]", "handler.get_task_status(i)", "handle.done()"} <= timed
    assert {"runner.status(i)", "handle.status()"} <= timed
    has_done = hasattr(impl.runner, "done")
    assert ("runner.done(i)" in timed) == has_done
    assert ("runner.done(i)" in result["unavailable"]) != has_done
    assert result["primary"] == "handle.done()"
    assert all(ns >= 0 for ns in result["open_ns"].values())


@pytest.mark.parametrize("name", ["tpe100_50ms", "asyncio_50ms", "thread_per_task_1s"])
def test_every_peer_has_its_own_done_check(gate, name):
    impl = peers.ALL[name](3)
    impl.setup()
    tasks = [scenarios.GateTask(i) for i in range(3)]
    impl.submit_all(tasks, [False] * 3)
    (check,) = impl.status_checks()
    assert check.primary and not any(check.is_done(k) for k in range(3))
    gate.set()
    impl.wait_all()
    # A future or a thread ends a moment after the task's end is noted.
    deadline = time.monotonic() + 5
    while measure.wrong_answers([check], 3, done=True) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert measure.wrong_answers([check], 3, done=True) == []


@pytest.mark.slow
def test_quick_run_of_the_new_scenarios_reports_their_targets(tmp_path):
    out = tmp_path / "out.json"
    only = "block100,sleep0_100k,status1k"
    command = [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--only", only]
    done = subprocess.run(
        [*command, "--impl", "taskrunner,tpe100_50ms", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert list(report["results"]) == only.split(",")
    targets = {(c["scenario"], c["target"]) for c in report["targets"]}
    assert ("status1k", "handle.done() <= 150 ns") in targets
    assert ("sleep0_100k", "<= 8 threads") in targets
    assert "# status checks" in done.stdout
