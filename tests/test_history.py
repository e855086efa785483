"""runner.history(): tasks finished per second by final state, running and pending,
and runtime percentiles, kept in fixed-size rings and in the journal."""

from __future__ import annotations

import math
import os
import time

import pytest

from taskrunner import TaskRunner

from conftest import Blocking, Gate, query_journal, wait_for

FINAL = ("succeeded", "failed", "cancelled", "timed_out")
# A runtime bucket's midpoint is within 1/16 of any runtime in it.
RELATIVE_ERROR = 0.0625


class Fails:
    def run(self) -> None:
        raise ValueError("no")

    def get_output(self) -> None:
        return None


def _counted(history: dict, last_closed: int) -> dict[str, float]:
    """Tasks finished in a window, by state: each step's rate times the seconds it
    covers (the last step only up to the last closed second)."""
    step, at = history["step"], history["at"]
    covered = [step] * len(at)
    covered[-1] = last_closed + 1 - at[-1]
    return {
        state: sum(rate * seconds for rate, seconds in zip(series, covered, strict=True))
        for state, series in history["finished"].items()
    }


def counted(runner: TaskRunner, window: str) -> dict[str, float]:
    """``_counted`` of a window, read consistently with the last closed second."""
    for _ in range(20):
        last = runner.history("1m")["at"][-1]
        history = runner.history(window)
        if runner.history("1m")["at"][-1] == last:
            return _counted(history, last)
    raise AssertionError("the seconds kept closing")


def finish_one_of_each(runner: TaskRunner) -> dict[str, int]:
    """Tasks ending in each final state; returns how many ended in each."""
    ok = [runner.submit(Blocking(i)) for i in range(3)]
    bad = [runner.submit(Fails()) for _ in range(2)]
    gate = Gate()
    held = runner.submit(gate)
    assert gate.entered.wait(10)
    late = runner.submit(Blocking(0), after=[held.id])
    assert runner.cancel(late.id)
    slow = runner.submit(Blocking(wait=1.0), timeout=0.05)
    gate.release.set()
    runner.wait([*ok, *bad, held, late, slow], timeout=20)
    return {"succeeded": 4, "failed": 2, "cancelled": 1, "timed_out": 1}


def close_to(counts: dict[str, float], expected: dict[str, int]) -> bool:
    return all(math.isclose(counts[s], expected[s], abs_tol=1e-6) for s in FINAL)


def test_tasks_finishing_in_each_final_state_show_in_each_window(runner):
    expected = finish_one_of_each(runner)
    assert wait_for(lambda: close_to(counted(runner, "1m"), expected), timeout=10)
    assert close_to(counted(runner, "1h"), expected)
    assert close_to(counted(runner, "1d"), expected)
    history = runner.history("1m")
    assert history["window"] == "1m" and history["step"] == 1
    # Seven of them ran (the cancelled one never started).
    assert all(history["runtime"][w]["count"] == 7 for w in ("1m", "1h", "1d"))


def test_a_finish_lands_in_the_second_it_happened(runner):
    before = time.time()
    runner.submit(Blocking()).result(timeout=10)
    after = time.time()
    assert wait_for(lambda: sum(runner.history("1m")["finished"]["succeeded"]) == 1, timeout=5)
    history = runner.history("1m")
    (second,) = [
        a for a, n in zip(history["at"], history["finished"]["succeeded"], strict=True) if n
    ]
    # A late tick may put it one second later, never earlier.
    assert math.floor(before) <= second <= math.floor(after) + 1


def test_the_windows_have_their_steps_and_points(runner):
    for window, step, points in (("1m", 1, 60), ("1h", 10, 360), ("1d", 60, 1440)):
        history = runner.history(window)
        assert history["window"] == window and history["step"] == step
        assert len(history["at"]) == points
        assert all(b - a == step for a, b in zip(history["at"], history["at"][1:], strict=False))
        assert history["at"][-1] <= time.time() < history["at"][-1] + step + 2
        for series in (*history["finished"].values(), history["running"], history["pending"]):
            assert len(series) == points
    assert runner.history()["window"] == "1h", "the default window"


def test_running_and_pending_are_sampled_at_each_seconds_end():
    runner = TaskRunner(max_workers=2)
    gates = [Gate() for _ in range(5)]
    try:
        for gate in gates:
            runner.submit(gate)
        assert gates[0].entered.wait(10) and gates[1].entered.wait(10)

        def sampled() -> bool:
            history = runner.history("1m")
            return history["running"][-1] == 2 and history["pending"][-1] == 3

        assert wait_for(sampled, timeout=5)
    finally:
        for gate in gates:
            gate.release.set()
        runner.shutdown(wait=True)
    assert wait_for(lambda: runner.history("1m")["running"][-1] == 0, timeout=5)


class Sleeps:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self) -> float:
        time.sleep(self.seconds)
        return self.seconds

    def get_output(self) -> None:
        return None


def true_percentile(runtimes: list[float], p: float) -> float:
    ranked = sorted(runtimes)
    return ranked[max(math.ceil(p * len(ranked)), 1) - 1]


def test_percentiles_are_within_the_stated_error_of_known_runtimes():
    runner = TaskRunner(max_workers=40)
    try:
        waits = [0.01] * 20 + [0.1] * 15 + [0.3] * 5
        handles = [runner.submit(Sleeps(w)) for w in waits]
        runner.wait(handles, timeout=30)
        runtimes = []
        for h in handles:
            status = runner.status(h.id)
            runtimes.append(status["finished_at"] - status["started_at"])
        assert wait_for(lambda: runner.history("1m")["runtime"]["1m"]["count"] == 40, timeout=5)
        runtime = runner.history("1m")["runtime"]
        for window in ("1m", "1h", "1d"):
            assert runtime[window]["count"] == 40
            for p, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
                truth = true_percentile(runtimes, p)
                assert abs(runtime[window][key] - truth) <= RELATIVE_ERROR * truth + 1e-9, (
                    key,
                    runtime[window][key],
                    truth,
                )
    finally:
        runner.shutdown(wait=True)


