"""Many tasks at once: registration never blocks, and blocking tasks run side by side."""

from __future__ import annotations

import threading
import time

import taskrunner
from taskrunner.faketasks import FakeTaskPolling


class MeetAll:
    """Blocks in run() until every task of its group is running at the same time."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier

    def run(self) -> str:
        self.barrier.wait(timeout=20)
        return "met"

    def get_output(self) -> None:
        return None


def test_100_blocking_tasks_all_run_at_once_and_register_quickly():
    barrier = threading.Barrier(100)
    with taskrunner.TaskRunner() as runner:
        slowest = 0.0
        handles = []
        for _ in range(100):
            started = time.perf_counter()
            handles.append(runner.submit(MeetAll(barrier)))
            slowest = max(slowest, time.perf_counter() - started)
        # Generous: registration only queues; it never waits for a task.
        assert slowest < 0.1
        results = [h.result(timeout=30) for h in handles]
    # The barrier breaks (and tasks fail) unless all 100 ran concurrently.
    assert results == ["met"] * 100


def test_100_mixed_fake_tasks_finish_together():
    from taskrunner.faketasks import gen_task

    with taskrunner.TaskRunner() as runner:
        started = time.monotonic()
        handles = [runner.submit(gen_task(i, wait=0.5)) for i in range(100)]
        results = [h.result(timeout=30) for h in handles]
        elapsed = time.monotonic() - started
    assert results == [2 * i for i in range(100)]
    # Serial execution would take 50 s; concurrent takes about 0.5 s.
    assert elapsed < 10


class SleepZero:
    """Releases the GIL once, as any task that reads or waits does, and returns."""

    def run(self) -> int:
        time.sleep(0)
        return 1

    def get_output(self) -> int:
        return 1


def test_a_flood_of_tasks_that_release_the_gil_stays_on_a_few_threads():
    # Each sleep(0) hands the GIL to another thread: beyond the two or three
    # workers that keep the GIL busy, more only fight over it. The pool used
    # to grow to dozens (or its cap of 256) here.
    with taskrunner.TaskRunner() as runner:
        handles = [runner.submit(SleepZero(), kind="blocking") for _ in range(30_000)]
        peak = 0
        while not handles[-1].done():
            peak = max(peak, runner.stats()["workers"])
            time.sleep(0.002)
        runner.wait()
        assert all(h.result() == 1 for h in handles)
    assert peak <= 8, f"{peak} workers for tasks that only take turns with the GIL"


def test_thousands_of_polling_tasks_need_no_thread_each():
    with taskrunner.TaskRunner() as runner:
        handles = [runner.submit(FakeTaskPolling(i, wait=0.2)) for i in range(5000)]
        assert runner.stats()["workers"] <= 1  # the one started with the runner
        done, not_done = runner.wait(handles, timeout=60)
        assert len(done) == 5000 and not not_done
        assert runner.stats()["workers"] <= 1
        assert runner.counts()["succeeded"] == 5000


def test_concurrent_submitters_get_unique_ids():
    with taskrunner.TaskRunner() as runner:
        ids: list[int] = []
        lock = threading.Lock()

        def submit_many():
            mine = [runner.submit(FakeTaskPolling(0, wait=0)).id for _ in range(500)]
            with lock:
                ids.extend(mine)

        threads = [threading.Thread(target=submit_many) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        runner.wait(timeout=60)
        assert len(ids) == len(set(ids)) == 4000
        assert runner.counts()["succeeded"] == 4000
