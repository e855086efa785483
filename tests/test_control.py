"""Timeouts, cancellation, poll policy and shutdown."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

import taskrunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

from conftest import Blocking, Gate, Polling, wait_for

EAGER = taskrunner.PollPolicy(min_interval=0.001, max_interval=0.001, ratio=0)


def poll_a_probe(runner: taskrunner.TaskRunner, times: int = 10) -> None:
    """Returns once the poller has polled a fresh task `times` times.

    The poller takes due entries earliest first: an `EAGER` task still in its
    queue would be polled again in between. This stands for "no further poll
    comes", without betting on a sleep.
    """
    probe = Polling(1, wait=60)
    h = runner.submit(probe, kind="polling", poll=EAGER)
    assert wait_for(lambda: probe.polls >= times)
    assert h.cancel()


class HeldPoll:
    """A polling task whose second get_output() holds the poll until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.inside = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def run(self) -> None:
        pass

    def get_output(self):
        self.calls += 1
        if self.calls != 2:
            return None
        self.inside.set()
        self.release.wait(30)
        self.returned.set()
        return "late"


def test_polling_task_times_out_and_is_no_longer_polled(runner):
    task = Polling(1, wait=60)
    h = runner.submit(task, kind="polling", timeout=0.2, poll=EAGER)
    with pytest.raises(taskrunner.TaskTimeoutError):
        h.result(timeout=10)
    assert h.state == "timed_out"
    polls = h.status()["polls"]  # counted up to the timeout, none after it
    assert polls >= 1
    # A poll counted just before the timeout may still be on its way into get_output().
    assert wait_for(lambda: task.polls == polls)
    poll_a_probe(runner)
    assert task.polls == polls and h.status()["polls"] == polls


def test_blocking_task_times_out_and_its_late_result_is_discarded(one_worker):
    gate = Gate()
    h = one_worker.submit(gate, timeout=0.1)
    assert gate.entered.wait(10)
    with pytest.raises(taskrunner.TaskTimeoutError):
        h.result(timeout=10)
    gate.release.set()
    # The one worker hands in the late result before it takes the next task.
    assert one_worker.submit(Blocking(2), kind="blocking").result(timeout=10) == 2
    assert h.state == "timed_out" and h.status()["result"] is None


def test_pending_task_times_out_without_running():
    with taskrunner.TaskRunner(max_workers=1) as runner:
        gate, late = Gate(), Gate()
        runner.submit(gate)
        assert gate.entered.wait(10)
        h = runner.submit(late, timeout=0.1)
        assert wait_for(h.done)
        assert h.state == "timed_out"
        gate.release.set()
    # Shut down and joined: the worker has been through its whole queue.
    assert late.ran is False


def test_task_finishing_before_its_timeout_succeeds(runner):
    h = runner.submit(FakeTaskPolling(5, wait=0.05), timeout=0.5)
    later = runner.submit(Polling(1, wait=60), kind="polling", timeout=0.5)
    assert h.result(timeout=10) == 10
    # Timeouts are handled earliest first: once `later` timed out, h's timeout has passed.
    with pytest.raises(taskrunner.TaskTimeoutError):
        later.result(timeout=10)
    assert h.state == "succeeded" and h.status()["result"] == 10


def test_cancel_pending_task_never_runs():
    with taskrunner.TaskRunner(max_workers=1) as runner:
        gate, never = Gate(), Gate()
        runner.submit(gate)
        assert gate.entered.wait(10)
        h = runner.submit(never)
        assert h.cancel() is True
        assert h.cancelled() and h.state == "cancelled" and h.done()
        gate.release.set()
        with pytest.raises(taskrunner.CancelledError):
            h.result()
    # Shut down and joined: the worker has been through its whole queue.
    assert never.ran is False


def test_cancel_running_polling_task_stops_its_polls(runner):
    task = Polling(1, wait=60)
    h = runner.submit(task, kind="polling", poll=EAGER)
    assert wait_for(lambda: task.polls >= 2)
    assert runner.cancel(h.id) is True
    assert h.state == "cancelled"
    polls = h.status()["polls"]  # counted up to the cancel, none after it
    # A poll counted just before the cancel may still be on its way into get_output().
    assert wait_for(lambda: task.polls == polls)
    poll_a_probe(runner)
    assert task.polls == polls and h.state == "cancelled"


def test_cancel_during_a_poll_discards_what_that_poll_returns(runner):
    task = HeldPoll()
    h = runner.submit(task, kind="polling", poll=EAGER)
    assert task.inside.wait(10)
    assert h.cancel() is True
    task.release.set()
    assert task.returned.wait(10)
    poll_a_probe(runner)
    assert task.calls == 2 and h.status()["polls"] == 2
    assert h.state == "cancelled" and h.status()["result"] is None


def test_cancel_running_blocking_task_returns_false(runner):
    gate = Gate()
    h = runner.submit(gate)
    assert gate.entered.wait(10)
    assert h.cancel() is False
    gate.release.set()
    assert h.result(timeout=10) == "released"
    assert h.cancel() is False  # finished: too late


