"""The benchmark's own pieces: scenarios, task classes, targets, the status,
journal, Huey and HTTP passes, and the scheduling benchmark."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
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
import scheduling  # noqa: E402

WEB = all(importlib.util.find_spec(m) for m in peers.WEB_MODULES)


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


def test_the_journal_targets_are_the_ones_asked_for():
    def journal_targets(quick):
        return {(t.scenario, t.label): t for t in scenarios.targets(quick) if t.journal}

    full, quick = journal_targets(False), journal_targets(True)
    assert set(full) == {
        ("mixed100", "registration <= 5 us/task"),
        ("poll10k", "makespan <= 2.15 s"),
        ("instant100k", ">= 150,000 tasks/s"),
        ("http10k", ">= 0.80 of in-memory submits/s"),
    }
    assert full["instant100k", ">= 150,000 tasks/s"].value == 150_000
    assert full["poll10k", "makespan <= 2.15 s"].value == pytest.approx(2.15)
    relative = full["http10k", ">= 0.80 of in-memory submits/s"]
    assert (relative.of, relative.ratio, relative.figure) == ("taskrunner", 0.80, "tasks_per_s")
    poll = scenarios.QUICK["poll10k"]
    assert quick["poll10k", f"makespan <= {poll.wait_max + 0.15:.2f} s"].journal
    http = scenarios.FULL["http10k"]
    assert (http.n, http.clients, http.passes) == (10_000, 8, "http")


def test_a_relative_target_compares_with_the_in_memory_row():
    t = next(t for t in scenarios.targets(False) if isinstance(t, scenarios.Relative))
    assert t.check(900.0, 1000.0) is True
    assert t.check(700.0, 1000.0) is False
    assert t.check(None, 1000.0) is None and t.check(900.0, None) is None


def fake_entry(impl, **median):
    return {"impl": impl, "options": {}, "median": median, "runs": []}


def test_each_row_gets_its_own_targets_and_peers():
    results = {
        "instant100k": {
            "taskrunner": fake_entry("taskrunner", tasks_per_s=400_000.0),
            "taskrunner_journal": fake_entry("taskrunner_journal", tasks_per_s=160_000.0),
            "tpe100_50ms": fake_entry("tpe100_50ms", tasks_per_s=20_000.0),
            "huey_sqlite": fake_entry("huey_sqlite", tasks_per_s=1_600.0),
        },
        "http10k": {
            "taskrunner": fake_entry("taskrunner", tasks_per_s=500.0),
            "taskrunner_journal": fake_entry("taskrunner_journal", tasks_per_s=450.0),
        },
    }
    only, trs = ["instant100k", "http10k"], ["taskrunner", "taskrunner_journal"]
    _, checks = run.target_rows(results, only, trs, quick=False)
    got = {(c["implementation"], c["target"]): (c["value"], c["result"]) for c in checks}
    assert got == {
        ("taskrunner", ">= 1,000,000 tasks/s"): (400_000.0, "MISS"),
        ("taskrunner_journal", ">= 150,000 tasks/s"): (160_000.0, "PASS"),
        ("taskrunner_journal", ">= 0.80 of in-memory submits/s"): (0.9, "PASS"),
    }
    _, ratios = run.ratio_rows(results, ["instant100k"], trs, ["tpe100_50ms", "huey_sqlite"], False)
    best = {tr: r["tasks_per_s"]["best_peer"] for tr, r in ratios["instant100k"].items()}
    assert best == {"taskrunner": "tpe100_50ms", "taskrunner_journal": "huey_sqlite"}


def test_journal_options_make_a_journaled_variant():
    options = run.parse_options(["durability=full", "journal_batch=0.005", "max_workers=4"])
    assert options == {"durability": "full", "journal_batch": 0.005, "max_workers": 4.0}
    with pytest.raises(SystemExit):
        run.parse_options(["durability=sometimes"])
    impl = peers.TaskrunnerJournal(1, options)
    kwargs = impl.runner_options()
    impl.teardown()
    assert kwargs["durability"] == "full" and kwargs["journal_batch"] == 0.005
    assert kwargs["journal"].endswith("journal.db") and not os.path.exists(impl.directory)


def test_a_journaled_run_ends_when_its_journal_is_on_disk():
    tasks = [scenarios.InstantTask(i) for i in range(300)]
    impl = peers.TaskrunnerJournal(len(tasks))
    impl.setup()
    try:
        result = measure.quiet_pass(impl, tasks, [False] * 300, [0.0] * 300)
        assert os.path.exists(impl.runner.journal)
        assert impl.runner.flush(0)
        extra = impl.extra()
    finally:
        impl.runner.shutdown(wait=True)
        impl.teardown()
    _, finished, _ = impl.timings()
    assert result["missing"] == 0 and result["flush_ms"] >= 0
    assert impl.done_at() >= max(finished)
    assert extra["journal_bytes"] > 0
    assert not os.path.exists(impl.directory)


def test_huey_runs_only_what_it_can_and_says_why(monkeypatch):
    unsupported = peers.HueySqlite.unsupported
    assert "polling" in unsupported(scenarios.FULL["poll10k"])
    assert unsupported(scenarios.FULL["http10k"])
    monkeypatch.setattr(peers, "missing_modules", lambda names: list(names))
    assert "huey is not installed" in unsupported(scenarios.FULL["instant100k"])
    assert "web extra" in peers.Taskrunner.unsupported(scenarios.FULL["http10k"])
    assert peers.Taskrunner.unsupported(scenarios.FULL["instant100k"]) is None


def test_huey_runs_the_instant_tasks():
    pytest.importorskip("huey")
    tasks = [scenarios.SleepZeroTask(i) for i in range(40)]
    impl = peers.HueySqlite(len(tasks))
    handlers = [signal.getsignal(sig) for sig in peers.STOP_SIGNALS]
    impl.setup()
    assert [signal.getsignal(sig) for sig in peers.STOP_SIGNALS] == handlers
    try:
        result = measure.quiet_pass(impl, tasks, [False] * 40, [0.0] * 40)
    finally:
        impl.consumer.stop(graceful=True)
        impl.teardown()
    started, finished, _ = impl.timings()
    assert result["missing"] == 0 and result["flush_ms"] is None
    assert all(s <= f for s, f in zip(started, finished, strict=True))
    assert [t.get_output() for t in tasks] == [2 * i for i in range(40)]
    assert not os.path.exists(impl.directory)


@pytest.mark.skipif(not WEB, reason="needs the web extra")
@pytest.mark.parametrize("name", ["taskrunner", "taskrunner_journal"])
def test_the_http_pass_floods_a_real_server(name):
    scen = scenarios.Scenario("h", "h", 120, "http", 0.0, 0.0, passes="http", clients=3)
    impl = peers.ALL[name](scen.n)
    impl.setup()
    try:
        result = measure.http_pass(impl, scen)
        impl.runner.wait()
        submitted = len(impl.runner.tasks())
    finally:
        impl.runner.shutdown(wait=True)
        impl.teardown()
    # The warm-up's requests and the flood's, every one accepted.
    assert submitted == 3 * measure.HTTP_WARMUP + 120
    assert result["tasks_per_s"] > 0 and result["lat_p99_ms"] >= result["lat_p50_ms"] > 0
    assert result["makespan_s"] * 1e3 >= result["flush_ms"] >= 0


@pytest.mark.slow
def test_quick_run_of_the_journaled_rows_reports_their_targets(tmp_path):
    out = tmp_path / "out.json"
    only = "mixed100,instant100k,http10k"
    command = [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--only", only]
    impls = "taskrunner,taskrunner_journal,huey_sqlite"
    done = subprocess.run(
        [*command, "--impl", impls, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    targets = {(c["implementation"], c["scenario"], c["target"]) for c in report["targets"]}
    assert ("taskrunner_journal", "instant100k", ">= 150,000 tasks/s") in targets
    assert ("taskrunner_journal", "mixed100", "registration <= 5 us/task") in targets
    assert ("taskrunner", "instant100k", ">= 150,000 tasks/s") not in targets
    if WEB:
        assert ("taskrunner_journal", "http10k", ">= 0.80 of in-memory submits/s") in targets
        assert report["results"]["http10k"]["taskrunner_journal"]["median"]["tasks_per_s"] > 0
    huey = report["results"]["mixed100"]["huey_sqlite"]
    assert "polling" in huey["skipped"] and "huey_sqlite on mixed100" in done.stdout
    if importlib.util.find_spec("huey"):
        assert report["results"]["instant100k"]["huey_sqlite"]["median"]["tasks_per_s"] > 0


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


def test_the_scheduling_plan_is_seeded_and_fails_one_in_a_hundred():
    plan = scheduling.Plan.draw(10_000)
    assert plan == scheduling.Plan.draw(10_000)
    assert len(plan.failing) == 100
    assert set(plan.priority) == set(scheduling.LEVELS)
    assert 0.15 < sum(plan.limited) / plan.n < 0.25


def test_a_scheduled_task_fails_its_first_run_only_and_counts_in_its_gauge():
    gauge = scheduling.Gauge()
    task = scheduling.ScheduledTask(21, sleeps=True, fails=True, gauge=gauge)
    with pytest.raises(scheduling.InjectedFailure):
        task.run()
    assert task.run() == 42 and task.runs == 2
    assert (gauge.now, gauge.peak) == (0, 1)


def test_the_scheduling_checks_catch_a_wrong_attempt_and_an_exceeded_limit():
    plan = scheduling.Plan.draw(200)
    failing = min(plan.failing)
    outputs = [2 * i for i in range(200)]
    attempts = [2 if i in plan.failing else 1 for i in range(200)]
    assert scheduling.problems(plan, outputs, attempts, scheduling.THROTTLE) == []
    attempts[failing] = 1
    found = scheduling.problems(plan, outputs, attempts, scheduling.THROTTLE + 1)
    assert len(found) == 2 and "attempt" in found[0] and "ran at once" in found[1]


@pytest.mark.slow
def test_quick_run_of_the_scheduling_benchmark_checks_both(tmp_path):
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "scheduling.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    overhead = report["results"]["overhead"]
    assert {c["kind"] for c in report["targets"]} == set(scheduling.KINDS)
    assert all(overhead[k]["extra_submit_us"] is not None for k in scheduling.KINDS)
    impls = {"taskrunner", "huey_memory"} if importlib.util.find_spec("huey") else {"taskrunner"}
    for kind in scheduling.KINDS:
        by = report["results"]["scenario"][kind]
        assert set(by) == impls
        for entry in by.values():
            assert all("error" not in r for r in entry["runs"])
            assert entry["median"]["retried"] == 20 and entry["median"]["db_peak"] <= 2
    assert "# wall time" in done.stdout or "huey_memory" not in impls
