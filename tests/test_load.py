"""Load: 16 submitters and 2 readers at once, and 100,000 polling tasks, at full size."""

from __future__ import annotations

import threading
import time

import pytest

import taskrunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

SUBMITTERS = 16
PER_SUBMITTER = 10_000
POLLING_TASKS = 100_000
WATCHDOG_SECONDS = 300

pytestmark = pytest.mark.slow


def run_with_watchdog(target, *args) -> None:
    """Runs target in a thread; fails (rather than hangs) if it deadlocks."""
    errors: list[BaseException] = []

    def guarded():
        try:
            target(*args)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    thread.join(WATCHDOG_SECONDS)
    assert not thread.is_alive(), "deadlock: the load did not finish in time"
    if errors:
        raise errors[0]


def test_many_submitters_and_readers_lose_nothing():
    def load():
        with taskrunner.TaskRunner(retain_finished=None) as runner:
            ids: list[list[int]] = [[] for _ in range(SUBMITTERS)]
            start = threading.Barrier(SUBMITTERS + 2)
            stop = threading.Event()
            reads = [0]

            def submit(slot: int) -> None:
                start.wait()
                for i in range(PER_SUBMITTER):
                    task = FakeTaskBlocking(i, wait=0) if i % 2 else FakeTaskPolling(i, wait=0.01)
                    ids[slot].append(runner.submit(task).id)

            def read() -> None:
                start.wait()
                while not stop.is_set():
                    runner.counts()
                    runner.stats()
                    known = runner.ids(limit=50)
                    for task_id in known:
                        runner.status(task_id)
                    runner.tasks("running")
                    reads[0] += 1

            threads = [threading.Thread(target=submit, args=(n,)) for n in range(SUBMITTERS)]
            readers = [threading.Thread(target=read) for _ in range(2)]
            for t in threads + readers:
                t.start()
            for t in threads:
                t.join()
            done, not_done = runner.wait(timeout=WATCHDOG_SECONDS)
            stop.set()
            for t in readers:
                t.join()

            every = [i for slot in ids for i in slot]
            total = SUBMITTERS * PER_SUBMITTER
            assert len(every) == len(set(every)) == total
            assert set(every) == done and not not_done
            assert runner.counts()["succeeded"] == total
            assert all(s["done"] for s in runner.tasks())
            assert reads[0] > 0

    run_with_watchdog(load)


def test_100k_concurrent_polling_tasks_all_complete():
    def load():
        with taskrunner.TaskRunner() as runner:
            started = time.monotonic()
            for i in range(POLLING_TASKS):
                runner.submit(FakeTaskPolling(i, wait=1.0))
            assert runner.stats()["workers"] <= 1  # the one started with the runner
            done, not_done = runner.wait(timeout=WATCHDOG_SECONDS)
            assert len(done) == POLLING_TASKS and not not_done
            assert runner.counts()["succeeded"] == POLLING_TASKS
            # Every task waited its second, and none was forgotten by the poller.
            assert time.monotonic() - started >= 1.0

    run_with_watchdog(load)