class Stoppable(Polling):
    """A polling task that counts the calls of its cancel()."""

    def __init__(self, raises: bool = False) -> None:
        super().__init__(1, wait=60)
        self.cancels = 0
        self.raises = raises

    def cancel(self) -> None:
        self.cancels += 1
        if self.raises:
            raise RuntimeError("cannot stop")


def test_cancel_of_a_running_task_calls_its_cancel_method_once(runner):
    task = Stoppable()
    h = runner.submit(task, kind="polling", poll=EAGER)
    assert wait_for(lambda: task.polls >= 1)
    assert h.cancel() and h.cancel()
    assert task.cancels == 1


def test_a_timed_out_task_is_told_to_stop(runner):
    task = Stoppable()
    h = runner.submit(task, kind="polling", timeout=0.05)
    assert wait_for(lambda: h.done())
    assert h.state == "timed_out" and task.cancels == 1


def test_a_pending_task_is_not_told_to_stop(one_worker):
    gate = Gate()
    one_worker.submit(gate)
    assert gate.entered.wait(10)
    task = Stoppable()
    h = one_worker.submit(task, kind="blocking")
    assert h.cancel()
    gate.release.set()
    assert task.cancels == 0  # it never started: there is nothing to stop


def test_a_cancel_method_that_raises_is_logged(runner, caplog):
    task = Stoppable(raises=True)
    h = runner.submit(task, kind="polling", poll=EAGER)
    assert wait_for(lambda: task.polls >= 1)
    assert h.cancel() and h.state == "cancelled"
    assert task.cancels == 1
    assert f"cancel() of task {h.id} raised" in caplog.text


def test_cancel_twice_is_true_both_times(runner):
    h = runner.submit(FakeTaskPolling(1, wait=60))
    assert h.cancel() and h.cancel()


def test_poll_policy_per_runner_and_per_task():
    slow = taskrunner.PollPolicy(min_interval=0.2, max_interval=0.2, ratio=0)
    with taskrunner.TaskRunner(poll=slow) as runner:
        assert runner.poll == slow
        relaxed = Polling(1, wait=0.5)
        eager = Polling(1, wait=0.5)
        a = runner.submit(relaxed, kind="polling")
        b = runner.submit(eager, kind="polling", poll=taskrunner.PollPolicy(0.01, 0.01, 0))
        a.result(timeout=10)
        b.result(timeout=10)
        assert relaxed.polls <= 5
        assert eager.polls >= 20


def test_shutdown_waits_for_tasks_and_is_idempotent():
    runner = taskrunner.TaskRunner()
    handles = [runner.submit(FakeTaskPolling(i, wait=0.1)) for i in range(5)]
    handles += [runner.submit(FakeTaskBlocking(i, wait=0.1)) for i in range(5)]
    runner.shutdown(wait=True)
    assert all(h.done() for h in handles)
    runner.shutdown()
    runner.shutdown(wait=False)
    assert runner.closed
    with pytest.raises(RuntimeError, match="after shutdown"):
        runner.submit(FakeTaskBlocking(1, wait=0))


def test_shutdown_can_cancel_pending_tasks():
    runner = taskrunner.TaskRunner(max_workers=1)
    gate = Gate()
    runner.submit(gate)
    assert gate.entered.wait(10)
    queued = [runner.submit(Gate()) for _ in range(3)]
    runner.shutdown(wait=False, cancel_pending=True)
    assert all(h.state == "cancelled" for h in queued)
    gate.release.set()
    runner.shutdown(wait=True)
    assert runner.stats()["workers"] == 0


def test_context_manager_shuts_down():
    with taskrunner.TaskRunner() as runner:
        h = runner.submit(FakeTaskPolling(1, wait=0.05))
    assert h.done() and runner.closed


def test_idle_workers_leave_after_keep_alive():
    with taskrunner.TaskRunner(keep_alive=0.1) as runner:
        runner.submit(FakeTaskBlocking(1, wait=0)).result(timeout=10)
        assert wait_for(lambda: runner.stats()["workers"] == 0, timeout=5)
        assert runner.submit(FakeTaskBlocking(2, wait=0)).result(timeout=10) == 4


def test_tasks_beyond_the_cap_wait_in_fifo_order():
    order = []

    class Record:
        def __init__(self, i):
            self.i = i

        def run(self):
            order.append(self.i)
            time.sleep(0.01)
            return self.i

        def get_output(self):
            return None

    with taskrunner.TaskRunner(max_workers=1) as runner:
        for i in range(10):
            runner.submit(Record(i))
    assert order == list(range(10))


def test_forget_releases_a_finished_task(runner):
    class Result:
        pass

    class Producer:
        def run(self):
            return Result()

        def get_output(self):
            return None

    h = runner.submit(Producer())
    ref = weakref.ref(h.result(timeout=10))
    with pytest.raises(ValueError, match="not finished"):
        runner.forget(runner.submit(FakeTaskPolling(1, wait=60)).id)
    task_id = h.id
    runner.forget(task_id)
    del h  # a handle keeps its own task's record alive, as a Future does
    # The worker lets go of the record just after the final state that result() saw.
    assert wait_for(lambda: gc.collect() >= 0 and ref() is None)
    with pytest.raises(KeyError):
        runner.status(task_id)
