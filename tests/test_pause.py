"""Pause and resume: while paused no pending task starts; running ones go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import taskrunner

from conftest import Blocking, Gate, Polling, wait_for

QUICK = taskrunner.Retry(3, backoff=0.05, jitter=False)
# Long enough to see that nothing starts; short enough for a quick suite.
SETTLE = 0.3


class Recorder:
    """A blocking task that notes, in ``order``, when it starts."""

    def __init__(self, label: str, order: list[str]) -> None:
        self.label, self.order = label, order

    def run(self) -> str:
        self.order.append(self.label)
        return self.label

    def get_output(self) -> None:
        return None


taskrunner.register_kind(Recorder, "blocking")


class Flaky:
    """A blocking task whose first run raises."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self) -> int:
        self.runs += 1
        if self.runs == 1:
            raise OSError("blip")
        return self.runs

    def get_output(self) -> int:
        return self.runs


taskrunner.register_kind(Flaky, "blocking")


def states(handles) -> list[str]:
    return [h.status()["state"] for h in handles]


def test_a_new_runner_is_not_paused_and_pause_and_resume_are_idempotent(runner):
    assert runner.paused is False and runner.stats()["paused"] is False
    runner.pause()
    runner.pause()
    assert runner.paused is True and runner.stats()["paused"] is True
    runner.resume()
    runner.resume()
    assert runner.paused is False


def test_blocking_and_polling_tasks_wait_while_paused_and_start_on_resume(runner):
    runner.pause()
    blocking = [runner.submit(Blocking(i), kind="blocking") for i in range(5)]
    polling = [runner.submit(Polling(i), kind="polling") for i in range(5)]
    unknown = runner.submit(Blocking("?"))  # kind found out by its run()
    time.sleep(SETTLE)
    assert set(states([*blocking, *polling, unknown])) == {"pending"}
    assert all(task.status()["started_at"] is None for task in polling)
    assert runner.stats()["queued"] == 6, "the blocking ones wait in the pool's queue"
    runner.resume()
    assert [h.result(timeout=10) for h in blocking] == list(range(5))
    assert [h.result(timeout=10) for h in polling] == list(range(5))
    assert unknown.result(timeout=10) == "?"


def test_running_tasks_go_on_while_paused(runner):
    gate = Gate()
    running = runner.submit(gate)
    slow_poll = runner.submit(Polling("polled", wait=0.2), kind="polling")
    assert gate.entered.wait(10)
    assert wait_for(lambda: slow_poll.running())
    runner.pause()
    assert slow_poll.result(timeout=10) == "polled", "a started polling task is still polled"
    gate.release.set()
    assert running.result(timeout=10) == "released"


def test_submits_are_accepted_and_cancel_works_while_paused(runner):
    runner.pause()
    blocking = runner.submit(Blocking(1), kind="blocking")
    polling = runner.submit(Polling(2), kind="polling")
    kept = runner.submit(Blocking(3), kind="blocking")
    assert blocking.cancel() and polling.cancel()
    assert states([blocking, polling, kept]) == ["cancelled", "cancelled", "pending"]
    runner.resume()
    assert kept.result(timeout=10) == 3
    assert states([blocking, polling]) == ["cancelled", "cancelled"], "resume starts none of them"


def test_on_resume_tasks_start_by_priority_then_submit_order(one_worker):
    order: list[str] = []
    one_worker.pause()
    handles = [
        one_worker.submit(Recorder(label, order), priority=priority)
        for label, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]
    ]
    time.sleep(SETTLE)
    assert order == []
    one_worker.resume()
    for handle in handles:
        handle.result(timeout=10)
    assert order == ["b", "d", "a", "c", "e"]


def test_polling_starts_held_while_paused_keep_priority_then_submit_order(runner):
    started: list[int] = []

    class Noted(Polling):
        def __init__(self, n: int) -> None:
            super().__init__(n)
            self.n = n

        def run(self) -> None:
            started.append(self.n)
            super().run()

    runner.pause()
    handles = [
        runner.submit(Noted(n), kind="polling", priority=priority)
        for n, priority in [(0, 0), (1, 2), (2, 0), (3, 2)]
    ]
    time.sleep(SETTLE)
    runner.resume()
    for handle in handles:
        handle.result(timeout=10)
    assert started == [1, 3, 0, 2]


