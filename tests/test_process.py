"""Whole-process behaviour, each in a subprocess: interpreter exit, Ctrl-C, fork."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_exit_with_running_tasks_is_clean_and_prompt():
    out = run_python(
        """
        import taskrunner
        from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
        runner = taskrunner.TaskRunner(max_workers=4)
        for i in range(200):
            runner.submit(FakeTaskPolling(i, wait=3600))   # would never finish
        blocking = [runner.submit(FakeTaskBlocking(i, wait=0.3)) for i in range(20)]
        print("submitted", flush=True)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "submitted"
    assert out.stderr == ""


def test_exit_waits_for_running_blocking_tasks_and_cancels_the_rest():
    out = run_python(
        """
        import atexit, time
        handles = []
        # atexit runs last-registered first: this reports after taskrunner's hook.
        atexit.register(lambda: print(*[h.state for h in handles], flush=True))
        import taskrunner
        from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
        runner = taskrunner.TaskRunner(max_workers=1)
        running = runner.submit(FakeTaskBlocking(1, wait=0.5))
        queued = runner.submit(FakeTaskBlocking(2, wait=0.5))
        polled = runner.submit(FakeTaskPolling(3, wait=3600))
        while not running.running():
            time.sleep(0.01)
        handles += [running, queued, polled]
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["succeeded", "cancelled", "cancelled"]


def test_exit_with_a_runner_that_was_garbage_collected():
    out = run_python(
        """
        import taskrunner
        from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
        def work():
            r = taskrunner.TaskRunner()
            return [r.submit(FakeTaskBlocking(1, wait=0.2)), r.submit(FakeTaskPolling(1, wait=0.2))]
        handles = work()
        print([h.result(timeout=10) for h in handles])
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2, 2]"


WAIT_CALLS = ["h.result()", "runner.wait()", "list(runner.as_completed())"]


@pytest.mark.parametrize("wait_call", WAIT_CALLS)
def test_ctrl_c_interrupts_a_wait(wait_call):
    code = f"""
        import taskrunner, sys
        from taskrunner.faketasks import FakeTaskPolling
        runner = taskrunner.TaskRunner()
        h = runner.submit(FakeTaskPolling(1, wait=3600))
        print("waiting", flush=True)
        try:
            {wait_call}
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert out.strip() == "interrupted"
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_runner_works_in_a_forked_child():
    out = run_python(
        """
        import os, taskrunner
        from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
        runner = taskrunner.TaskRunner()
        runner.submit(FakeTaskBlocking(1, wait=0)).result()
        inherited = runner.submit(FakeTaskPolling(1, wait=3600))
        pid = os.fork()
        if pid == 0:
            child = [runner.submit(FakeTaskBlocking(5, wait=0.05)),
                     runner.submit(FakeTaskPolling(6, wait=0.05))]
            results = [h.result(timeout=10) for h in child]
            print("child", results, inherited.state, flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("parent", os.waitstatus_to_exitcode(status), inherited.state, flush=True)
        inherited.cancel()
        """
    )
    assert out.returncode == 0, out.stderr
    lines = sorted(out.stdout.splitlines())
    assert lines == ["child [10, 12] cancelled", "parent 0 running"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_the_runner_is_busy_never_deadlocks_the_child():
    out = run_python(
        """
        import os, taskrunner
        from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
        runner = taskrunner.TaskRunner()
        ok = 0
        for round in range(20):
            for i in range(2000):
                runner.submit(FakeTaskBlocking(i, wait=0) if i % 2 else FakeTaskPolling(i, wait=0))
            pid = os.fork()
            if pid == 0:
                h = runner.submit(FakeTaskBlocking(7, wait=0))
                os._exit(0 if h.result(timeout=10) == 14 else 1)
            _, status = os.waitpid(pid, 0)
            ok += os.waitstatus_to_exitcode(status) == 0
        runner.wait(timeout=60)
        print(ok, runner.counts()["succeeded"], flush=True)
        """,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["20", "40000"]
