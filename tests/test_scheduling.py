"""Scheduling options of a submit: retries, delays, priorities, dependencies, limits."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

import taskrunner

from conftest import Blocking, Gate, Polling, wait_for

QUICK = taskrunner.Retry(3, backoff=0.01, jitter=False)
EAGER = taskrunner.PollPolicy(min_interval=0.001, max_interval=0.001, ratio=0)


class Flaky:
    """A blocking task whose first ``fails`` runs raise ``error``."""

    def __init__(self, fails: int, error: type[BaseException] = OSError) -> None:
        self.fails, self.error, self.runs = fails, error, 0

    def run(self) -> int:
        self.runs += 1
        if self.runs <= self.fails:
            raise self.error(f"blip {self.runs}")
        return self.runs

    def get_output(self) -> int:
        return self.runs


taskrunner.register_kind(Flaky, "blocking")


class FlakyPolling:
    """A polling task whose first ``fails`` runs end in a get_output() that raises."""

    def __init__(self, fails: int) -> None:
        self.fails, self.runs = fails, 0

    def run(self) -> None:
        self.runs += 1

    def get_output(self) -> int:
        if self.runs <= self.fails:
            raise ConnectionError(f"lost on run {self.runs}")
        return self.runs


taskrunner.register_kind(FlakyPolling, "polling")


class Counted:
    """A blocking task that counts how many of its kind run at once."""

    lock = threading.Lock()

    def __init__(self, board: dict, wait: float = 0.05) -> None:
        self.board, self.wait = board, wait

    def run(self) -> None:
        with self.lock:
            self.board["now"] += 1
            self.board["most"] = max(self.board["most"], self.board["now"])
        time.sleep(self.wait)
        with self.lock:
            self.board["now"] -= 1
        return None

    def get_output(self) -> None:
        return None


taskrunner.register_kind(Counted, "blocking")


class Recorder:
    """A blocking task that notes its name in a shared list when it runs."""

    def __init__(self, name: str, order: list) -> None:
        self.name, self.order = name, order

    def run(self) -> str:
        self.order.append(self.name)
        return self.name

    def get_output(self) -> str:
        return self.name


taskrunner.register_kind(Recorder, "blocking")


# Retries


def test_a_failing_task_runs_again_on_the_same_object_until_it_succeeds(runner):
    task = Flaky(2)
    h = runner.submit(task, retries=QUICK)
    assert h.result(timeout=10) == 3
    status = h.status()
    assert task.runs == 3 and status["attempt"] == 3
    assert status["state"] == "succeeded" and status["error"] is None


def test_the_final_failure_carries_the_last_error_and_the_attempts_made(runner):
    h = runner.submit(Flaky(9), retries=QUICK)
    with pytest.raises(OSError, match="blip 3"):
        h.result(timeout=10)
    status = h.status()
    assert status["state"] == "failed" and status["attempt"] == 3
    assert status["error"]["message"] == "blip 3"


def test_retries_as_an_int_counts_the_runs_after_the_first(runner):
    task = Flaky(9)
    h = runner.submit(task, retries=taskrunner.Retry(2, backoff=0, jitter=False))
    assert wait_for(h.done)
    assert task.runs == 2
    task = Flaky(1)
    assert runner.submit(task, retries=1).result(timeout=10) == 2  # 1 s back-off by default


def test_between_attempts_the_task_is_pending_with_its_last_error_and_next_start(runner):
    slow = taskrunner.Retry(2, backoff=30, jitter=False)
    before = time.time()
    h = runner.submit(Flaky(1), retries=slow)
    assert wait_for(lambda: h.status()["attempt"] == 2)
    status = h.status()
    assert status["state"] == "pending" and not status["done"]
    assert status["error"]["message"] == "blip 1"
    assert before + 29 < status["not_before"] < time.time() + 31
    assert status["started_at"] is None
    assert h.cancel() and h.state == "cancelled"


def test_only_the_exceptions_named_by_on_are_retried(runner):
    only_network = taskrunner.Retry(5, backoff=0, on=(ConnectionError, TimeoutError))
    task = Flaky(3, error=ValueError)
    h = runner.submit(task, retries=only_network)
    with pytest.raises(ValueError):
        h.result(timeout=10)
    assert task.runs == 1
    task = Flaky(3, error=ConnectionResetError)  # a subclass of ConnectionError
    assert runner.submit(task, retries=only_network).result(timeout=10) == 4


def test_a_polling_task_whose_poll_fails_runs_again(runner):
    task = FlakyPolling(2)
    h = runner.submit(task, retries=QUICK, poll=EAGER)
    assert h.result(timeout=10) == 3
    assert task.runs == 3 and h.status()["attempt"] == 3


def test_a_timeout_covers_every_attempt(runner):
    slow = taskrunner.Retry(5, backoff=30, jitter=False)
    task = Flaky(9)
    h = runner.submit(task, retries=slow, timeout=0.3)
    assert wait_for(h.done)
    assert h.state == "timed_out" and task.runs == 1


def test_a_shutdown_that_cancels_pending_tasks_ends_retries():
    runner = taskrunner.TaskRunner()
    slow = taskrunner.Retry(5, backoff=30, jitter=False)
    h = runner.submit(Flaky(9), retries=slow)
    assert wait_for(lambda: h.status()["attempt"] == 2)
    runner.shutdown(wait=True, cancel_pending=True)
    assert h.state == "cancelled"


def test_retries_go_on_after_a_plain_shutdown():
    runner = taskrunner.TaskRunner()
    h = runner.submit(Flaky(2), retries=QUICK)
    runner.shutdown(wait=True)
    assert h.state == "succeeded" and h.result() == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2, "backoff": -1}, "backoff"),
        ({"attempts": 2, "backoff": float("nan")}, "backoff"),
        ({"attempts": 2, "backoff": 5, "max_backoff": 1}, "max_backoff"),
        ({"attempts": 2, "max_backoff": 1e9}, "max_backoff"),
    ],
)
def test_a_bad_retry_policy_says_what_is_wrong(options, message):
    with pytest.raises(ValueError, match=message):
        taskrunner.Retry(**options)


def test_retry_on_takes_exception_classes_only(runner):
    with pytest.raises(TypeError, match="exception classes"):
        taskrunner.Retry(2, on=(OSError, "ValueError"))
    assert taskrunner.Retry(2, on=OSError).on == (OSError,)
    assert taskrunner.Retry(2).on == (Exception,)
    with pytest.raises(TypeError, match="retries takes"):
        runner.submit(Blocking(), retries="3")
    with pytest.raises(ValueError, match="retries must be >= 0"):
        runner.submit(Blocking(), retries=-1)


def test_a_poll_policy_forgives_errors_in_a_row_up_to_its_count(runner, caplog):
    class Unsteady:
        """get_output() raises on the polls named in ``bad``, then answers 7."""

        def __init__(self, bad: set[int], done_at: int) -> None:
            self.bad, self.done_at, self.polls = bad, done_at, 0

        def run(self) -> None:
            pass

        def get_output(self):
            self.polls += 1
            if self.polls in self.bad:
                raise ConnectionError(f"poll {self.polls}")
            return 7 if self.polls >= self.done_at else None

    forgiving = taskrunner.PollPolicy(0.001, 0.001, 0, errors=2)
    # Two in a row, a good poll, two again: never more than two in a row.
    ok = runner.submit(Unsteady({1, 2, 4, 5}, 7), kind="polling", poll=forgiving)
    assert ok.result(timeout=10) == 7
    assert "polling again (2 of 2 errors in a row)" in caplog.text
    three = runner.submit(Unsteady({1, 2, 3}, 9), kind="polling", poll=forgiving)
    with pytest.raises(ConnectionError, match="poll 3"):
        three.result(timeout=10)
    assert taskrunner.PollPolicy(errors=3).errors == 3
    with pytest.raises(ValueError, match="errors"):
        taskrunner.PollPolicy(errors=-1)


def test_a_retry_is_journaled_at_its_next_attempt(tmp_path):
    path = tmp_path / "journal.db"
    slow = taskrunner.Retry(2, backoff=30, jitter=False)
    with taskrunner.TaskRunner(journal=path) as runner:
        h = runner.submit(Flaky(9), retries=slow)
        assert wait_for(lambda: h.status()["attempt"] == 2)
        runner.flush(timeout=10)
        row = taskrunner.JournalView(path).status(h.id)
        assert row["state"] == "pending" and row["attempt"] == 2
        assert row["error"]["message"] == "blip 1"
        h.cancel()


def test_a_repeat_with_a_key_gets_its_task_even_when_its_options_no_longer_hold(tmp_path):
    path = tmp_path / "journal.db"
    with taskrunner.TaskRunner(journal=path, limits={"one": 1}) as runner:
        first = runner.submit(Blocking(1), key="k", limit="one")
        assert first.result(timeout=10) == 1
        again = runner.submit(Blocking(2), key="k", limit="unknown", after=[10**9])
        assert again.id == first.id
    with taskrunner.TaskRunner(journal=path) as runner:
        assert runner.submit(Blocking(2), key="k", limit="one").id == first.id
        with pytest.raises(ValueError, match="no limit named 'one'"):
            runner.submit(Blocking(2), key="other", limit="one")


# Delays


def test_a_delayed_task_waits_pending_and_starts_on_time(runner):
    before = time.time()
    h = runner.submit(Blocking(5), delay=0.3)
    status = h.status()
    assert status["state"] == "pending"
    assert before + 0.3 <= status["not_before"] <= time.time() + 0.3
    assert h.result(timeout=10) == 5
    assert h.status()["started_at"] >= status["not_before"]
    assert h.status()["not_before"] is None


def test_not_before_is_a_unix_time_and_one_in_the_past_starts_at_once(runner):
    at = time.time() + 0.2
    h = runner.submit(Polling(3), not_before=at)
    assert h.result(timeout=10) == 3 and h.status()["started_at"] >= at
    assert runner.submit(Blocking(4), not_before=time.time() - 60).result(timeout=10) == 4


def test_a_delayed_task_costs_no_thread_and_can_be_cancelled():
    runner = taskrunner.TaskRunner(keep_alive=0.05)
    handles = [runner.submit(Blocking(i), delay=60) for i in range(200)]
    assert wait_for(lambda: runner.stats()["workers"] == 0)
    assert runner.stats()["queued"] == 0 and runner.counts()["pending"] == 200
    assert all(h.cancel() for h in handles)
    runner.shutdown(wait=True)
    assert runner.counts()["cancelled"] == 200


def test_a_timeout_counts_from_the_start_time(runner):
    h = runner.submit(Blocking(1, wait=0.05), delay=0.3, timeout=0.2)
    assert h.result(timeout=10) == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"delay": -1}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"delay": 1e10}, "delay"),
        ({"not_before": float("nan")}, "not_before"),
        ({"not_before": time.time() + 1e9}, "not_before"),
        ({"delay": 1, "not_before": time.time()}, "not both"),
    ],
)
def test_a_bad_start_time_is_refused(runner, options, message):
    with pytest.raises(ValueError, match=message):
        runner.submit(Blocking(), **options)
    assert runner.counts()["pending"] == 0


# Priorities


def test_pending_blocking_tasks_start_by_priority_then_in_submit_order(one_worker):
    gate = Gate()
    one_worker.submit(gate)
    assert gate.entered.wait(10)
    order: list[str] = []
    plan = [("a", 0), ("b", 5), ("c", -1), ("d", 5), ("e", 0), ("f", 9)]
    handles = [one_worker.submit(Recorder(n, order), priority=p) for n, p in plan]
    gate.release.set()
    one_worker.wait(handles, timeout=10)
    assert order == ["f", "b", "d", "a", "e", "c"]
    assert [h.status()["priority"] for h in handles] == [p for _, p in plan]


def test_polling_tasks_start_by_priority(runner):
    order: list[str] = []
    held = threading.Event()
    entered = threading.Event()

    class Hold:
        def run(self) -> None:
            entered.set()
            held.wait(10)

        def get_output(self) -> int:
            return 1

    class Start:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self) -> None:
            order.append(self.name)

        def get_output(self) -> int:
            return 1

    runner.submit(Hold(), kind="polling")
    assert entered.wait(10)  # every poller thread is held in its run()
    plan = [("low", -1), ("a", 0), ("top", 3), ("b", 0), ("high", 1)]
    handles = [runner.submit(Start(n), kind="polling", priority=p) for n, p in plan]
    held.set()
    runner.wait(handles, timeout=10)
    assert order == ["top", "high", "a", "b", "low"]


def test_a_priority_beyond_32_bits_is_refused(runner):
    with pytest.raises(OverflowError):
        runner.submit(Blocking(), priority=2**40)


# Dependencies


def test_a_task_starts_once_everything_it_comes_after_succeeded(runner):
    first = runner.submit(Blocking(1, wait=0.2))
    second = runner.submit(Polling(2, wait=0.1))
    last = runner.submit(Blocking(3), after=[first, second.id])
    assert last.status()["state"] == "pending"
    assert last.status()["after"] == [first.id, second.id]
    assert last.result(timeout=10) == 3
    started = last.status()["started_at"]
    assert started >= first.status()["finished_at"]
    assert started >= second.status()["finished_at"]


def test_a_failed_upstream_cancels_the_whole_chain_saying_why(runner):
    root = runner.submit(Flaky(9))
    middle = runner.submit(Blocking(2), after=[root])
    leaf = runner.submit(Blocking(3), after=[middle])
    with pytest.raises(CancelledError, match=f"waited for task {middle.id}"):
        leaf.result(timeout=10)
    status = middle.status()
    assert status["state"] == "cancelled"
    assert status["error"]["message"] == (
        f"task {middle.id} waited for task {root.id} (Flaky), which ended failed"
    )
    assert "ended cancelled" in leaf.status()["error"]["message"]


def test_an_upstream_already_ended_decides_at_submit(runner):
    done = runner.submit(Blocking(1))
    assert done.result(timeout=10) == 1
    assert runner.submit(Blocking(2), after=[done]).result(timeout=10) == 2
    gone = runner.submit(Blocking(1), delay=60)
    gone.cancel()
    late = runner.submit(Blocking(2), after=[gone])
    assert late.state == "cancelled"
    assert "which ended cancelled" in late.status()["error"]["message"]


def test_a_long_chain_is_cancelled_without_deep_recursion(runner):
    gate = Gate()
    head = runner.submit(gate)
    tail = head
    for _ in range(20_000):
        tail = runner.submit(Blocking(), after=[tail])
    assert gate.entered.wait(10)
    gate.release.set()
    assert tail.result(timeout=60) == 1  # each one started the next
    root = runner.submit(Flaky(9))
    tail = root
    for _ in range(20_000):
        tail = runner.submit(Blocking(), after=[tail])
    assert wait_for(tail.done, timeout=30)
    assert tail.state == "cancelled" and runner.counts()["running"] == 0


def test_after_refuses_unknown_ids_foreign_handles_and_non_lists(runner):
    with pytest.raises(KeyError, match="no task with id 999"):
        runner.submit(Blocking(), after=[999])
    other = taskrunner.TaskRunner()
    try:
        with pytest.raises(ValueError, match="another runner"):
            runner.submit(Blocking(), after=[other.submit(Blocking())])
    finally:
        other.shutdown()
    with pytest.raises(TypeError, match="list of task ids"):
        runner.submit(Blocking(), after=3)
    with pytest.raises(TypeError, match="a task id is an int"):
        runner.submit(Blocking(), after=["1"])
    assert runner.counts()["pending"] == 0


# Limits


def test_at_most_the_limit_run_at_once():
    board = {"now": 0, "most": 0}
    with taskrunner.TaskRunner(limits={"gpu": 2}) as runner:
        handles = [runner.submit(Counted(board), limit="gpu") for _ in range(12)]
        assert runner.limits()["gpu"]["limit"] == 2
        runner.wait(handles, timeout=30)
        assert board["most"] == 2
        assert all(h.status()["limit"] == "gpu" for h in handles)
        assert runner.limits()["gpu"] == {"limit": 2, "running": 0, "waiting": 0}


def test_tasks_held_by_a_limit_start_by_priority(runner):
    runner.set_limit("one", 1)
    gate = Gate()
    runner.submit(gate, limit="one")
    assert gate.entered.wait(10)
    order: list[str] = []
    plan = [("a", 0), ("b", 2), ("c", 0), ("d", 7)]
    handles = [runner.submit(Recorder(n, order), limit="one", priority=p) for n, p in plan]
    assert runner.limits()["one"] == {"limit": 1, "running": 1, "waiting": 4}
    gate.release.set()
    runner.wait(handles, timeout=10)
    assert order == ["d", "b", "a", "c"]


def test_a_limit_changed_at_run_time_lets_waiting_tasks_start(runner):
    runner.set_limit("api", 0)  # holds every task
    handles = [runner.submit(Blocking(i), limit="api") for i in range(5)]
    time.sleep(0.1)
    assert all(h.state == "pending" for h in handles)
    runner.set_limit("api", 5)
    assert [h.result(timeout=10) for h in handles] == list(range(5))


def test_a_task_waiting_for_a_retry_gives_its_slot_back(runner):
    runner.set_limit("one", 1)
    slow = taskrunner.Retry(2, backoff=30, jitter=False)
    flaky = runner.submit(Flaky(1), limit="one", retries=slow)
    assert wait_for(lambda: flaky.status()["attempt"] == 2)
    assert runner.submit(Blocking(8), limit="one").result(timeout=10) == 8
    flaky.cancel()


def test_cancelled_tasks_free_their_slot_and_their_place(runner):
    runner.set_limit("one", 1)
    gate = Gate()
    holder = runner.submit(gate, limit="one", kind="polling")
    waiting = [runner.submit(Blocking(i), limit="one") for i in range(3)]
    assert wait_for(lambda: gate.entered.is_set())
    assert waiting[0].cancel()
    assert runner.limits()["one"]["waiting"] == 2
    holder.cancel()  # a running polling task can be cancelled: its slot is free
    gate.release.set()
    assert waiting[1].result(timeout=10) == 1 and waiting[2].result(timeout=10) == 2


def test_a_rate_limit_spreads_starts_over_its_window(runner):
    runner.set_limit("api", taskrunner.Rate(3, per=0.5))
    handles = [runner.submit(Blocking(i), limit="api") for i in range(7)]
    runner.wait(handles, timeout=20)
    starts = sorted(h.status()["started_at"] for h in handles)
    # Any three starts in a row after the first three lie a window apart.
    assert starts[3] - starts[0] >= 0.45 and starts[6] - starts[3] >= 0.45
    assert runner.limits()["api"]["limit"] == taskrunner.Rate(3, per=0.5)


def test_unknown_labels_and_bad_limits_are_refused():
    with pytest.raises(ValueError, match="limit 'gpu' must be an int >= 0 or a taskrunner.Rate"):
        taskrunner.TaskRunner(limits={"gpu": -1})
    with pytest.raises(ValueError, match="a rate lets at least 1"):
        taskrunner.Rate(0)
    with pytest.raises(ValueError, match="per must be"):
        taskrunner.Rate(3, per=0)
    with taskrunner.TaskRunner(limits={"gpu": 1}) as runner:
        with pytest.raises(ValueError, match=r"no limit named 'cpu' \(known: gpu\)"):
            runner.submit(Blocking(), limit="cpu")
        with pytest.raises(ValueError, match="must be an int"):
            runner.set_limit("gpu", True)
        assert runner.counts()["pending"] == 0


def test_everything_at_once(runner):
    """A delayed, limited, prioritised, retried task after another one."""
    runner.set_limit("net", 1)
    first = runner.submit(Blocking(1, wait=0.05))
    h = runner.submit(Flaky(1), after=[first], delay=0.1, limit="net", priority=3, retries=QUICK)
    assert h.result(timeout=10) == 2
    status = h.status()
    assert status["attempt"] == 2 and status["priority"] == 3 and status["after"] == [first.id]
    assert status["started_at"] >= first.status()["finished_at"]


# After a crash

KILLED = """
import sys, time
sys.path.insert(0, sys.argv[2])
import taskrunner
from conftest import Blocking
from test_scheduling import Flaky