def test_delayed_tasks_and_retries_due_while_paused_wait_for_resume(runner):
    flaky = Flaky()
    retried = runner.submit(flaky, retries=QUICK)
    assert wait_for(lambda: flaky.runs == 1 and retried.status()["attempt"] == 2)
    runner.pause()
    delayed = runner.submit(Blocking("late"), kind="blocking", delay=0.05)
    delayed_polling = runner.submit(Polling("late too"), kind="polling", delay=0.05)
    time.sleep(SETTLE)  # the delay and the retry's back-off have both passed
    assert states([retried, delayed, delayed_polling]) == ["pending"] * 3
    assert flaky.runs == 1
    runner.resume()
    assert retried.result(timeout=10) == 2
    assert delayed.result(timeout=10) == "late"
    assert delayed_polling.result(timeout=10) == "late too"


def test_a_timeout_counts_for_running_tasks_but_not_for_pending_ones_in_a_pause(runner):
    gate = Gate()
    running = runner.submit(gate, timeout=0.2)
    assert gate.entered.wait(10)
    runner.pause()
    waiting = runner.submit(Blocking("in time"), kind="blocking", timeout=0.2)
    assert wait_for(lambda: running.status()["state"] == "timed_out")
    time.sleep(SETTLE)
    assert waiting.status()["state"] == "pending", "its timeout waits for the pause to end"
    runner.resume()
    assert waiting.result(timeout=10) == "in time"
    gate.release.set()


def test_shutdown_while_paused_drains_and_does_not_hang():
    runner = taskrunner.TaskRunner()
    runner.pause()
    handles = [runner.submit(Blocking(i), kind="blocking") for i in range(3)]
    handles.append(runner.submit(Polling(3), kind="polling"))
    done = threading.Event()
    threading.Thread(target=lambda: (runner.shutdown(wait=True), done.set()), daemon=True).start()
    assert done.wait(20), "shutdown(wait=True) while paused returned"
    assert [h.result(timeout=0) for h in handles] == [0, 1, 2, 3]
    assert runner.paused is False
    with pytest.raises(RuntimeError, match="after shutdown"):
        runner.pause()


def test_shutdown_with_cancel_pending_while_paused_cancels_what_waited():
    runner = taskrunner.TaskRunner()
    runner.pause()
    handles = [runner.submit(Blocking(1), kind="blocking"), runner.submit(Polling(2))]
    done = threading.Event()

    def stop() -> None:
        runner.shutdown(wait=True, cancel_pending=True)
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    assert done.wait(20)
    assert states(handles) == ["cancelled", "cancelled"]


def test_idle_workers_still_leave_after_their_keep_alive_while_paused():
    runner = taskrunner.TaskRunner(keep_alive=0.1)
    try:
        runner.pause()
        handle = runner.submit(Blocking(1), kind="blocking")
        assert wait_for(lambda: runner.stats()["workers"] == 0), "the idle worker left"
        runner.resume()
        assert handle.result(timeout=10) == 1, "and a new one starts on resume"
    finally:
        runner.shutdown()


def test_the_stats_count_attaching_workers(runner):
    stats = runner.stats()
    assert stats["workers_attaching"] == 0
    assert list(stats) == list(taskrunner.STATS_KEYS)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_of_a_paused_runner_is_not_paused(runner):
    runner.pause()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            ok = not runner.paused and runner.submit(Blocking(2)).result(timeout=10) == 2
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    assert runner.paused, "the parent stays paused"


KILLED_WHILE_PAUSED = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    import taskrunner
    from test_journal import Double
    runner = taskrunner.TaskRunner(journal=sys.argv[1])
    runner.pause()
    handles = [runner.submit(Double(i), kind="blocking", durable=True) for i in range(3)]
    runner.flush()
    print(*[h.id for h in handles], flush=True)
    input()
    """
)


def test_a_runner_reopened_on_its_journal_is_not_paused(tmp_path):
    """A pause lives in the process: after a restart, the durable tasks that
    waited in a pause run at once."""
    db = str(tmp_path / "tasks.db")
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WHILE_PAUSED, db, str(Path(__file__).parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ids = [int(i) for i in process.stdout.readline().split()]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert len(ids) == 3
    with taskrunner.TaskRunner(journal=db) as runner:
        assert runner.paused is False
        assert [runner.handle(i).result(timeout=20) for i in ids] == [0, 2, 4]
