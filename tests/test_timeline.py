"""A task's timeline (``runner.timeline(id)``): its states with their times,
its attempts with their errors, the tasks before and after it; and the
recipe a task keeps (``runner.recipe(id)``), in memory and in the journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import taskrunner
from taskrunner import Retry, TaskRunner

from conftest import Gate, query_journal, wait_for

WAIT = 10.0  # generous: how long a test waits for a task to finish


class Flaky:
    """A blocking task that raises on its first ``failures`` runs, then returns ``value``."""

    def __init__(self, failures: int, value: Any = "done") -> None:
        self.failures, self.value, self.runs = failures, value, 0

    def run(self) -> Any:
        self.runs += 1
        if self.runs <= self.failures:
            raise ValueError(f"failure {self.runs}")
        return self.value

    def get_output(self) -> Any:
        return self.value if self.runs > self.failures else None


class Sleeps:
    """A blocking task that sleeps ``seconds``, then returns them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self) -> float:
        time.sleep(self.seconds)
        return self.seconds

    def get_output(self) -> float:
        return self.seconds


class Wakes:
    """Runs for ever in a process that is killed; after a restart, returns at once."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self) -> int:
        if os.environ.get("WAKES") != "1":
            time.sleep(3600)
        return self.n

    def get_output(self) -> int:
        return self.n


QUICK_RETRY = Retry(3, backoff=0.01, jitter=False)


def states(timeline: dict) -> list[tuple[str, int]]:
    return [(event["state"], event["attempt"]) for event in timeline["events"]]


def times(timeline: dict) -> list[float]:
    return [event["at"] for event in timeline["events"]]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tasks.db")


def test_a_task_that_runs_once_has_one_attempt_and_three_events(runner):
    handle = runner.submit(Flaky(0), kind="blocking")
    assert handle.result(WAIT) == "done"
    status, timeline = handle.status(), runner.timeline(handle.id)
    assert timeline["id"] == handle.id
    assert states(timeline) == [("pending", 1), ("running", 1), ("succeeded", 1)]
    assert times(timeline) == [status["submitted_at"], status["started_at"], status["finished_at"]]
    assert all(event["error"] is None for event in timeline["events"])
    assert timeline["attempts"] == [
        {
            "attempt": 1,
            "started_at": status["started_at"],
            "ended_at": status["finished_at"],
            "error": None,
        }
    ]
    assert (timeline["after"], timeline["dependents"], timeline["again"]) == ([], [], False)
    assert list(timeline) == ["id", "events", "attempts", "after", "dependents", "again"]


def test_a_task_retried_twice_keeps_each_attempt_with_its_error_and_traceback(runner):
    handle = runner.submit(Flaky(2), kind="blocking", retries=QUICK_RETRY)
    assert handle.result(WAIT) == "done"
    timeline = runner.timeline(handle.id)
    assert states(timeline) == [
        ("pending", 1),
        ("running", 1),
        ("pending", 2),
        ("running", 2),
        ("pending", 3),
        ("running", 3),
        ("succeeded", 3),
    ]
    assert times(timeline) == sorted(times(timeline))
    first, second, third = timeline["attempts"]
    assert [a["attempt"] for a in (first, second, third)] == [1, 2, 3]
    for attempt, message in ((first, "failure 1"), (second, "failure 2")):
        error = attempt["error"]
        assert (error["type"], error["message"]) == ("ValueError", message)
        assert "Traceback" in error["traceback"] and f"ValueError: {message}" in error["traceback"]
        assert attempt["started_at"] <= attempt["ended_at"]
    assert third["error"] is None and third["ended_at"] == handle.status()["finished_at"]
    # Each pending-again event carries the error of the attempt before it.
    pending_again = [e for e in timeline["events"][1:] if e["state"] == "pending"]
    assert [e["error"] for e in pending_again] == [first["error"], second["error"]]
    assert [e["at"] for e in pending_again] == [first["ended_at"], second["ended_at"]]


def test_a_task_that_fails_after_its_retries_shows_every_error(runner):
    handle = runner.submit(Flaky(5), kind="blocking", retries=Retry(2, backoff=0, jitter=False))
    assert isinstance(handle.exception(WAIT), ValueError)
    timeline = runner.timeline(handle.id)
    assert [a["error"]["message"] for a in timeline["attempts"]] == ["failure 1", "failure 2"]
    last = timeline["events"][-1]
    assert (last["state"], last["attempt"]) == ("failed", 2)
    assert last["error"] == handle.status()["error"]


def test_a_task_cancelled_while_pending_made_no_attempt(runner):
    handle = runner.submit(Flaky(0), kind="blocking", delay=60)
    assert handle.cancel()
    timeline = runner.timeline(handle.id)
    assert states(timeline) == [("pending", 1), ("cancelled", 1)]
    assert timeline["events"][-1]["at"] == handle.status()["finished_at"]
    assert timeline["attempts"] == []


def test_a_timed_out_task_ran_and_ended_without_an_error(runner):
    handle = runner.submit(Sleeps(0.5), kind="blocking", timeout=0.1)
    with pytest.raises(taskrunner.TaskTimeoutError):
        handle.result(WAIT)
    timeline = runner.timeline(handle.id)
    assert states(timeline) == [("pending", 1), ("running", 1), ("timed_out", 1)]
    [attempt] = timeline["attempts"]
    assert attempt["error"] is None
    assert attempt["ended_at"] == handle.status()["finished_at"]


def test_a_running_task_has_an_attempt_that_has_not_ended(runner):
    gate = Gate()
    handle = runner.submit(gate)
    assert gate.entered.wait(WAIT)
    timeline = runner.timeline(handle.id)
    assert states(timeline) == [("pending", 1), ("running", 1)]
    assert timeline["attempts"][0]["ended_at"] is None
    gate.release.set()
    handle.result(WAIT)


def test_after_and_dependents_name_each_other(runner):
    gate = Gate()
    upstream = runner.submit(gate)
    other = runner.submit(Flaky(0), kind="blocking")
    first = runner.submit(Flaky(0), kind="blocking", after=[upstream])
    second = runner.submit(Flaky(0), kind="blocking", after=[upstream, other])
    gate.release.set()
    runner.wait([first, second], timeout=WAIT)
    # Submitted after its upstream ended: a dependent all the same.
    late = runner.submit(Flaky(0), kind="blocking", after=[upstream])
    late.result(WAIT)
    assert runner.timeline(upstream.id)["dependents"] == [first.id, second.id, late.id]
    assert runner.timeline(other.id)["dependents"] == [second.id]
    assert runner.timeline(second.id)["after"] == [upstream.id, other.id]
    assert runner.timeline(second.id)["dependents"] == []


def test_a_dependent_cancelled_by_its_upstream_says_why_in_its_last_event(runner):
    upstream = runner.submit(Flaky(1), kind="blocking")
    dependent = runner.submit(Flaky(0), kind="blocking", after=[upstream])
    runner.wait([dependent], timeout=WAIT)
    assert dependent.cancelled()
    timeline = runner.timeline(dependent.id)
    assert states(timeline) == [("pending", 1), ("cancelled", 1)]
    assert timeline["events"][-1]["error"]["type"] == "CancelledError"
    assert timeline["attempts"] == []


def test_an_unknown_id_is_a_key_error(runner):
    for id in (999, -1, 2**70):
        with pytest.raises(KeyError):
            runner.timeline(id)
        with pytest.raises(KeyError):
            runner.recipe(id)
    with pytest.raises(TypeError):
        runner.timeline("1")


def test_a_task_lost_with_its_cluster_worker_shows_that_attempt(runner):
    # The cluster's dispatcher drives these calls; here the test does.
    handle = runner.submit(Flaky(0), kind="blocking", _elsewhere=True)
    runner._started_elsewhere([(handle.id, "blocking", "tcp://10.0.0.7:4000")])
    assert runner._requeue([handle.id]) == [(handle.id, 2)]
    runner._started_elsewhere([(handle.id, "blocking", "tcp://10.0.0.8:4000")])
    runner._finished_elsewhere([(handle.id, "blocking", "succeeded", "done", None, 0)])
    timeline = runner.timeline(handle.id)
    assert states(timeline) == [
        ("pending", 1),
        ("running", 1),
        ("pending", 2),
        ("running", 2),
        ("succeeded", 2),
    ]
    lost = timeline["attempts"][0]
    assert lost["error"]["type"] == "TaskLost"
    assert "tcp://10.0.0.7:4000" in lost["error"]["message"]
    assert lost["started_at"] is not None and lost["ended_at"] is not None
    assert timeline["attempts"][1]["error"] is None


def test_a_forgotten_task_has_no_timeline_without_a_journal():
    with TaskRunner(retain_finished=0) as runner:
        handle = runner.submit(Flaky(0), kind="blocking")
        handle.result(WAIT)
        assert wait_for(lambda: handle.id not in runner.ids())
        with pytest.raises(KeyError):
            runner.timeline(handle.id)


# ---- recipes ----------------------------------------------------------------


def test_a_recipe_is_kept_without_a_journal_and_again_once_finished(runner):
    gate = Gate()
    handle = runner.submit(gate, recipe={"type": "t", "input": [1, 2]})
    plain = runner.submit(Flaky(0), kind="blocking")
    assert runner.recipe(handle.id) == {"type": "t", "input": [1, 2]}
    assert runner.recipe(plain.id) is None
    assert runner.timeline(handle.id)["again"] is False, "not finished yet"
    gate.release.set()
    handle.result(WAIT)
    plain.result(WAIT)
    assert runner.timeline(handle.id)["again"] is True
    assert runner.timeline(plain.id)["again"] is False


def test_a_recipe_must_read_back_equal_and_durable_still_needs_a_journal(runner):
    with pytest.raises(TypeError, match="recipe"):
        runner.submit(Flaky(0), kind="blocking", recipe=(1, 2))
    with pytest.raises(ValueError, match="journal"):
        runner.submit(Flaky(0), kind="blocking", durable=True)
    assert runner.ids() == []


# ---- with a journal ---------------------------------------------------------


def test_a_task_known_only_to_the_journal_has_the_same_timeline(db):
    with TaskRunner(journal=db) as runner:
        retried = runner.submit(Flaky(2), kind="blocking", retries=QUICK_RETRY, recipe={"n": 1})
        retried.result(WAIT)
        dependent = runner.submit(Flaky(0), kind="blocking", after=[retried])
        dependent.result(WAIT)
        cancelled = runner.submit(Flaky(0), kind="blocking", delay=60)
        cancelled.cancel()
        ids = [retried.id, dependent.id, cancelled.id]
        before = {id: runner.timeline(id) for id in ids}
    assert len(before[retried.id]["attempts"]) == 3
    with TaskRunner(journal=db) as runner:
        assert runner.ids(state="pending") == []
        after = {id: runner.timeline(id) for id in ids}
        assert runner.recipe(retried.id) == {"n": 1}
        assert runner.recipe(dependent.id) is None
    assert after == before
    assert after[retried.id]["dependents"] == [dependent.id]
    assert after[retried.id]["again"] is True


def test_a_task_forgotten_from_memory_is_read_back_from_the_journal(db):
    with TaskRunner(journal=db) as runner:
        upstream = runner.submit(Flaky(1), kind="blocking", retries=QUICK_RETRY)
        upstream.result(WAIT)
        runner.forget(upstream.id)
        # Its dependent comes after it left memory: the journal links them.
        dependent = runner.submit(Flaky(0), kind="blocking", after=[upstream.id])
        dependent.result(WAIT)
        timeline = runner.timeline(upstream.id)
        assert states(timeline) == [
            ("pending", 1),
            ("running", 1),
            ("pending", 2),
            ("running", 2),
            ("succeeded", 2),
        ]
        assert timeline["attempts"][0]["error"]["message"] == "failure 1"
        assert timeline["dependents"] == [dependent.id]
        with pytest.raises(KeyError):
            runner.timeline(dependent.id + 1000)


# A process that submits a durable task and a task waiting for a retry, then waits to be killed.
KILLED = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    import taskrunner
    from test_timeline import Wakes
    runner = taskrunner.TaskRunner(journal=sys.argv[1])
    running = runner.submit(Wakes(1), kind="blocking", durable=True)
    while runner.status(running.id)["state"] != "running":
        time.sleep(0.01)
    waiting = runner.submit(Wakes(2), kind="blocking", durable=True, delay=3600)
    runner.flush()
    print(running.id, waiting.id, flush=True)
    time.sleep(60)
    """
)


