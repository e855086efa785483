"""result / exception / wait / as_completed / callbacks, and that waits release the GIL."""

from __future__ import annotations

import threading
import time

import pytest

import taskrunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling

from conftest import Gate, Polling


class Released:
    """A polling task whose output is None until its event is set."""

    def __init__(self, value, release: threading.Event) -> None:
        self.value, self.release = value, release

    def run(self) -> None:
        pass

    def get_output(self):
        return self.value if self.release.is_set() else None


def test_result_times_out_while_task_runs(runner):
    h = runner.submit(FakeTaskPolling(1, wait=60))
    with pytest.raises(TimeoutError, match="not done"):
        h.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        runner.result(h.id, timeout=0)
    with pytest.raises(TimeoutError):
        h.exception(timeout=0.01)


def test_result_by_id_and_exception_none_on_success(runner):
    h = runner.submit(FakeTaskBlocking(21, wait=0.01))
    assert runner.result(h.id, timeout=10) == 42
    assert h.exception() is None


def test_wait_all_completed(runner):
    handles = [runner.submit(FakeTaskPolling(i, wait=0.02 * i)) for i in range(10)]
    done, not_done = runner.wait(handles, timeout=10)
    assert done == {h.id for h in handles} and not_done == set()


def test_wait_all_sees_tasks_end_in_any_order(runner):
    release = threading.Event()
    first = runner.submit(Released(0, release), kind="polling")
    rest = [runner.submit(FakeTaskPolling(i, wait=0.01 * i)) for i in range(1, 6)]
    runner.wait(rest, timeout=10)
    # The first task is still running while those after it have ended.
    done, not_done = runner.wait([first, *rest], timeout=0.1)
    assert done == {h.id for h in rest} and not_done == {first.id}
    threading.Timer(0.1, release.set).start()
    done, not_done = runner.wait([first, *rest], timeout=10)
    assert done == {first.id, *(h.id for h in rest)} and not_done == set()


def test_wait_first_completed(runner):
    fast = runner.submit(FakeTaskPolling(1, wait=0.01))
    slow = runner.submit(FakeTaskPolling(1, wait=60))
    done, not_done = runner.wait([fast, slow], timeout=10, return_when=taskrunner.FIRST_COMPLETED)
    assert done == {fast.id} and not_done == {slow.id}


def test_wait_first_exception(runner):
    class Fails:
        def run(self):
            raise ValueError

        def get_output(self):
            return None

    slow = runner.submit(FakeTaskPolling(1, wait=60))
    ok = runner.submit(FakeTaskBlocking(1, wait=0))
    ok.result(timeout=10)
    bad = runner.submit(Fails())
    done, not_done = runner.wait(timeout=10, return_when=taskrunner.FIRST_EXCEPTION)
    assert bad.id in done and ok.id in done and not_done == {slow.id}


def test_wait_timeout_returns_not_done(runner):
    slow = runner.submit(FakeTaskPolling(1, wait=60))
    started = time.monotonic()
    done, not_done = runner.wait(timeout=0.1)
    assert done == set() and not_done == {slow.id}
    assert time.monotonic() - started < 5


def test_wait_rejects_bad_return_when(runner):
    with pytest.raises(ValueError, match="return condition"):
        runner.wait(return_when="SOMETIMES")


def test_as_completed_yields_in_completion_order(runner):
    releases = [threading.Event() for _ in range(3)]
    handles = [runner.submit(Released(i, r), kind="polling") for i, r in enumerate(releases)]
    finishing_order = [1, 2, 0]
    releases[finishing_order[0]].set()
    order = []
    for task_id in runner.as_completed(handles, timeout=10):
        order.append(task_id)
        if len(order) < len(finishing_order):  # the next finishes only after this one
            releases[finishing_order[len(order)]].set()
    assert order == [handles[i].id for i in finishing_order]


def test_as_completed_yields_finished_tasks_first_and_times_out(runner):
    done = runner.submit(FakeTaskBlocking(1, wait=0))
    done.result(timeout=10)
    slow = runner.submit(FakeTaskPolling(1, wait=60))
    it = runner.as_completed([slow.id, done.id], timeout=0.1)
    assert next(it) == done.id
    with pytest.raises(TimeoutError, match="1 \\(of 2\\)"):
        next(it)


