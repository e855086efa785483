"""Search: ``runner.ids`` and ``runner.tasks`` filtered by state, name, kind,
type, worker, error type and submit time, from memory and from the journal,
paged with the cursor, and across a restart; the ``type=`` label of a submit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any, Optional

import pytest

import taskrunner
from taskrunner import TaskRunner

from conftest import Blocking, Polling

WAIT = 10.0
WORKER_A = "tcp://10.0.0.1:4000"
WORKER_B = "tcp://10.0.0.2:4000"


class Raises:
    """A blocking task that raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self) -> Any:
        raise self.error

    def get_output(self) -> Any:
        return None


class Quick(Blocking):
    """Blocking, and known to be before it runs."""


class Polled(Polling):
    """Polling, and known to be before it runs."""


taskrunner.register_kind(Raises, "blocking")
taskrunner.register_kind(Quick, "blocking")
taskrunner.register_kind(Polled, "polling")


def fill(runner: TaskRunner) -> list[dict]:
    """Submits a mix of tasks, runs them to the end, and returns their statuses."""
    handles = []
    for i in range(60):
        name = ("resize-image", "send-mail", "rare-report")[0 if i % 3 else (1 if i % 12 else 2)]
        task_type = (None, "thumb", "mail")[i % 3]
        if i % 10 == 7:
            task: Any = Raises(ValueError(i))
        elif i % 10 == 9:
            task = Raises(KeyError(i))
        elif i % 4 == 1:
            task = Polled(i)
        else:
            task = Quick(i)
        handles.append(runner.submit(task, name=name, type=task_type))
    # Three tasks "ran on a cluster": their worker comes from the cluster link.
    for worker, state in ((WORKER_A, "succeeded"), (WORKER_B, "failed"), (WORKER_A, "failed")):
        handle = runner.submit(Quick(0), name="remote", type="thumb", _elsewhere=True)
        runner._started_elsewhere([(handle.id, "blocking", worker)])
        error = ("TimeoutError", "slow", "Traceback...", TimeoutError("slow"))
        failed = error if state == "failed" else None
        runner._finished_elsewhere([(handle.id, "blocking", state, 0, failed, 0)])
        handles.append(handle)
    _, not_done = runner.wait(handles, timeout=WAIT)
    assert not not_done
    assert runner.flush(WAIT)
    return [runner.status(h.id) for h in handles]


def passes(status: dict, **filters: Any) -> bool:
    """What a filter keeps, spelled out over a status dict."""
    error = status["error"]["type"] if status["error"] else None
    checks = {
        "state": status["state"],
        "kind": status["kind"],
        "type": status["type"],
        "worker": status["worker"],
        "error": error,
    }
    for key, want in filters.items():
        if key == "name":
            if want not in status["name"]:
                return False
        elif key == "since":
            if status["submitted_at"] < want:
                return False
        elif key == "until":
            if status["submitted_at"] >= want:
                return False
        elif checks[key] != want:
            return False
    return True


def all_ids_newest_first(runner: TaskRunner, page: int, **filters: Any) -> list[int]:
    """Every id ``ids`` lists, paging with its cursor ``page`` at a time."""
    listed: list[int] = []
    before: Optional[int] = None
    while True:
        ids = runner.ids(limit=page, before=before, **filters)
        assert len(ids) <= page
        listed.extend(ids)
        if len(ids) < page:
            return listed
        before = ids[-1]


def all_statuses_oldest_first(runner: TaskRunner, page: int, **filters: Any) -> list[dict]:
    listed: list[dict] = []
    after: Optional[int] = None
    while True:
        statuses = runner.tasks(limit=page, after=after, **filters)
        listed.extend(statuses)
        if len(statuses) < page:
            return listed
        after = statuses[-1]["id"]


FILTERS = [
    {"name": "rare"},
    {"name": "-"},
    {"name": "nothing like it"},
    {"kind": "polling"},
    {"kind": "blocking"},
    {"type": "thumb"},
    {"type": "no such type"},
    {"worker": WORKER_A},
    {"worker": WORKER_B},
    {"error": "ValueError"},
    {"error": "KeyError"},
    {"error": "TimeoutError"},
    {"error": "NoSuchError"},
    {"state": "failed", "error": "ValueError"},
    {"state": "succeeded", "type": "mail", "name": "send"},
    {"kind": "blocking", "type": "thumb", "name": "resize"},
    {"worker": WORKER_A, "error": "TimeoutError", "type": "thumb"},
    {"state": "failed", "kind": "polling"},
]


