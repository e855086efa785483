"""The drop-in for the original scaffolding: TaskHandler, is_task_polling, the sample flow."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import taskrunner
from taskrunner import TaskHandler
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling, gen_task

from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


class HeldBlocking(FakeTaskBlocking):
    """A fake blocking task whose run() waits for the test to release it."""

    def __init__(self, input: int, release: threading.Event) -> None:
        super().__init__(input, wait=0)
        self.release = release

    def run(self) -> int:
        assert self.release.wait(30), "never released"
        return super().run()


class HeldPolling(FakeTaskPolling):
    """A fake polling task whose output is None until the test releases it."""

    def __init__(self, input: int, release: threading.Event) -> None:
        super().__init__(input, wait=0)
        self.release = release

    def get_output(self):
        return super().get_output() if self.release.is_set() else None


def test_handler_registers_without_blocking_and_reports_status():
    handler = TaskHandler()
    release = threading.Event()
    tasks = [(HeldBlocking, HeldPolling)[i % 2](i, release) for i in range(11)]
    try:
        started = time.perf_counter()
        ids = [handler.register_task(task) for task in tasks]
        # Generous: registration only queues; it never waits for a task.
        assert time.perf_counter() - started < 1.0
        assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 11
        assert all(handler.get_task_status(i) for i in ids)
        assert all(handler.get_task_result(i) is None for i in ids)
    finally:
        release.set()
    assert wait_for(lambda: not any(handler.get_task_status(i) for i in ids))
    assert [handler.get_task_result(i) for i in ids] == [2 * i for i in range(11)]


def test_fake_tasks_behave_like_the_originals():
    blocking = FakeTaskBlocking(3)
    polling = FakeTaskPolling(3)
    assert 1 <= blocking.time_wait <= 9 and 1 <= polling.time_wait <= 9
    assert polling.run() is None and polling.get_output() is None
    quick = FakeTaskBlocking(3, wait=0)
    assert quick.get_output() is None and quick.run() == 6 and quick.get_output() == 6
    assert isinstance(gen_task(1), (FakeTaskBlocking, FakeTaskPolling))


def test_code_using_its_own_task_module_works(tmp_path):
    # A stand-in for the original scaffolding: its own fake-task classes, which
    # taskrunner has never heard of, and the original flow around TaskHandler.
    (tmp_path / "faketasks.py").write_text(
        textwrap.dedent(
            """
            import time

            class FakeTask:
                def run(self): pass
                def get_output(self): pass

            class FakeTaskBlocking(FakeTask):
                def __init__(self, input):
                    self.input, self.output, self.time_wait = input, None, 0.3
                def run(self):
                    time.sleep(self.time_wait)
                    self.output = 2 * self.input
                    return self.output
                def get_output(self):
                    return self.output

            class FakeTaskPolling(FakeTask):
                def __init__(self, input):
                    self.input, self.output, self.time_wait = input, None, 0.3
                    self.time_start = None
                def run(self):
                    self.time_start = time.time()
                def get_output(self):
                    if self.time_start is None:
                        return None
                    if time.time() - self.time_start > self.time_wait:
                        self.output = 2 * self.input
                    return self.output
            """
        )
    )
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            from time import sleep
            from faketasks import FakeTaskBlocking, FakeTaskPolling
            from taskrunner import TaskHandler

            handler = TaskHandler()
            ids = [handler.register_task(cls(i)) for i in range(5)
                   for cls in (FakeTaskBlocking, FakeTaskPolling)]
            while any(handler.get_task_status(i) for i in ids):
                sleep(0.05)
            print([handler.get_task_result(i) for i in ids])
            print(sorted({handler.runner.status(i)["kind"] for i in ids}))
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "flow.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str([2 * i for i in range(5) for _ in range(2)])
    assert lines[1] == "['blocking', 'polling']"


@pytest.mark.slow  # the first task takes its random 1-9 s
def test_original_sample_flow_runs_on_taskrunner():
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sample_flow.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    stamps = [float(x) for x in lines[:20]]
    # Each registration returned at once, while the tasks take 1-9 s each.
    assert all(b - a < 0.5 for a, b in zip(stamps[::2], stamps[1::2], strict=True))
    assert lines[20:] == ["False", "4"]
    assert time.monotonic() - started < 30


def test_handler_accepts_a_configured_runner():
    runner = taskrunner.TaskRunner(max_workers=2)
    handler = TaskHandler(runner)
    task_id = handler.register_task(FakeTaskBlocking(5, wait=0))
    assert runner.result(task_id, timeout=10) == 10
    assert handler.get_task_result(task_id) == 10
    runner.shutdown()
