"""Faults inside tasks and callbacks: none of them loses a task or harms the runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

from conftest import Polling, wait_for


class BlockingGetOutput:
    """A polling task whose second get_output() call blocks until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.inside = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        pass

    def get_output(self):
        self.calls += 1
        if self.calls == 2:
            self.inside.set()
            self.release.wait(30)
            return "slow"
        return None


def test_a_blocking_get_output_does_not_stall_other_polls(runner):
    task = BlockingGetOutput()
    slow = runner.submit(task, kind="polling")
    assert task.inside.wait(10)
    try:
        started = time.monotonic()
        quick = [runner.submit(FakeTaskPolling(i, wait=0.05)) for i in range(50)]
        assert [h.result(timeout=10) for h in quick] == [2 * i for i in range(50)]
        # Documented bound: POLL_STALL_BOUND (0.1 s) before another poller takes over.
        assert time.monotonic() - started < 1.5
        assert not slow.done()
    finally:
        task.release.set()
    assert slow.result(timeout=10) == "slow"
    assert wait_for(lambda: runner.stats()["poller_queue"] == 0)


def test_tasks_that_never_finish_end_at_their_timeout(runner):
    release = threading.Event()

    class Forever:
        def run(self):
            release.wait(30)
            return "late"

        def get_output(self):
            return None

    stuck = runner.submit(Forever(), timeout=0.2)
    never = runner.submit(Polling(1, wait=3600), kind="polling", timeout=0.2)
    assert wait_for(lambda: stuck.done() and never.done())
    assert stuck.state == never.state == "timed_out"
    release.set()


def test_huge_and_unprintable_results_are_kept_as_they_are(runner):
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

        __str__ = __repr__

    class Returns:
        def __init__(self, value):
            self.value = value

        def run(self):
            return self.value

        def get_output(self):
            return None

    big = bytes(50 * 1024 * 1024)
    h_big = runner.submit(Returns(big))
    weird = Unprintable()
    h_weird = runner.submit(Returns(weird))
    assert h_big.result(timeout=30) is big
    assert h_weird.result(timeout=10) is weird
    assert runner.status(h_weird.id)["result"] is weird
    assert len(runner.tasks()) == 2


def test_a_raising_del_in_a_task_is_reported_not_fatal():
    code = """
        import taskrunner
        class Grumpy:
            def run(self):
                return 1
            def get_output(self):
                return None
            def __del__(self):
                raise RuntimeError("del failed")
        with taskrunner.TaskRunner() as runner:
            h = runner.submit(Grumpy())
            print(h.result(timeout=10), flush=True)
            print(runner.submit(Grumpy()).result(timeout=10), flush=True)
        """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]
    assert "del failed" in out.stderr  # Python's "Exception ignored in" report


def test_a_task_can_submit_another_task(runner):
    class Parent:
        def run(self):
            return runner.submit(FakeTaskBlocking(21, wait=0)).result(timeout=10)

        def get_output(self):
            return None

    assert runner.submit(Parent()).result(timeout=10) == 42


def test_shutdown_from_inside_a_task_is_refused_not_deadlocked(runner):
    class Stopper:
        def run(self):
            runner.shutdown(wait=True)

        def get_output(self):
            return None

    h = runner.submit(Stopper(), kind="blocking")
    err = h.exception(timeout=10)
    assert isinstance(err, RuntimeError) and "current thread" in str(err)
    assert runner.closed


EXIT_RUNS = int(os.environ.get("TASKRUNNER_EXIT_RUNS", "20"))


@pytest.mark.slow  # EXIT_RUNS interpreters, four at a time
def test_exit_with_1000_running_tasks_is_always_clean():
    code = textwrap.dedent(
        """
        import taskrunner
        from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
        runner = taskrunner.TaskRunner()
        for i in range(900):
            runner.submit(FakeTaskPolling(i, wait=3600))
        for i in range(100):
            runner.submit(FakeTaskBlocking(i, wait=0.05))
        """
    )
    procs = []
    for _ in range(EXIT_RUNS):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
        if len(procs) >= 4:
            _check_clean_exit(procs.pop(0))
    for proc in procs:
        _check_clean_exit(proc)


def _check_clean_exit(proc: subprocess.Popen) -> None:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("a process hung at exit")
    assert proc.returncode == 0, err.decode()
    assert err == b""