runner = taskrunner.TaskRunner(journal=sys.argv[1], limits={"one": 1})
delayed = runner.submit(Blocking(5), durable=True, delay=2.0, priority=4)
slow = taskrunner.Retry(3, backoff=30, jitter=False, on=(OSError,))
retrying = runner.submit(Flaky(1), durable=True, retries=slow)
while runner.status(retrying.id)["attempt"] < 2:
    time.sleep(0.01)
upstream = runner.submit(Blocking(6), durable=True, delay=60)
downstream = runner.submit(Blocking(7), durable=True, after=[upstream], limit="one")
runner.flush(timeout=10)
print(delayed.id, retrying.id, upstream.id, downstream.id, flush=True)
time.sleep(3600)
"""


def test_delayed_retrying_and_waiting_tasks_survive_a_kill(tmp_path):
    db = str(tmp_path / "tasks.db")
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, db, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    delayed, retrying, upstream, downstream = (int(i) for i in line.split())
    with taskrunner.TaskRunner(journal=db, limits={"one": 1}) as runner:
        status = runner.status(delayed)
        assert status["state"] == "pending" and status["priority"] == 4
        assert runner.result(delayed, timeout=20) == 5
        assert runner.status(delayed)["started_at"] >= status["not_before"]
        status = runner.status(retrying)
        assert status["state"] == "pending" and status["not_before"] > time.time() + 20
        assert status["error"]["message"] == "blip 1"
        assert runner.status(upstream)["not_before"] > time.time() + 50
        status = runner.status(downstream)
        assert status["after"] == [upstream] and status["limit"] == "one"
        assert runner.limits()["one"]["waiting"] == 0  # still waiting for its upstream
        runner.cancel(upstream)
        assert runner.status(downstream)["state"] == "cancelled"
        assert f"waited for task {upstream}" in runner.status(downstream)["error"]["message"]
        runner.cancel(retrying)


def test_a_task_whose_limit_is_no_longer_declared_is_lost_saying_so(tmp_path):
    db = str(tmp_path / "tasks.db")
    script = KILLED.replace("runner.flush", "print(downstream.id, flush=True)\nrunner.flush", 1)
    process = subprocess.Popen(
        [sys.executable, "-c", script, db, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        downstream = int(process.stdout.readline())
        process.stdout.readline()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    with taskrunner.TaskRunner(journal=db) as runner:
        status = runner.status(downstream)
        assert status["state"] == "failed" and status["error"]["type"] == "TaskLost"
        assert "no limit named 'one'" in status["error"]["message"]
        runner.shutdown(wait=False, cancel_pending=True)
