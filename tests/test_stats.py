"""What the stats dict and the polls count tell a user."""

import threading

import pytest

import taskrunner

from conftest import wait_for


class Held:
    """A blocking task whose run() returns when the test lets it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self):
        self.entered.set()
        self.release.wait(30)
        return "done"

    def get_output(self):
        return None


def test_a_finished_blocking_task_made_no_polls(runner):
    handle = runner.submit(taskrunner.FakeTaskBlocking(3, wait=0))
    assert handle.result(timeout=10) == 6
    assert handle.status()["polls"] == 0


def test_a_polling_task_counts_its_polls(runner):
    handle = runner.submit(taskrunner.FakeTaskPolling(3, wait=0.05))
    assert handle.result(timeout=10) == 6
    polls = handle.status()["polls"]
    assert polls >= 1
    assert runner.stats()["polls"] >= polls


def test_a_worker_still_inside_a_timed_out_task_is_not_busy(runner):
    task = Held()
    handle = runner.submit(task, kind="blocking", timeout=0.05)
    assert task.entered.wait(10)
    with pytest.raises(taskrunner.TaskTimeoutError):
        handle.result(timeout=10)
    stats = runner.stats()
    assert stats["workers_busy"] == 0
    assert stats["workers_timed_out"] == 1
    task.release.set()
    assert wait_for(lambda: runner.stats()["workers_timed_out"] == 0, timeout=10)
    assert runner.stats()["workers_busy"] == 0


def test_a_running_blocking_task_keeps_its_worker_busy(runner):
    task = Held()
    handle = runner.submit(task, kind="blocking")
    assert task.entered.wait(10)
    stats = runner.stats()
    assert (stats["workers_busy"], stats["workers_timed_out"]) == (1, 0)
    task.release.set()
    assert handle.result(timeout=10) == "done"