def test_percentiles_are_none_when_no_task_finished(runner):
    runtime = runner.history("1m")["runtime"]
    for window in ("1m", "1h", "1d"):
        assert runtime[window] == {"count": 0, "p50": None, "p90": None, "p99": None}


def test_a_task_that_never_started_has_no_runtime(one_worker):
    gate = Gate()
    one_worker.submit(gate)
    assert gate.entered.wait(10)
    waiting = one_worker.submit(Blocking())
    assert one_worker.cancel(waiting.id)
    gate.release.set()
    assert wait_for(lambda: counted(one_worker, "1m")["succeeded"] == 1, timeout=10)
    assert counted(one_worker, "1m")["cancelled"] == 1
    assert one_worker.history("1m")["runtime"]["1m"]["count"] == 1


@pytest.mark.parametrize("window", ["5m", "", "1H", "day"])
def test_another_window_is_a_value_error(runner, window):
    with pytest.raises(ValueError, match="window must be '1m', '1h' or '1d'"):
        runner.history(window)


def test_the_windows_keep_their_size_however_many_tasks_finish(runner):
    """The rings are fixed-size (the core's own tests tick through days of them):
    whatever finishes, each window has the same number of points."""
    stop = time.monotonic() + 2.5
    while time.monotonic() < stop:
        runner.wait([runner.submit(Blocking()) for _ in range(200)], timeout=10)
    for window, points in (("1m", 60), ("1h", 360), ("1d", 1440)):
        assert len(runner.history(window)["at"]) == points
    assert wait_for(lambda: counted(runner, "1m")["succeeded"] > 0)


def test_the_stats_are_history_of_a_stopped_runner_too():
    runner = TaskRunner()
    runner.wait([runner.submit(Blocking())], timeout=10)
    runner.shutdown(wait=True)
    assert wait_for(lambda: counted(runner, "1m")["succeeded"] == 1, timeout=5)


def test_history_outlives_a_restart_with_a_journal(tmp_path):
    path = os.fspath(tmp_path / "tasks.db")
    first = TaskRunner(journal=path)
    expected = finish_one_of_each(first)
    assert wait_for(lambda: close_to(counted(first, "1m"), expected), timeout=10)
    stopped_at = time.time()
    first.shutdown(wait=True)

    again = TaskRunner(journal=path)
    try:
        assert close_to(counted(again, "1d"), expected)
        assert again.history("1d")["runtime"]["1d"]["count"] == 7
        assert again.history("1h")["runtime"]["1h"]["count"] == 7
        hour = again.history("1h")
        before = [
            sum(s[i] for s in hour["finished"].values())
            for i, at in enumerate(hour["at"])
            if at <= stopped_at
        ]
        assert sum(before) > 0, "the hour before the restart shows its minute's rate"
        # And the new runner's own finishes add to it.
        again.submit(Blocking()).result(timeout=10)
        more = {**expected, "succeeded": expected["succeeded"] + 1}
        assert wait_for(lambda: close_to(counted(again, "1d"), more), timeout=5)
    finally:
        again.shutdown(wait=True)

    third = TaskRunner(journal=path)
    try:
        assert close_to(counted(third, "1d"), more)
    finally:
        third.shutdown(wait=True)


@pytest.mark.slow
def test_minutes_of_history_are_written_as_they_close(tmp_path):
    """A minute closes (and is written) while the runner runs; the test waits for
    the next minute boundary, so it takes up to a minute."""
    path = os.fspath(tmp_path / "tasks.db")
    runner = TaskRunner(journal=path)
    try:
        runner.submit(Blocking()).result(timeout=10)
        minute = math.floor(time.time() / 60) * 60
        assert wait_for(lambda: time.time() >= minute + 61, timeout=75)
        runner.history("1m")  # the tick that closes it, if the poller's has not yet
        assert runner.flush(timeout=10)
        rows = query_journal(path, "SELECT at, succeeded FROM history_minutes")
        assert (minute, 1) in rows
    finally:
        runner.shutdown(wait=True)


@pytest.mark.slow
def test_a_cluster_runner_keeps_the_same_history():
    distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")
    from dask_cluster import WORKER_PATH

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = WORKER_PATH
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        from cluster_tasks import Boom, Sleep

        runner = TaskRunner(cluster=client)
        try:
            handles = [runner.submit(Sleep(i, 0.2)) for i in range(2)]
            handles.append(runner.submit(Sleep(2, 3.0)))
            handles.append(runner.submit(Boom()))
            assert wait_for(lambda: runner.history("1m")["running"][-1] >= 1, timeout=30)
            runner.wait(handles, timeout=30)
            assert wait_for(
                lambda: close_to(
                    counted(runner, "1m"),
                    {"succeeded": 3, "failed": 1, "cancelled": 0, "timed_out": 0},
                ),
                timeout=10,
            )
            runtime = runner.history("1m")["runtime"]["1m"]
            assert runtime["count"] == 4
            assert runtime["p99"] >= 3.0 * (1 - RELATIVE_ERROR), "the longest ran 3 s"
        finally:
            runner.shutdown(wait=True, cancel_pending=True)
    finally:
        client.close()
        cluster.close()
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
