"""Telling blocking from polling tasks: the caller's word, isinstance, or behaviour."""

from __future__ import annotations

import threading

import pytest

import taskrunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

from conftest import Blocking, Polling, wait_for


def test_fake_tasks_are_classified_by_isinstance_before_they_run(runner):
    polling = runner.submit(FakeTaskPolling(1, wait=5))
    assert polling.status()["kind"] == polling.kind == "polling"
    gate = threading.Event()

    class SlowBlocking(FakeTaskBlocking):
        def run(self):
            gate.wait(10)
            return super().run()

    blocking = runner.submit(SlowBlocking(1, wait=0))
    assert blocking.status()["kind"] == "blocking"
    gate.set()
    assert blocking.result(timeout=10) == 2
    assert polling.cancel()


def test_unknown_blocking_class_is_found_by_its_output(runner):
    h = runner.submit(Blocking("done", wait=0.05))
    assert h.result(timeout=10) == "done"
    assert h.status()["kind"] == "blocking"


def test_unknown_polling_class_is_found_by_its_none_output(runner):
    task = Polling("late", wait=0.2)
    h = runner.submit(task)
    assert h.status()["kind"] is None or h.status()["kind"] == "polling"
    assert h.result(timeout=10) == "late"
    assert h.status()["kind"] == "polling"
    assert task.polls >= 2


def test_blocking_task_that_only_stores_its_output(runner):
    class Quiet:
        def __init__(self):
            self.output = None

        def run(self):
            self.output = 99

        def get_output(self):
            return self.output

    h = runner.submit(Quiet())
    assert h.result(timeout=10) == 99
    assert h.status()["kind"] == "blocking"


def test_kind_is_none_until_known(runner):
    release = threading.Event()

    class Unknown:
        def run(self):
            release.wait(10)
            return 1

        def get_output(self):
            return None

    h = runner.submit(Unknown())
    assert wait_for(h.running)
    assert h.status()["kind"] is None and h.kind is None
    release.set()
    assert h.result(timeout=10) == 1
    assert h.status()["kind"] == h.kind == "blocking"


def test_the_ambiguity_a_none_output_blocking_task_needs_kind(runner):
    class ReturnsNothing:
        def run(self):
            pass

        def get_output(self):
            return None

    # Unclassified, it looks like a polling task that never finishes.
    guessed = runner.submit(ReturnsNothing(), timeout=0.2)
    assert wait_for(guessed.done)
    assert guessed.status()["kind"] == "polling" and guessed.state == "timed_out"
    # Told it is blocking, it succeeds with None.
    told = runner.submit(ReturnsNothing(), kind="blocking")
    assert told.result(timeout=10) is None
    assert told.status()["state"] == "succeeded"


def test_kind_argument_overrides_and_is_validated(runner):
    h = runner.submit(Polling(3, wait=0.05), kind="polling")
    assert h.status()["kind"] == "polling"
    assert h.result(timeout=10) == 3
    with pytest.raises(ValueError, match="kind must be"):
        runner.submit(Polling(), kind="sometimes")


def test_register_kind_declares_a_class(runner):
    class MyPolling(Polling):
        pass

    taskrunner.register_kind(MyPolling, "polling")
    assert taskrunner.is_task_polling(MyPolling())
    assert runner.submit(MyPolling(1, wait=0.05)).status()["kind"] == "polling"


def test_is_task_polling_matches_the_original(runner):
    assert taskrunner.is_task_polling(FakeTaskPolling(1)) is True
    assert taskrunner.is_task_polling(FakeTaskBlocking(1)) is False
    with pytest.raises(TypeError, match="task type unknown"):
        taskrunner.is_task_polling(Blocking())
