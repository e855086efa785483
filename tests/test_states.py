"""Every state, every transition, and the status dict's shape."""

from __future__ import annotations

import time

import pytest

import taskrunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

from conftest import Blocking, Gate, wait_for


def test_status_dict_has_exactly_the_documented_keys(runner):
    h = runner.submit(FakeTaskBlocking(3, wait=0))
    h.result(timeout=10)
    status = runner.status(h.id)
    assert tuple(status) == taskrunner.STATUS_KEYS
    assert status["id"] == h.id
    assert status["name"] == "FakeTaskBlocking"
    assert status["kind"] == "blocking"
    assert status["state"] == "succeeded" and status["done"] is True
    assert status["result"] == 6 and status["error"] is None
    assert status["submitted_at"] <= status["started_at"] <= status["finished_at"]
    assert status["runtime"] == pytest.approx(status["finished_at"] - status["started_at"])
    assert abs(status["submitted_at"] - time.time()) < 60


def test_ids_are_unique_and_in_submit_order(runner):
    ids = [runner.submit(FakeTaskBlocking(i, wait=0)).id for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [s["id"] for s in runner.tasks()] == ids


def test_name_defaults_to_class_name_and_can_be_given(runner):
    assert runner.submit(FakeTaskPolling(1, wait=0)).status()["name"] == "FakeTaskPolling"
    assert runner.submit(FakeTaskPolling(1, wait=0), name="mine").status()["name"] == "mine"


def test_pending_then_running_then_succeeded():
    with taskrunner.TaskRunner(max_workers=1) as runner:
        gate = Gate()
        first = runner.submit(gate)
        assert gate.entered.wait(10)
        second = runner.submit(FakeTaskBlocking(5, wait=0))
        running, pending = first.status(), second.status()
        assert tuple(running) == tuple(pending) == taskrunner.STATUS_KEYS
        assert running["state"] == "running" and running["done"] is False
        assert running["started_at"] is not None and running["finished_at"] is None
        assert running["runtime"] >= 0
        assert pending["state"] == "pending" and pending["started_at"] is None
        assert pending["runtime"] is None
        assert runner.counts()["pending"] == 1 and runner.counts()["running"] == 1
        gate.release.set()
        assert second.result(timeout=10) == 10
        assert first.result(timeout=10) == "released"


def test_polling_task_reports_running_and_counts_polls(runner):
    h = runner.submit(FakeTaskPolling(4, wait=0.3))
    assert wait_for(lambda: h.status()["state"] == "running")
    assert h.status()["kind"] == "polling"
    assert h.result(timeout=10) == 8
    status = h.status()
    assert status["state"] == "succeeded" and status["polls"] >= 2
    assert status["runtime"] >= 0.3


def test_failed_state_keeps_type_message_and_traceback(runner):
    class Exploding:
        def run(self):
            raise ValueError("bad input 42")

        def get_output(self):
            return None

    h = runner.submit(Exploding())
    assert isinstance(h.exception(timeout=10), ValueError)
    status = h.status()
    assert status["state"] == "failed" and status["done"] and status["result"] is None
    assert status["error"]["type"] == "ValueError"
    assert status["error"]["message"] == "bad input 42"
    assert "in run" in status["error"]["traceback"]
    assert "ValueError: bad input 42" in status["error"]["traceback"]


def test_counts_cover_every_state(runner):
    runner.submit(FakeTaskBlocking(1, wait=0)).result(timeout=10)
    counts = runner.counts()
    assert tuple(counts) == taskrunner.STATES
    assert counts["succeeded"] == 1 and sum(counts.values()) == 1


def test_final_state_never_changes(one_worker):
    # A blocking task that outlives its timeout: its late result is discarded.
    gate = Gate()
    h = one_worker.submit(gate, timeout=0.1)
    assert gate.entered.wait(10)
    assert wait_for(lambda: h.done())
    assert h.state == "timed_out"
    gate.release.set()
    # The one worker hands in the late result before it takes the next task.
    assert one_worker.submit(Blocking(2), kind="blocking").result(timeout=10) == 2
    status = h.status()
    assert status["state"] == "timed_out" and status["result"] is None
    assert h.cancel() is False


def test_tasks_filters_by_state(runner):
    ok = runner.submit(FakeTaskBlocking(1, wait=0))
    ok.result(timeout=10)
    bad = runner.submit(FakeTaskPolling(1, wait=30), timeout=0.05)
    assert wait_for(bad.done)
    assert [s["id"] for s in runner.tasks("succeeded")] == [ok.id]
    assert [s["id"] for s in runner.tasks(state="timed_out")] == [bad.id]
    with pytest.raises(ValueError, match="unknown state"):
        runner.tasks("finished")


def test_ids_page_newest_first(runner):
    ids = [runner.submit(FakeTaskBlocking(i, wait=0)).id for i in range(10)]
    runner.wait()
    assert runner.ids(limit=3) == ids[::-1][:3]
    assert runner.ids(limit=3, before=ids[7]) == ids[6:3:-1]
    assert runner.ids(state="failed") == []