@pytest.fixture(params=["memory", "journal"])
def searched(request, tmp_path):
    """A runner (journaled or not) with a mix of finished tasks, and their statuses."""
    journal = str(tmp_path / "tasks.db") if request.param == "journal" else None
    runner = TaskRunner(max_workers=4, journal=journal)
    statuses = fill(runner)
    yield runner, statuses
    runner.shutdown()


@pytest.mark.parametrize(
    "filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items())
)
def test_each_filter_alone_and_combined_lists_exactly_its_tasks_across_pages(searched, filters):
    runner, statuses = searched
    expected = [s["id"] for s in statuses if passes(s, **filters)]
    assert all_ids_newest_first(runner, 4, **filters) == sorted(expected, reverse=True)
    listed = all_statuses_oldest_first(runner, 5, **filters)
    assert [s["id"] for s in listed] == sorted(expected)
    assert all(passes(s, **filters) for s in listed)


def test_the_mix_has_rare_and_common_matches(searched):
    _, statuses = searched
    count = {
        f"{k}={v}": sum(passes(s, **{k: v}) for s in statuses)
        for f in FILTERS
        for k, v in f.items()
    }
    assert count["name=rare"] == 5
    assert count["worker=" + WORKER_B] == 1
    assert count["error=NoSuchError"] == count["type=no such type"] == 0
    assert count["kind=blocking"] > 30 and count["kind=polling"] > 5


def test_filters_combine_with_the_submit_time(searched):
    runner, statuses = searched
    middle = statuses[len(statuses) // 2]["submitted_at"]
    for filters in ({"since": middle, "type": "thumb"}, {"until": middle, "error": "ValueError"}):
        expected = [s["id"] for s in statuses if passes(s, **filters)]
        assert expected
        assert all_ids_newest_first(runner, 3, **filters) == sorted(expected, reverse=True)


def test_tasks_finished_in_an_earlier_process_are_found_after_a_restart(tmp_path):
    db = str(tmp_path / "tasks.db")
    first = TaskRunner(max_workers=4, journal=db)
    statuses = fill(first)
    first.shutdown()
    second = TaskRunner(journal=db)
    try:
        for filters in FILTERS:
            expected = [s["id"] for s in statuses if passes(s, **filters)]
            assert all_ids_newest_first(second, 4, **filters) == sorted(expected, reverse=True)
            listed = all_statuses_oldest_first(second, 100, **filters)
            assert [s["type"] for s in listed] == [
                s["type"] for s in statuses if passes(s, **filters)
            ]
        # And beside them, a task of this process.
        new = second.submit(Raises(ValueError("again")), type="mail")
        _, not_done = second.wait([new], timeout=WAIT)
        assert not not_done
        ids = second.ids(error="ValueError", type="mail", limit=100)
        assert ids[0] == new.id and len(ids) > 1
    finally:
        second.shutdown()


def test_the_journal_view_takes_the_same_filters(tmp_path):
    db = str(tmp_path / "tasks.db")
    runner = TaskRunner(max_workers=4, journal=db)
    statuses = fill(runner)
    view = taskrunner.JournalView(db)
    try:
        for filters in FILTERS:
            listed = view.tasks(limit=1000, **filters)
            assert [s["id"] for s in listed] == [s["id"] for s in statuses if passes(s, **filters)]
    finally:
        runner.shutdown()


def test_a_type_label_shows_in_the_status_and_survives_a_restart(tmp_path):
    db = str(tmp_path / "tasks.db")
    runner = TaskRunner(journal=db)
    handle = runner.submit(Blocking(1), type="resize")
    plain = runner.submit(Blocking(2))
    assert handle.status()["type"] == "resize"
    assert list(handle.status())[-1] == "type"
    assert plain.status()["type"] is None
    runner.wait([handle, plain], timeout=WAIT)
    runner.shutdown()
    again = TaskRunner(journal=db)
    try:
        assert again.status(handle.id)["type"] == "resize"
        assert again.status(plain.id)["type"] is None
    finally:
        again.shutdown()


EXITS = textwrap.dedent(
    """
    import sys, time
    import taskrunner
    from taskrunner.faketasks import FakeTaskBlocking
    runner = taskrunner.TaskRunner(journal=sys.argv[1], max_workers=1)
    first = runner.submit(FakeTaskBlocking(0, wait=0.5))
    held = runner.submit(FakeTaskBlocking(5, wait=0), durable=True, type="resize")
    while not first.running():  # the one worker is taken: held is pending at exit
        time.sleep(0.001)
    print(held.id, flush=True)
    """
)


def test_a_durable_task_keeps_its_type_when_it_runs_again_after_its_process_ended(tmp_path):
    db = str(tmp_path / "tasks.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", EXITS, db],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    ).stdout
    held = int(out)
    again = TaskRunner(journal=db)
    try:
        assert again.result(held, timeout=WAIT) == 10
        assert again.status(held)["type"] == "resize" and again.status(held)["attempt"] == 2
        assert again.ids(type="resize") == [held]
    finally:
        again.shutdown()


