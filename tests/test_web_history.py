"""GET /api/stats/history and the event stream's once-a-second ``stats`` event,
held to the OpenAPI document the app serves."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest_web import CheckedClient, assert_problem, invalid_names, parse_sse

from taskrunner import TaskRunner
from taskrunner.web import create_app, default_task_types

from conftest import Gate, wait_for

FINAL = ("succeeded", "failed", "cancelled", "timed_out")


class App:
    """An app over its own runner, with a checked client."""

    def __init__(self, **runner_options: Any) -> None:
        self.gates: list[Gate] = []
        types = dict(default_task_types())
        types["gate"] = self._gate
        self.runner = TaskRunner(**runner_options)
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None}
        self.app = create_app(runner=self.runner, task_types=types, config=config)
        self.state = self.app.extensions["taskrunner"]
        self.client = CheckedClient(self.app)

    def _gate(self, input: Any) -> Gate:
        gate = Gate(input)
        self.gates.append(gate)
        return gate

    def submit(self, type: str, input: Any = 1, **fields: Any) -> dict:
        response = self.client.post("/api/tasks", json={"type": type, "input": input, **fields})
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def close(self) -> None:
        for gate in self.gates:
            gate.release.set()
        self.state.close()
        self.runner.shutdown(wait=True, cancel_pending=True)


@pytest.fixture
def app():
    made = App()
    yield made
    made.close()


@pytest.mark.parametrize(
    ("window", "step", "points"), [("1m", 1, 60), ("1h", 10, 360), ("1d", 60, 1440)]
)
def test_the_history_of_each_window_conforms(app, window, step, points):
    response = app.client.get(f"/api/stats/history?window={window}")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["window"], body["step"], len(body["at"])) == (window, step, points)
    assert set(body["runtime"]) == {"1m", "1h", "1d"}


def test_the_default_window_is_an_hour(app):
    assert app.client.get("/api/stats/history").get_json()["window"] == "1h"


@pytest.mark.parametrize("window", ["5m", "", "1H", "%00"])
def test_another_window_is_a_400_problem(app, window):
    response = app.client.get(f"/api/stats/history?window={window}")
    assert_problem(response, 400, "/problems/invalid-params")
    assert invalid_names(response) == {"window"}


def test_finished_tasks_show_in_the_endpoints_last_minute(app):
    ids = [app.submit("fake_blocking", i, wait=0)["id"] for i in range(3)]
    app.runner.wait(ids, timeout=10)

    def succeeded() -> float:
        body = app.client.get("/api/stats/history?window=1m").get_json()
        return sum(body["finished"]["succeeded"])

    assert wait_for(lambda: succeeded() == 3, timeout=5)
    body = app.client.get("/api/stats/history?window=1m").get_json()
    assert body["runtime"]["1m"]["count"] == 3
    assert body["runtime"]["1m"]["p50"] is not None


def stats_events(response) -> Any:
    chunks = (chunk.decode() for chunk in response.response)
    return ((name, data) for name, data in parse_sse(chunks) if name == "stats")


def test_the_stream_sends_stats_about_once_a_second(app):
    validator = app.client.checker.validator("/components/schemas/StatsEvent")
    response = app.client.get("/api/events")
    try:
        stream = stats_events(response)
        started = time.monotonic()
        seen = [next(stream)[1] for _ in range(4)]
        took = time.monotonic() - started
    finally:
        response.close()
    for data in seen:
        assert not list(validator.iter_errors(data)), data
    # One per second: consecutive, whole seconds, at most a second apart each.
    ats = [data["at"] for data in seen]
    assert all(b - a == 1 for a, b in zip(ats, ats[1:], strict=False)), ats
    assert 2.0 <= took <= 8.0, took


def test_the_stats_event_counts_the_second_that_closed(app):
    gates = [app.submit("gate", i) for i in range(2)]
    assert wait_for(lambda: len(app.gates) == 2 and all(g.entered.is_set() for g in app.gates))
    response = app.client.get("/api/events")
    try:
        stream = stats_events(response)
        running = next(data for _, data in stream if data["running"] == 2)
        assert set(running["finished"]) == set(FINAL)
        for gate in app.gates:
            gate.release.set()
        app.runner.wait([g["id"] for g in gates], timeout=10)
        finished = 0
        for _, data in stream:
            finished += data["finished"]["succeeded"]
            if finished >= 2:
                break
        assert finished == 2
        assert data["running"] == 0
    finally:
        response.close()


def test_every_stream_shares_one_stats_computation_a_second(app, monkeypatch):
    calls = []
    history = app.runner.history

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(app.runner, name)

        def history(self, window: str = "1h") -> Any:
            calls.append(time.monotonic())
            return history(window)

    monkeypatch.setattr(app.state, "runner", Counting())
    responses = [app.client.get("/api/events") for _ in range(5)]
    got: list[list[float]] = [[] for _ in responses]

    def read(i: int) -> None:
        stream = stats_events(responses[i])
        got[i] = [next(stream)[1]["at"] for _ in range(3)]

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(responses))]
    started = time.monotonic()
    try:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(20)
    finally:
        for r in responses:
            r.close()
    took = time.monotonic() - started
    assert all(len(ats) == 3 for ats in got), got
    # Five streams, three seconds' events each: one computation a second, not per stream.
    assert len(calls) <= took + 2, (len(calls), took)
