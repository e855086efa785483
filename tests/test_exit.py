"""Stopping with blocking tasks still running: a script's exit, the demo, the server.

Each says what it waits for once the wait passes a second, and a (second)
Ctrl-C quits at once with status 130 and no traceback.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
import requests

from conftest import wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Child:
    """A Python subprocess whose stderr lines can be awaited as they come."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        for stream, lines, report in (
            (self.process.stdout, self.stdout, False),
            (self.process.stderr, self.stderr, True),
        ):
            threading.Thread(target=self._read, args=(stream, lines, report), daemon=True).start()

    def _read(self, stream, lines: list[str], report: bool) -> None:
        for line in stream:
            lines.append(line)
            if report:
                self._lines.put(line)
        if report:
            self._lines.put(None)

    def expect(self, pattern: str, timeout: float = 20) -> str:
        """The first further stderr line matching ``pattern``; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no line matching {pattern!r}; {self.log()}")
            if re.search(pattern, line):
                return line

    def interrupt_and_wait(self, signum: int = signal.SIGINT, timeout: float = 10) -> float:
        """Sends ``signum`` and waits for the exit; the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signum)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def log(self) -> str:
        return f"stdout:\n{''.join(self.stdout)}\nstderr:\n{''.join(self.stderr)}"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


SCRIPT = """
import time
import taskrunner
from taskrunner.faketasks import FakeTaskBlocking
runner = taskrunner.TaskRunner()
handle = runner.submit(FakeTaskBlocking(1, wait={wait}))
while not handle.running():
    time.sleep(0.01)
print("submitted", flush=True)
{ending}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "ending, hint",
    [("", "(Ctrl-C to quit now)"), ("raise KeyboardInterrupt", "(Ctrl-C again to quit now)")],
)
def test_exit_says_what_it_waits_for_and_ctrl_c_quits_at_once(ending, hint):
    child = Child(["-c", SCRIPT.format(wait=60, ending=ending)])
    try:
        started = time.monotonic()
        line = child.expect("waiting for")
        # A short wait goes unsaid: the line comes after a second.
        assert time.monotonic() - started > 0.5
        assert line.strip() == f"taskrunner: waiting for 1 running task {hint}"
        assert child.interrupt_and_wait() < 5
    finally:
        child.kill()
    assert child.process.returncode == 130, child.log()
    assert "".join(child.stdout) == "submitted\n"
    after = "".join(child.stderr).split("waiting for", 1)[1]
    assert "Traceback" not in after and "Exception ignored" not in after, child.log()


@pytest.mark.slow
def test_exit_promises_nothing_of_ctrl_c_when_sigint_is_ignored():
    ending = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(wait=2, ending=ending)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "taskrunner: waiting for 1 running task\n"


@pytest.mark.slow
def test_the_sample_flow_says_what_it_waits_for_at_exit():
    # This seed makes the first task block for 1 s and others for up to 9 s,
    # so the flow ends while blocking tasks still run.
    wrapper = (
        "import random, runpy, sys; random.seed(2); "
        "runpy.run_path(sys.argv[1], run_name='__main__')"
    )
    child = Child(["-c", wrapper, str(EXAMPLES / "sample_flow.py")])
    try:
        child.expect(r"^taskrunner: waiting for \d+ running tasks \(Ctrl-C to quit now\)$")
        assert child.interrupt_and_wait() < 5
    finally:
        child.kill()
    assert child.process.returncode == 130, child.log()
    lines = "".join(child.stdout).split()
    assert len(lines) == 22 and lines[-2:] == ["False", "4"], child.log()
    assert "Traceback" not in "".join(child.stderr), child.log()


@pytest.mark.slow
def test_demo_ctrl_c_says_what_it_waits_for_and_a_second_quits_at_once():
    # 20 tasks: some are surely blocking (each kind has even odds).
    child = Child(["-m", "taskrunner", "demo", "--tasks", "20", "--wait", "60"])
    try:
        assert wait_for(lambda: child.stdout, timeout=20), child.log()
        assert child.stdout[0].startswith("registered 20 tasks")
        child.process.send_signal(signal.SIGINT)
        child.expect(r"^taskrunner: waiting for \d+ running tasks? \(Ctrl-C again to quit now\)$")
        assert child.interrupt_and_wait() < 5
    finally:
        child.kill()
    assert child.process.returncode == 130, child.log()
    assert "Traceback" not in "".join(child.stderr), child.log()


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, hint, code",
    [
        (signal.SIGINT, "(Ctrl-C again to quit now)", 130),
        (signal.SIGTERM, "(Ctrl-C to quit now)", 128 + signal.SIGTERM),
    ],
)
def test_serve_says_what_it_waits_for_and_a_second_signal_quits_at_once(signum, hint, code):
    pytest.importorskip("flask")
    from conftest_web import ServerProcess  # merges stderr into its log

    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    server = ServerProcess(command=command)
    try:
        body = {"type": "fake_blocking", "input": 1, "wait": 60}
        task = requests.post(f"{server.url}/api/tasks", json=body, timeout=10).json()
        url = f"{server.url}/api/tasks/{task['id']}"
        assert wait_for(lambda: requests.get(url, timeout=10).json()["state"] == "running")
        server.signal(signum)
        assert wait_for(lambda: "waiting for" in server.log(), timeout=20), server.log()
        assert "stopped" in server.log()
        assert f"taskrunner: waiting for 1 running task {hint}" in server.log()
        started = time.monotonic()
        server.signal(signum)
        assert server.wait(timeout=10) == code, server.log()
        assert time.monotonic() - started < 5
    finally:
        server.stop()
    assert "Traceback" not in server.log() and "Exception ignored" not in server.log()