@pytest.mark.parametrize("bad", ["", "x" * 201])
def test_a_type_label_of_the_wrong_length_is_refused(runner, bad):
    with pytest.raises(ValueError, match="type must be a str of 1 to 200 characters"):
        runner.submit(Blocking(1), type=bad)
    assert runner.ids() == []


def test_a_type_label_that_is_not_a_str_is_refused(runner):
    with pytest.raises(TypeError, match="type"):
        runner.submit(Blocking(1), type=3)


def test_a_long_type_label_of_200_characters_is_kept(runner):
    label = "é" * 200
    assert runner.submit(Blocking(1), type=label).status()["type"] == label


@pytest.mark.parametrize("method", ["ids", "tasks"])
def test_an_unknown_kind_is_refused(runner, method):
    with pytest.raises(ValueError, match="kind must be 'blocking', 'polling'"):
        getattr(runner, method)(kind="quick")


def test_the_filters_are_keywords_of_str(runner):
    with pytest.raises(TypeError):
        runner.ids(error=ValueError)


def test_a_retrying_task_is_found_by_the_error_it_waits_after(runner):
    attempts = []

    class Flaky:
        def run(self) -> Any:
            attempts.append(time.monotonic())
            raise OSError("down")

        def get_output(self) -> Any:
            return None

    handle = runner.submit(Flaky(), retries=taskrunner.Retry(2, backoff=30))
    deadline = time.monotonic() + WAIT
    while not attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    while handle.status()["error"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.status()["state"] == "pending"
    assert runner.ids(error="OSError") == [handle.id]
    runner.cancel(handle.id)


def test_the_search_benchmark_builds_a_journal_and_times_every_query(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "search.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, script, "--tasks", "3000", "--runs", "1", "--cache", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert "building a journal of 3,000 tasks" in first.stdout, first.stderr
    assert "wrong page" not in first.stdout
    rows = [line for line in first.stdout.splitlines() if line.endswith(("| yes |", "| NO |"))]
    assert len(rows) == 22 and first.returncode in (0, 1)  # 1 only for a time past the target
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert "reusing" in again.stdout and "wrong page" not in again.stdout


def test_the_tasks_command_takes_the_filters(tmp_path):
    db = str(tmp_path / "tasks.db")
    runner = TaskRunner(max_workers=4, journal=db)
    statuses = fill(runner)
    runner.shutdown()
    expected = [s["id"] for s in statuses if passes(s, error="KeyError", type="mail")]
    assert expected
    command = [sys.executable, "-m", "taskrunner", "tasks", "--db", db, "--json", "--limit", "100"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [*command, "--error", "KeyError", "--type", "mail"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    ).stdout
    listed = [json.loads(line)["id"] for line in out.splitlines()]
    assert listed == sorted(expected, reverse=True)
    refused = subprocess.run(
        [*command, "--kind", "quick"], capture_output=True, text=True, timeout=60, env=env
    )
    assert refused.returncode == 2 and "--kind" in refused.stderr
