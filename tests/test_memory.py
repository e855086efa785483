"""Retention: finished records are forgotten beyond a count and an age."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

import taskrunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

from conftest import wait_for


class Payload:
    pass


class MakesPayload:
    def run(self):
        return Payload()

    def get_output(self):
        return None


def test_only_the_newest_finished_records_are_kept():
    with taskrunner.TaskRunner(retain_finished=10) as runner:
        ids = [runner.submit(FakeTaskBlocking(i, wait=0)).id for i in range(50)]
        runner.wait(timeout=30)
        runner.submit(FakeTaskBlocking(0, wait=0)).result(timeout=10)
        kept = [s["id"] for s in runner.tasks()]
        assert len(kept) == 10 and kept[-1] > ids[-1]
        assert sum(runner.counts().values()) == 10
        with pytest.raises(KeyError):
            runner.status(ids[0])


def test_unfinished_tasks_are_never_forgotten():
    with taskrunner.TaskRunner(retain_finished=0) as runner:
        slow = runner.submit(FakeTaskPolling(1, wait=60))
        for i in range(20):
            runner.submit(FakeTaskBlocking(i, wait=0)).result(timeout=10)
        # A record is handed to retention just after the final state that result() saw.
        assert wait_for(lambda: [s["id"] for s in runner.tasks()] == [slow.id])
        slow.cancel()


def test_finished_records_expire_by_age():
    with taskrunner.TaskRunner(retain_seconds=0.1) as runner:
        old = runner.submit(FakeTaskBlocking(1, wait=0))
        old.result(timeout=10)
        time.sleep(0.2)
        runner.submit(FakeTaskBlocking(2, wait=0))  # any activity expires old records
        with pytest.raises(KeyError):
            runner.status(old.id)


def test_an_idle_runner_forgets_old_records_on_time():
    with taskrunner.TaskRunner(retain_seconds=0.1) as runner:
        old = runner.submit(FakeTaskBlocking(1, wait=0))
        old.result(timeout=10)
        time.sleep(0.3)
        with pytest.raises(KeyError):
            runner.status(old.id)


def test_an_expired_result_is_released():
    with taskrunner.TaskRunner(retain_finished=1) as runner:
        h = runner.submit(MakesPayload())
        ref = weakref.ref(h.result(timeout=10))
        del h
        runner.submit(FakeTaskBlocking(1, wait=0)).result(timeout=10)
        # Retention forgets the first record just after the second one's final state.
        assert wait_for(lambda: gc.collect() >= 0 and ref() is None)


def test_retention_parameters_are_validated():
    with pytest.raises(ValueError, match="retain_finished"):
        taskrunner.TaskRunner(retain_finished=-1)
    with pytest.raises(ValueError, match="retain_seconds"):
        taskrunner.TaskRunner(retain_seconds=-1)
    taskrunner.TaskRunner(retain_finished=None, retain_seconds=None).shutdown()


PEAK_RSS = """
import resource, sys, taskrunner
from taskrunner.faketasks import FakeTaskBlocking
total, batch = int(sys.argv[1]), 10_000
with taskrunner.TaskRunner() as runner:
    for _ in range(total // batch):
        for i in range(batch):
            runner.submit(FakeTaskBlocking(i, wait=0))
        runner.wait()
    assert runner.counts()["succeeded"] == min(total, 100_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(tasks: int) -> int:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(tasks)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.slow
def test_a_million_tasks_keep_memory_bounded():
    # The default retention keeps the newest 100,000 finished records.
    small, large = peak_rss_kib(100_000), peak_rss_kib(1_000_000)
    assert large <= small * 1.10 + 8 * 1024, (small, large)


def test_handles_are_left_out_of_the_cycle_collector():
    # A handle holds no Python object the collector could see: tracking
    # 100,000 of them would only make each collection walk them.
    with taskrunner.TaskRunner() as runner:
        handle = runner.submit(MakesPayload(), kind="blocking")
        assert not gc.is_tracked(handle)
        handle.result(timeout=10)
        assert not gc.is_tracked(handle) and isinstance(handle.result(), Payload)
        assert not gc.is_tracked(runner.handle(handle.id))
