"""Tasks written with ``async def``: their coroutines run on one shared event-loop thread."""

import asyncio
import threading
import warnings

import pytest

import taskrunner

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


class AsyncTask:
    """run() is a coroutine function; get_output() is plain."""

    def __init__(self, value, wait=0.0, fail=False):
        self.value, self.wait, self.fail = value, wait, fail
        self.output = None
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def run(self):
        self.started.set()
        try:
            await asyncio.sleep(self.wait)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.fail:
            raise ValueError(f"bad {self.value}")
        self.output = 2 * self.value

    def get_output(self):
        return self.output


class ReturnsFromRun(AsyncTask):
    def get_output(self):
        return None

    async def run(self):
        await asyncio.sleep(0)
        return 3 * self.value


def test_an_async_run_is_awaited_and_its_output_is_the_result(runner):
    handle = runner.submit(AsyncTask(21, wait=0.01))
    assert handle.result(timeout=10) == 42
    status = handle.status()
    assert (status["state"], status["kind"], status["polls"]) == ("succeeded", "polling", 0)


def test_what_the_coroutine_returns_is_the_result_when_get_output_has_none(runner):
    assert runner.submit(ReturnsFromRun(5)).result(timeout=10) == 15


def test_a_known_polling_task_with_an_async_run_works_too(runner):
    assert runner.submit(AsyncTask(4), kind="polling").result(timeout=10) == 8


def test_a_raising_coroutine_fails_the_task_with_its_traceback(runner):
    handle = runner.submit(AsyncTask(1, fail=True))
    with pytest.raises(ValueError, match="bad 1"):
        handle.result(timeout=10)
    error = handle.status()["error"]
    assert (error["type"], error["message"]) == ("ValueError", "bad 1")
    assert "in run" in error["traceback"]


def test_many_async_tasks_take_no_thread_each(runner):
    before = threading.active_count()
    handles = [runner.submit(AsyncTask(i, wait=0.3)) for i in range(2_000)]
    assert all(h.result(timeout=60) == 2 * i for i, h in enumerate(handles))
    # A thread each would be 2,000. The pool runs each run() call briefly and
    # grows in waves while the submitting thread holds the GIL, so a loaded
    # machine may see a few dozen workers; the loop thread serves them all.
    assert runner.stats()["workers"] < 64
    assert threading.active_count() - before < 64


def test_cancelling_a_running_async_task_cancels_its_coroutine(runner):
    task = AsyncTask(1, wait=60)
    handle = runner.submit(task)
    assert task.started.wait(10)
    assert handle.cancel()
    assert task.cancelled.wait(10), "the coroutine saw CancelledError"
    assert handle.status()["state"] == "cancelled"


def test_a_timeout_cancels_the_coroutine(runner):
    task = AsyncTask(1, wait=60)
    handle = runner.submit(task, timeout=0.1)
    with pytest.raises(taskrunner.TaskTimeoutError):
        handle.result(timeout=10)
    assert task.cancelled.wait(10)


class AsyncOutput:
    """A plain run() and an async get_output(), done after a few polls."""

    def __init__(self, blocking):
        self.blocking = blocking
        self.checks = 0

    def run(self):
        return None

    async def get_output(self):
        await asyncio.sleep(0)
        self.checks += 1
        return "ready" if self.blocking or self.checks >= 3 else None


def test_an_async_get_output_of_a_blocking_task_is_awaited(runner):
    assert runner.submit(AsyncOutput(blocking=True), kind="blocking").result(timeout=10) == "ready"


def test_an_async_get_output_is_awaited_at_each_poll(runner):
    task = AsyncOutput(blocking=False)
    handle = runner.submit(task, kind="polling")
    assert handle.result(timeout=10) == "ready"
    assert task.checks == handle.status()["polls"] == 3


def test_no_coroutine_is_left_unawaited(runner):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handles = [runner.submit(AsyncTask(i)) for i in range(50)]
        assert [h.result(timeout=10) for h in handles] == [2 * i for i in range(50)]