def test_done_callback_called_once_with_the_handle(runner):
    seen = []
    called = threading.Event()

    def callback(handle):
        seen.append((handle.id, handle.state))
        called.set()

    h = runner.submit(FakeTaskPolling(1, wait=0.05))
    h.add_done_callback(callback)
    assert called.wait(10)
    runner.shutdown(wait=True)  # joins the runner's threads: no call can still come
    assert seen == [(h.id, "succeeded")]


def test_done_callback_on_finished_task_runs_at_once(runner):
    h = runner.submit(FakeTaskBlocking(1, wait=0))
    h.result(timeout=10)
    seen = []
    h.add_done_callback(lambda handle: seen.append(handle.result()))
    assert seen == [2]
    with pytest.raises(TypeError):
        h.add_done_callback(42)


def test_raising_callback_is_logged_and_others_still_run(runner, caplog):
    gate = Gate()
    h = runner.submit(gate)
    seen = []
    called = threading.Event()

    def bad(_):
        raise RuntimeError("callback broke")

    def good(handle):
        seen.append(handle.id)
        called.set()

    h.add_done_callback(bad)
    h.add_done_callback(good)
    gate.release.set()
    assert h.result(timeout=10) == "released"
    # Callbacks run after the final state (as with concurrent.futures), in the
    # order they were added: once the second has run, the first has been logged.
    assert called.wait(10)
    assert seen == [h.id]
    assert any("done callback" in r.message for r in caplog.records)
    assert any("callback broke" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


def test_callback_can_submit_another_task(runner):
    chained = []
    ready = threading.Event()

    def resubmit(handle):
        chained.append(runner.submit(FakeTaskBlocking(handle.result(), wait=0)))
        ready.set()

    runner.submit(FakeTaskBlocking(1, wait=0)).add_done_callback(resubmit)
    assert ready.wait(10)
    assert chained[0].result(timeout=10) == 4


def test_waiting_releases_the_gil(runner):
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        h = runner.submit(Polling(1, wait=0.3), kind="polling")
        before = counter[0]
        h.result(timeout=10)
        during = counter[0] - before
    finally:
        stop.set()
        spinner.join()
    # A waiter holding the GIL would have left the spinner near zero.
    assert during > 10_000


def test_event_stream_reports_every_change_in_order(runner):
    stream = runner.events()
    h = runner.submit(FakeTaskBlocking(1, wait=0.2))
    seen = []
    deadline = time.monotonic() + 10
    while ("succeeded" not in [state for _, state in seen]) and time.monotonic() < deadline:
        seen += stream.next_batch(timeout=1)
    assert seen == [(h.id, "pending"), (h.id, "running"), (h.id, "succeeded")]
    assert stream.next_batch(timeout=0.05) == []
    assert stream.take_lagged() is False


def test_event_stream_flags_a_consumer_that_fell_behind(runner):
    stream = runner.events(capacity=2)
    for i in range(5):
        runner.submit(FakeTaskBlocking(i, wait=0)).result(timeout=10)
    assert len(stream.next_batch(timeout=0)) == 2
    assert stream.take_lagged() is True
    assert stream.take_lagged() is False


def test_event_stream_ends_promptly_after_shutdown():
    runner = taskrunner.TaskRunner()
    stream = runner.events()
    runner.submit(FakeTaskBlocking(1, wait=0)).result(timeout=10)
    # The last event is published just after the final state that result() saw.
    states = []
    for _ in range(3):
        states += [state for _, state in stream.next_batch(timeout=10)]
        if "succeeded" in states:
            break
    assert states == ["pending", "running", "succeeded"]
    threading.Timer(0.2, runner.shutdown).start()
    started = time.monotonic()
    assert stream.next_batch(timeout=30) == []
    assert time.monotonic() - started < 5


def test_waiting_on_handles_of_forgotten_tasks_counts_them_done():
    # The runner keeps one finished task: the others are forgotten before the
    # wait begins, and their handles still know how they ended.
    with taskrunner.TaskRunner(retain_finished=1) as runner:
        handles = [runner.submit(FakeTaskBlocking(i, wait=0)) for i in range(20)]
        for handle in handles:
            handle.result(timeout=10)
        with pytest.raises(KeyError):
            runner.status(handles[0].id)
        done, not_done = runner.wait(handles, timeout=10)
        assert done == {h.id for h in handles} and not not_done
        assert sorted(runner.as_completed(handles, timeout=10)) == [h.id for h in handles]
        with pytest.raises(KeyError):
            runner.wait([handles[0].id], timeout=10)