def test_an_attempt_lost_with_its_process_is_kept_saying_so(db, monkeypatch):
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, db, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    running_id, waiting_id = (int(i) for i in line.split())
    monkeypatch.setenv("WAKES", "1")
    with TaskRunner(journal=db) as runner:
        assert runner.result(running_id, timeout=WAIT) == 1
        ran = runner.timeline(running_id)
        assert states(ran) == [("pending", 1), ("running", 1), ("running", 2), ("succeeded", 2)]
        lost, again = ran["attempts"]
        assert (lost["attempt"], lost["ended_at"], lost["error"]["type"]) == (1, None, "TaskLost")
        assert "ended while this attempt ran" in lost["error"]["message"]
        assert lost["started_at"] is not None and again["error"] is None
        waited = runner.timeline(waiting_id)
        [never] = waited["attempts"]
        assert (never["attempt"], never["started_at"], never["ended_at"]) == (1, None, None)
        assert "before this attempt started" in never["error"]["message"]
        assert runner.status(waiting_id)["attempt"] == 2
        runner.cancel(waiting_id)
    # And so it stays once the task is known only to the journal.
    with TaskRunner(journal=db) as runner:
        assert runner.timeline(running_id) == ran


def test_attempts_and_dependents_are_pruned_with_their_task(db):
    with TaskRunner(journal=db, journal_retention=2.0, retain_finished=0) as runner:
        upstream = runner.submit(Flaky(1), kind="blocking", retries=QUICK_RETRY)
        upstream.result(WAIT)
        runner.submit(Flaky(0), kind="blocking", after=[upstream.id]).result(WAIT)
        assert runner.flush(WAIT)

        def rows(table: str) -> int:
            [(count,)] = query_journal(db, f"SELECT count(*) FROM {table}")
            return count

        assert rows("attempts") == 1 and rows("task_after") == 1
        assert wait_for(lambda: rows("tasks") == 0, WAIT), "retention deletes the tasks"
        assert (rows("attempts"), rows("task_after")) == (0, 0)
        with pytest.raises(KeyError):
            runner.timeline(upstream.id)


def test_a_durable_task_has_no_recipe_to_run_again_from(db):
    # Its recipe is its pickled object, not data a new task can be made from.
    with TaskRunner(journal=db) as runner:
        handle = runner.submit(Wakes(3), kind="blocking", durable=True, delay=60)
        handle.cancel()
        assert runner.recipe(handle.id) is None
    with TaskRunner(journal=db) as runner:
        assert runner.recipe(handle.id) is None
        assert runner.timeline(handle.id)["again"] is False
