"""A task's optional progress(), as the status dict's ``progress``."""

from __future__ import annotations

import threading

import pytest

import taskrunner

from conftest import Blocking, Polling, wait_for

EAGER = taskrunner.PollPolicy(min_interval=0.001, max_interval=0.001, ratio=0)


class Stepping:
    """A blocking task that moves through steps as a test lets it, saying where it is."""

    def __init__(self) -> None:
        self.step = 0
        self.next = threading.Event()

    def run(self) -> str:
        for self.step in range(1, 4):
            self.next.wait(30)
            self.next.clear()
        return "done"

    def get_output(self) -> None:
        return None

    def progress(self):
        return {"fraction": self.step / 4, "message": f"step {self.step}"}


class Counting(Polling):
    """A polling task whose progress is its polls so far, out of ten."""

    def progress(self):
        return self.polls / 10


def test_a_task_without_progress_shows_none(runner):
    assert runner.submit(Blocking(1)).result(timeout=10) == 1
    h = runner.submit(Polling(1, wait=0.05), poll=EAGER)
    assert h.result(timeout=10) == 1 and h.status()["progress"] is None


def test_a_running_blocking_task_is_read_about_once_a_second_by_the_poller(runner):
    task = Stepping()
    h = runner.submit(task)
    assert wait_for(lambda: h.status()["progress"] is not None, timeout=10)
    assert h.status()["progress"] == {"fraction": 0.25, "message": "step 1"}
    task.next.set()  # step 2, while the worker stays inside run()
    expected = {"fraction": 0.5, "message": "step 2"}
    assert wait_for(lambda: h.status()["progress"] == expected, timeout=10)
    task.next.set()
    expected = {"fraction": 0.75, "message": "step 3"}
    assert wait_for(lambda: h.status()["progress"] == expected, timeout=10)
    task.next.set()
    assert h.result(timeout=10) == "done"


def test_a_polling_task_is_read_at_each_poll(runner):
    h = runner.submit(Counting(1, wait=0.3), poll=EAGER)
    assert wait_for(lambda: (h.status()["progress"] or {}).get("fraction", 0) >= 0.3)
    assert h.status()["progress"]["message"] is None
    h.result(timeout=10)
    assert h.status()["progress"]["fraction"] == 1.0  # kept within [0, 1]


@pytest.mark.parametrize(
    "said, shown",
    [
        (0.5, {"fraction": 0.5, "message": None}),
        (1, {"fraction": 1.0, "message": None}),
        (-3, {"fraction": 0.0, "message": None}),
        (float("nan"), {"fraction": None, "message": None}),
        ({"message": "warming up"}, {"fraction": None, "message": "warming up"}),
        ({"fraction": 0.25, "message": 7}, {"fraction": 0.25, "message": "7"}),
        (None, None),
    ],
)
def test_what_progress_says_is_normalized(runner, said, shown):
    class Says(Polling):
        def progress(self):
            return said

    h = runner.submit(Says(1, wait=0.02), poll=EAGER)
    h.result(timeout=10)
    assert h.status()["progress"] == shown


def test_a_progress_that_raises_shows_none_and_is_logged_once(runner, caplog):
    class Broken(Polling):
        def progress(self):
            raise RuntimeError("no idea")

    class Wrong(Polling):
        def progress(self):
            return "half"

    h = runner.submit(Broken(1, wait=0.1), poll=EAGER)
    assert h.result(timeout=10) == 1
    assert h.status()["progress"] is None and h.status()["polls"] > 3
    assert caplog.text.count(f"progress() of task {h.id} raised") == 1
    w = runner.submit(Wrong(1, wait=0.02), poll=EAGER)
    w.result(timeout=10)
    assert w.status()["progress"] is None
    assert "must give a number in [0, 1]" in caplog.text


def test_reading_progress_never_holds_up_the_worker(runner):
    reading, ran = threading.Event(), threading.Event()

    class Watched(Blocking):
        def run(self):
            assert reading.wait(10), "progress() was not read while run() went on"
            ran.set()
            return "ran"

        def progress(self):
            reading.set()
            ran.wait(10)  # if this held the worker, run() could not finish
            return 0.5

    h = runner.submit(Watched())
    assert h.result(timeout=10) == "ran"
