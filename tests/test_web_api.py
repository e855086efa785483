"""The HTTP API through Flask's test client: every endpoint, every error, the OpenAPI document.

Every response that goes through ``CheckedClient`` is also held to the
OpenAPI document the app serves.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Optional

import pytest
from conftest_web import (
    OpenAPIChecker,
    assert_problem,
    invalid_names,
)
from prometheus_client.parser import text_string_to_metric_families
from web_app import ReturnsTask, Server, open_events, read_until

import taskrunner
from taskrunner import STATES, STATS_KEYS, STATUS_KEYS, TaskRunner
from taskrunner.web import create_app, default_task_types, events
from taskrunner.web.openapi import openapi_document
from taskrunner.web.pollrate import PollRateMeter
from taskrunner.web.settings import Settings

from conftest import wait_for

WAIT = 10.0  # generous: how long a test waits for a task to finish


class Opaque:
    """A result JSON cannot hold."""

    def __repr__(self) -> str:
        return "<Opaque thing>"


@pytest.fixture
def server(make_server) -> Server:
    return make_server()


# ---- POST /api/tasks ---------------------------------------------------------


def test_submit_answers_202_with_location_and_the_status(server):
    response = server.client.post(
        "/api/tasks", json={"type": "fake_blocking", "input": 21, "wait": 0.05, "name": "job"}
    )
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"http://localhost/api/tasks/{body['id']}"
    assert body["name"] == "job"
    assert body["state"] in STATES
    assert [key for key in body if key != "result_is_repr"] == list(STATUS_KEYS)
    assert isinstance(body["result_is_repr"], bool)


@pytest.mark.parametrize(
    ("type", "kinds"),
    [
        ("fake", set(taskrunner.KINDS)),
        ("fake_blocking", {"blocking"}),
        ("fake_polling", {"polling"}),
    ],
)
def test_each_default_task_type_runs_to_its_result(server, type, kinds):
    task = server.submit(type, 21, wait=0.05)
    server.finish(task["id"])
    status = server.client.get(f"/api/tasks/{task['id']}").get_json()
    assert status["state"] == "succeeded"
    assert status["result"] == 42
    assert status["kind"] in kinds


def test_submit_takes_a_timeout(server):
    task = server.submit("fake_polling", 1, wait=30, timeout=0.05)
    server.finish(task["id"])
    assert server.runner.status(task["id"])["state"] == "timed_out"


def test_a_failing_task_reports_its_error(server):
    task = server.submit("fake_blocking", {"not": "a number"}, wait=0)
    server.finish(task["id"])
    status = server.client.get(f"/api/tasks/{task['id']}").get_json()
    assert status["state"] == "failed"
    assert status["error"]["type"] == "TypeError"
    assert status["error"]["message"]


@pytest.mark.parametrize(
    ("body", "problem_type"),
    [
        (b'{"type": "fake", "input": ', "/problems/invalid-body"),
        (b'{"type": "fake", "input": NaN}', "/problems/invalid-body"),
        (b'{"type": "fake", "input": Infinity}', "/problems/invalid-body"),
        (b"", "/problems/invalid-body"),
        (b"[1, 2]", "/problems/invalid-body"),
        (b'"fake"', "/problems/invalid-body"),
        (b"\xff\xfe\x00", "/problems/invalid-body"),
    ],
)
def test_bad_json_is_400(server, body, problem_type):
    response = server.client.post("/api/tasks", data=body, content_type="application/json")
    assert_problem(response, 400, problem_type)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"input": 1}, {"type"}),
        ({"type": "fake"}, {"input"}),
        ({"type": 3, "input": 1}, {"type"}),
        ({"type": "fake", "input": 1, "wait": -1}, {"wait"}),
        ({"type": "fake", "input": 1, "wait": "soon"}, {"wait"}),
        ({"type": "fake", "input": 1, "wait": True}, {"wait"}),
        ({"type": "fake", "input": 1, "wait": 10**6}, {"wait"}),
        ({"type": "fake", "input": 1, "timeout": 0}, {"timeout"}),
        ({"type": "fake", "input": 1, "timeout": "1"}, {"timeout"}),
        ({"type": "fake", "input": 1, "name": ""}, {"name"}),
        ({"type": "fake", "input": 1, "name": "x" * 201}, {"name"}),
        ({"type": "fake", "input": 1, "name": 5}, {"name"}),
        ({"type": "fake", "input": 1, "retry": 1}, {"retry"}),
        ({"wait": -1, "extra": 1}, {"type", "input", "wait", "extra"}),
    ],
)
def test_bad_fields_are_400_naming_each(server, body, names):
    assert invalid_names(server.client.post("/api/tasks", json=body)) == names


def test_a_type_without_wait_rejects_a_wait(server):
    response = server.client.post("/api/tasks", json={"type": "strict", "input": 1, "wait": 1})
    assert invalid_names(response) == {"wait"}


def test_input_the_factory_rejects_is_400(server):
    response = server.client.post("/api/tasks", json={"type": "strict", "input": "one"})
    body = assert_problem(response, 400, "/problems/invalid-params")
    assert body["invalid_params"][0]["name"] == "input"
    assert "integer" in body["invalid_params"][0]["reason"]


def test_unknown_task_type_is_404(server):
    response = server.client.post("/api/tasks", json={"type": "os.system", "input": "ls"})
    body = assert_problem(response, 404, "/problems/unknown-task-type")
    assert "os.system" in body["detail"]


def test_a_crashing_factory_is_500_without_details(server):
    response = server.client.post("/api/tasks", json={"type": "broken", "input": 1})
    body = assert_problem(response, 500)
    assert "broken" not in body["detail"]


class Panic(BaseException):
    """Like pyo3's PanicException: not an Exception, so Flask lets it through."""


def panicking_factory(input: Any) -> Any:
    """A task type whose factory raises a BaseException."""
    raise Panic("the core panicked")


def test_a_base_exception_is_500_too_and_the_app_carries_on(make_server, caplog):
    server = make_server(task_types={"panics": panicking_factory, **default_task_types()})
    response = server.client.post("/api/tasks", json={"type": "panics", "input": 1})
    body = assert_problem(response, 500)
    assert "panicked" not in body["detail"]
    assert "Panic: the core panicked" in caplog.text
    assert server.submit("fake_blocking", 1, wait=0)["id"] == 1


def test_the_document_lists_the_registered_task_types(server):
    document = server.client.get("/api/openapi.json").get_json()
    submission = document["components"]["schemas"]["Submission"]
    assert submission["properties"]["type"]["enum"] == server.state.task_types.names()
    unlisted = openapi_document()["components"]["schemas"]["Submission"]
    assert "enum" not in unlisted["properties"]["type"]


def test_body_over_the_limit_is_413(make_server):
    server = make_server()
    server.app.config["MAX_CONTENT_LENGTH"] = 1024
    body = json.dumps({"type": "fake", "input": "x" * 2000})
    response = server.client.post("/api/tasks", data=body, content_type="application/json")
    assert_problem(response, 413)


def test_the_default_body_limit_is_64_kib(server):
    body = json.dumps({"type": "fake", "input": "x" * 70_000})
    response = server.client.post("/api/tasks", data=body, content_type="application/json")
    assert_problem(response, 413)


def test_a_body_that_is_not_json_is_415(server):
    response = server.client.post("/api/tasks", data="type=fake", content_type="text/plain")
    assert_problem(response, 415)


def test_a_body_without_content_type_is_read_as_json(server):
    response = server.client.post("/api/tasks", data='{"type": "fake", "input": 1, "wait": 0}')
    assert response.status_code == 202


def test_the_unfinished_limit_gives_503_with_retry_after(make_server):
    server = make_server(max_unfinished=2)
    first = server.submit("fake_polling", 1, wait=60)
    server.submit("fake_polling", 1, wait=60)
    response = server.client.post("/api/tasks", json={"type": "fake", "input": 1})
    assert_problem(response, 503, "/problems/too-many-unfinished")
    assert response.headers["Retry-After"] == "1"
    server.client.delete(f"/api/tasks/{first['id']}")
    accepted = server.client.post("/api/tasks", json={"type": "fake", "input": 1, "wait": 0})
    assert accepted.status_code == 202


def test_submitting_after_close_is_503(server):
    server.state.close()
    response = server.client.post("/api/tasks", json={"type": "fake", "input": 1})
    assert_problem(response, 503, "/problems/shutting-down")


def test_nothing_a_client_sends_is_evaluated(server):
    payload = "__import__('os').system('echo pwned')"
    task = server.submit("fake_blocking", payload, wait=0, name="{{7*7}}")
    server.finish(task["id"])
    status = server.runner.status(task["id"])
    assert status["result"] == payload * 2
    assert status["name"] == "{{7*7}}"


# ---- results JSON cannot hold ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Opaque(), "<Opaque thing>"),
        ({1, 2}, "{1, 2}"),
        (math.nan, "nan"),
        (b"bytes", "b'bytes'"),
    ],
)
def test_a_result_json_cannot_hold_is_sent_as_its_repr_and_flagged(server, value, shown):
    handle = server.runner.submit(ReturnsTask(value))
    handle.result(timeout=WAIT)
    body = server.client.get(f"/api/tasks/{handle.id}").get_json()
    assert body["result"] == shown
    assert body["result_is_repr"] is True


def test_a_string_result_is_not_flagged(server):
    handle = server.runner.submit(ReturnsTask("<Opaque thing>"))
    handle.result(timeout=WAIT)
    body = server.client.get(f"/api/tasks/{handle.id}").get_json()
    assert body["result"] == "<Opaque thing>"
    assert body["result_is_repr"] is False


# ---- GET /api/tasks/<id> -----------------------------------------------------


def test_get_task_is_the_status_dict(server):
    task = server.submit("fake_blocking", 2, wait=0)
    server.finish(task["id"])
    body = server.client.get(f"/api/tasks/{task['id']}").get_json()
    expected = server.runner.status(task["id"])
    assert body == {**expected, "result_is_repr": False}


@pytest.mark.parametrize("id", ["999", "0", "abc", "-1", "1.5", str(2**70), "١"])
def test_an_unknown_task_id_is_404(server, id):
    response = server.client.get(f"/api/tasks/{id}")
    assert_problem(response, 404, "/problems/unknown-task")


# ---- GET /api/tasks ----------------------------------------------------------


def test_list_is_newest_first_and_pages_by_cursor(server):
    ids = [server.submit("fake_blocking", i, wait=0)["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = server.client.get(f"/api/tasks?{query}").get_json()
        assert len(page["tasks"]) <= 2
        seen += [task["id"] for task in page["tasks"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert pages == 3


def test_list_filters_by_state(server):
    done = server.submit("fake_blocking", 1, wait=0)
    waiting = server.until_running(server.submit("fake_polling", 1, wait=60))
    server.finish(done["id"])
    succeeded = server.client.get("/api/tasks?state=succeeded").get_json()["tasks"]
    assert [task["id"] for task in succeeded] == [done["id"]]
    running = server.client.get("/api/tasks?state=running").get_json()["tasks"]
    assert [task["id"] for task in running] == [waiting["id"]]
    everything = server.client.get("/api/tasks").get_json()["tasks"]
    assert [task["id"] for task in everything] == [waiting["id"], done["id"]]


def test_list_filters_by_name_and_submit_time(server):
    first = server.submit("fake_blocking", 1, wait=0, name="report-march")
    second = server.submit("fake_blocking", 2, wait=0, name="invoice-7")
    third = server.submit("fake_blocking", 3, wait=0, name="report-april")

    def listed(query: str) -> list[int]:
        response = server.client.get(f"/api/tasks?{query}")
        assert response.status_code == 200, response.get_json()
        return [task["id"] for task in response.get_json()["tasks"]]

    assert listed("name=report-") == [third["id"], first["id"]]
    assert listed("name=report-&limit=1") == [third["id"]]
    assert listed(f"since={second['submitted_at']}") == [third["id"], second["id"]]
    assert listed(f"until={second['submitted_at']}") == [first["id"]]
    between = f"since={first['submitted_at']}&until={third['submitted_at']}"
    assert listed(between) == [second["id"], first["id"]]
    assert listed(f"{between}&name=invoice") == [second["id"]]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("since=yesterday&until=nan", {"since", "until"}),
        ("name=" + "x" * 201, {"name"}),
        ("state=finished", {"state"}),
        ("limit=0", {"limit"}),
        ("limit=abc", {"limit"}),
        ("limit=1001", {"limit"}),
        ("cursor=-3", {"cursor"}),
        ("cursor=x&limit=-1&state=no", {"cursor", "limit", "state"}),
    ],
)
def test_bad_list_queries_are_400_naming_each(server, query, names):
    assert invalid_names(server.client.get(f"/api/tasks?{query}")) == names


# ---- DELETE /api/tasks/<id> --------------------------------------------------


def test_delete_cancels_a_pending_or_polling_task(server):
    task = server.submit("fake_polling", 1, wait=60)
    response = server.client.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.get_json()["state"] == "cancelled"
    assert server.runner.status(task["id"])["state"] == "cancelled"
    again = server.client.delete(f"/api/tasks/{task['id']}")
    assert again.status_code == 200 and again.get_json()["state"] == "cancelled"


def test_delete_of_a_running_blocking_task_is_409(server):
    task = server.submit("gate", "x")
    assert server.gates[0].entered.wait(WAIT)
    response = server.client.delete(f"/api/tasks/{task['id']}")
    body = assert_problem(response, 409, "/problems/not-cancellable")
    assert body["state"] == "running"
    server.gates[0].release.set()
    server.finish(task["id"])
    assert server.runner.status(task["id"])["state"] == "succeeded"


def test_delete_of_a_finished_task_is_409(server):
    task = server.submit("fake_blocking", 1, wait=0)
    server.finish(task["id"])
    body = assert_problem(
        server.client.delete(f"/api/tasks/{task['id']}"), 409, "/problems/not-cancellable"
    )
    assert body["state"] == "succeeded"


def test_delete_of_an_unknown_task_is_404(server):
    assert_problem(server.client.delete("/api/tasks/12345"), 404, "/problems/unknown-task")
    assert_problem(server.client.delete("/api/tasks/nope"), 404, "/problems/unknown-task")


# ---- 405 and unknown routes --------------------------------------------------


def test_a_wrong_method_is_405_problem_with_allow(server):
    response = server.client.raw.put("/api/tasks")
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}


def test_an_unknown_route_is_404_problem(server):
    assert_problem(server.client.raw.get("/api/nothing-here"), 404)


# ---- the rest of the endpoints -----------------------------------------------


def test_task_types_lists_the_registry(server):
    types = server.client.get("/api/task-types").get_json()["task_types"]
    by_name = {t["name"]: t for t in types}
    assert list(by_name)[:3] == ["fake", "fake_blocking", "fake_polling"]
    assert by_name["fake"]["takes_wait"] is True
    assert by_name["strict"]["takes_wait"] is False
    assert by_name["fake_blocking"]["description"]


def test_the_default_registry_offers_the_fake_tasks():
    app = create_app(runner=TaskRunner(), config={"TESTING": True, "TASKRUNNER_TOKEN": None})
    try:
        types = app.test_client().get("/api/task-types").get_json()["task_types"]
        assert [t["name"] for t in types] == ["fake", "fake_blocking", "fake_polling"]
    finally:
        app.extensions["taskrunner"].close()
        app.extensions["taskrunner"].runner.shutdown()


def test_a_custom_registry_replaces_the_default(make_server):
    server = make_server(task_types={"double": ReturnsTask})
    assert server.client.post("/api/tasks", json={"type": "double", "input": 2}).status_code == 202
    response = server.client.post("/api/tasks", json={"type": "fake", "input": 2})
    assert_problem(response, 404, "/problems/unknown-task-type")


def idle_workers_but_one(server: Server) -> bool:
    stats = server.client.get("/api/stats").get_json()
    return stats["workers_idle"] == stats["workers"] - 1


def test_stats_count_states_workers_and_poller(server):
    server.submit("gate", 1)
    assert server.gates[0].entered.wait(WAIT)
    server.until_running(server.submit("fake_polling", 1, wait=60))
    done = server.submit("fake_blocking", 1, wait=0)
    server.finish(done["id"])
    stats = server.client.get("/api/stats").get_json()
    assert stats["counts"] == {**dict.fromkeys(STATES, 0), "running": 2, "succeeded": 1}
    assert list(stats["counts"]) == list(STATES)
    assert stats["workers_busy"] == 1
    # The worker that ran the finished task counts as idle once it is back for more.
    assert wait_for(lambda: idle_workers_but_one(server), WAIT)
    assert stats["polling"] == 1
    # The poller takes a task out of its queue while it polls it.
    assert wait_for(lambda: server.client.get("/api/stats").get_json()["poller_queue"] == 1, WAIT)
    assert stats["unfinished"] == 2


def test_stats_count_a_worker_held_by_a_timed_out_task_apart(server):
    task = server.submit("gate", 1, timeout=0.1)
    assert server.gates[0].entered.wait(WAIT)
    server.finish(task["id"])
    assert server.runner.status(task["id"])["state"] == "timed_out"
    stats = server.client.get("/api/stats").get_json()
    assert stats["workers_timed_out"] == 1 and stats["workers_busy"] == 0
    server.gates[0].release.set()
    assert wait_for(
        lambda: server.client.get("/api/stats").get_json()["workers_timed_out"] == 0, WAIT
    )


def test_stats_report_polls_per_second(server):
    server.submit("fake_polling", 1, wait=60)
    server.client.get("/api/stats")
    # The default back-off polls a new task many times a second.
    assert wait_for(
        lambda: server.client.get("/api/stats").get_json()["polls_per_second"] > 0, WAIT
    )


def test_poll_rate_meter_averages_over_its_window():
    now = [0.0]
    meter = PollRateMeter(0, window=5.0, clock=lambda: now[0])
    now[0] = 1.0
    assert meter.rate(100) == pytest.approx(100.0)
    now[0] = 2.0
    assert meter.rate(300) == pytest.approx(150.0)
    now[0] = 8.0
    # Samples older than the window drop out: from t=2 (300) to t=8 (900).
    assert meter.rate(900) == pytest.approx(100.0)


def test_meta_lists_states_kinds_and_status_keys_in_order(server):
    meta = server.client.get("/api/meta").get_json()
    assert meta == {
        "states": list(STATES),
        "kinds": list(taskrunner.KINDS),
        "status_keys": list(STATUS_KEYS),
    }


def test_healthz_is_ok_then_503_when_shutting_down(server):
    response = server.client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "journal": None, "journal_problem": None}
    server.state.close()
    assert_problem(server.client.get("/healthz"), 503, "/problems/shutting-down")


def test_metrics_are_prometheus_text(server):
    task = server.submit("fake_blocking", 1, wait=0)
    server.finish(task["id"])
    server.until_running(server.submit("fake_polling", 1, wait=60))
    response = server.client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    tasks = {s.labels["state"]: s.value for s in families["taskrunner_tasks"].samples}
    assert tasks["succeeded"] == 1 and tasks["running"] == 1
    assert set(tasks) == set(STATES)
    workers = {s.labels["activity"] for s in families["taskrunner_workers"].samples}
    assert workers == {"busy", "idle", "timed_out"}
    assert families["taskrunner_polling_tasks"].samples[0].value == 1
    # The poller takes a task out of its queue while it polls it.
    assert wait_for(lambda: "taskrunner_poller_queue_length 1.0" in metrics_text(server), WAIT)
    # Only the polling task polls, and its first poll may come after the scrape.
    assert wait_for(lambda: "taskrunner_polls_total 0.0" not in metrics_text(server), WAIT)
    assert families["taskrunner_tasks_submitted"].samples[0].value == 2
    requests = families["taskrunner_http_requests"].samples
    assert any(
        s.labels == {"method": "POST", "endpoint": "taskrunner_api.submit_task", "status": "202"}
        for s in requests
    )


def report_timed_out_workers(server: Server, monkeypatch: Any, count: Optional[int]) -> None:
    """The runner's stats with ``workers_timed_out`` at ``count``, or without it (None)."""
    real_stats = server.runner.stats

    def stats() -> dict[str, Any]:
        figures = {k: v for k, v in real_stats().items() if k != "workers_timed_out"}
        if count is not None:
            figures["workers_timed_out"] = count
        return figures

    monkeypatch.setattr(server.runner, "stats", stats)


def test_workers_timed_out_are_in_stats_and_metrics_when_the_core_reports_them(server, monkeypatch):
    report_timed_out_workers(server, monkeypatch, None)
    assert "workers_timed_out" not in server.client.get("/api/stats").get_json()
    assert 'activity="timed_out"' not in metrics_text(server)
    report_timed_out_workers(server, monkeypatch, 2)
    assert server.client.get("/api/stats").get_json()["workers_timed_out"] == 2
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(server))}
    workers = {s.labels["activity"]: s.value for s in families["taskrunner_workers"].samples}
    assert workers["timed_out"] == 2


def metrics_text(server: Server) -> str:
    return server.client.get("/metrics").get_data(as_text=True)


def test_each_app_keeps_its_own_metrics(make_server):
    first, second = make_server(), make_server()
    first.submit("fake_blocking", 1, wait=0)
    text = second.client.get("/metrics").get_data(as_text=True)
    assert "taskrunner_tasks_submitted_total 0.0" in text


def test_dashboard_page_is_served_and_self_contained(server):
    page = server.client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'id="submit-form"' in html and 'id="task-table"' in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for asset, mimetype in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        response = server.client.raw.get(f"/static/{asset}")
        assert response.status_code == 200 and response.mimetype == mimetype
        html += response.get_data(as_text=True)
    # No CDN, no remote fonts: it works offline.
    assert "http://" not in html and "https://" not in html and "//cdn" not in html


# ---- GET /api/events ---------------------------------------------------------


def test_events_stream_state_changes(server):
    response, stream = open_events(server)
    ready = read_until(stream, lambda name, _: True)
    assert ready[0][0] == "ready" and set(ready[0][1]["counts"]) == set(STATES)
    task = server.submit("fake_polling", 5, wait=0.05)
    seen = read_until(stream, lambda name, data: name == "task" and data["state"] == "succeeded")
    task_events = [data for name, data in seen if name == "task"]
    assert all(data["id"] == task["id"] for data in task_events)
    assert task_events[-1]["result"] == 10
    # The interval's counts follow its task events.
    assert read_until(stream, lambda name, _: name in ("counts", "task"))[-1][0] == "counts"
    response.close()


def test_events_end_when_the_server_stops(server):
    response, stream = open_events(server)
    read_until(stream, lambda name, _: name == "ready")
    server.state.close()
    assert list(stream) == []
    response.close()


def test_events_are_limited_and_free_their_slot_on_close(make_server):
    server = make_server(max_event_streams=1)
    first = server.client.get("/api/events")
    assert server.client.get("/api/stats").get_json()["event_streams"] == 1
    second = server.client.get("/api/events")
    assert_problem(second, 503, "/problems/too-many-event-streams")
    assert second.headers["Retry-After"]
    first.close()
    third = server.client.get("/api/events")
    assert third.status_code == 200
    third.close()


def test_events_ask_for_a_resync_when_the_client_lags(server, monkeypatch):
    monkeypatch.setattr(events, "CAPACITY", 2)
    response, stream = open_events(server)
    read_until(stream, lambda name, _: name == "ready")
    ids = [server.submit("fake_blocking", i, wait=0)["id"] for i in range(5)]
    server.finish(*ids)
    read_until(stream, lambda name, _: name == "resync")
    response.close()


def test_events_say_when_a_task_was_forgotten(server):
    response, stream = open_events(server)
    read_until(stream, lambda name, _: name == "ready")
    task = server.submit("fake_blocking", 1, wait=0)
    server.finish(task["id"])
    server.runner.forget(task["id"])
    seen = read_until(stream, lambda name, _: name == "forgotten")
    assert seen[-1][1] == {"id": task["id"]}
    response.close()


def test_a_quiet_event_stream_sends_keep_alive_comments(make_server):
    server = make_server(heartbeat=0.1)
    response = server.client.get("/api/events")
    received = ""
    for chunk in response.response:
        received += chunk.decode()
        if ": keep-alive" in received:
            break
    assert "event: ready" in received and ": keep-alive" in received
    response.close()


def test_events_503_while_shutting_down(server):
    server.state.close()
    assert_problem(server.client.get("/api/events"), 503, "/problems/shutting-down")


# ---- retention ---------------------------------------------------------------


def _own_runner_app(**settings: Any) -> Any:
    config = {"TESTING": True, "TASKRUNNER_TOKEN": None}
    config.update({f"TASKRUNNER_{k.upper()}": v for k, v in settings.items()})
    return create_app(config=config)


def _finished_ids(app: Any, count: int) -> list[int]:
    client, runner = app.test_client(), app.extensions["taskrunner"].runner
    ids = []
    for i in range(count):
        response = client.post("/api/tasks", json={"type": "fake_blocking", "input": i, "wait": 0})
        ids.append(response.get_json()["id"])
        runner.wait([ids[-1]], timeout=WAIT)
    return ids


def test_the_apps_own_runner_forgets_finished_tasks_past_the_retention():
    app = _own_runner_app(retain_finished=5)
    try:
        client = app.test_client()
        ids = _finished_ids(app, 20)
        remembered = [t["id"] for t in client.get("/api/tasks").get_json()["tasks"]]
        assert ids[-1] in remembered and len(remembered) == 5
        assert_problem(client.get(f"/api/tasks/{ids[0]}"), 404, "/problems/unknown-task")
    finally:
        app.extensions["taskrunner"].close()


def test_the_apps_own_runner_forgets_finished_tasks_past_their_age():
    app = _own_runner_app(retain_seconds=0.2)
    try:
        client = app.test_client()
        (old,) = _finished_ids(app, 1)
        time.sleep(0.3)
        (new,) = _finished_ids(app, 1)  # the runner sweeps when a task comes or goes
        assert_problem(client.get(f"/api/tasks/{old}"), 404, "/problems/unknown-task")
        assert client.get(f"/api/tasks/{new}").status_code == 200
    finally:
        app.extensions["taskrunner"].close()


def test_a_given_runner_keeps_its_own_retention():
    runner = TaskRunner(retain_finished=None)
    app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_RETAIN_FINISHED": 5})
    try:
        ids = _finished_ids(app, 20)
        assert sorted(runner.ids()) == ids
    finally:
        runner.shutdown()


def test_zero_retention_settings_remember_everything():
    settings = Settings.load({"TASKRUNNER_RETAIN_FINISHED": 0, "TASKRUNNER_RETAIN_SECONDS": 0}, {})
    assert settings.runner_options() == {
        "retain_finished": None,
        "retain_seconds": None,
        "journal": None,
    }


# ---- the bearer token --------------------------------------------------------


@pytest.fixture
def token_server(make_server) -> Server:
    return make_server(token="s3cret")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks"),
        ("GET", "/api/tasks/1"),
        ("DELETE", "/api/tasks/1"),
        ("GET", "/api/task-types"),
        ("GET", "/api/meta"),
        ("GET", "/api/stats"),
        ("GET", "/api/events"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic s3cret", "s3cret"])
def test_a_missing_or_wrong_token_is_401(token_server, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = token_server.client.open(method, path, headers=headers, json={})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_right_token_passes(token_server):
    headers = {"Authorization": "Bearer s3cret"}
    response = token_server.client.post(
        "/api/tasks", json={"type": "fake", "input": 1, "wait": 0}, headers=headers
    )
    assert response.status_code == 202
    assert token_server.client.get("/api/stats", headers=headers).status_code == 200


def test_health_metrics_openapi_and_page_need_no_token(token_server):
    assert token_server.client.get("/healthz").status_code == 200
    assert token_server.client.get("/metrics").status_code == 200
    assert token_server.client.get("/api/openapi.json").status_code == 200
    assert token_server.client.get("/").status_code == 200


def test_the_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TASKRUNNER_TOKEN", "from-env")
    runner = TaskRunner()
    app = create_app(runner=runner, config={"TESTING": True})
    try:
        client = app.test_client()
        assert client.get("/api/stats").status_code == 401
        ok = client.get("/api/stats", headers={"Authorization": "Bearer from-env"})
        assert ok.status_code == 200
    finally:
        runner.shutdown()


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="TASKRUNNER_MAX_UNFINISHED"):
        Settings.load({"TASKRUNNER_MAX_UNFINISHED": 0}, {})
    with pytest.raises(ValueError, match="TASKRUNNER_HEARTBEAT"):
        Settings.load({"TASKRUNNER_HEARTBEAT": "soon"}, {})
    with pytest.raises(ValueError, match="TASKRUNNER_RETAIN_SECONDS"):
        Settings.load({"TASKRUNNER_RETAIN_SECONDS": -1}, {})
    assert Settings.load({}, {"TASKRUNNER_MAX_PAGE": "50"}).max_page == 50


# ---- the OpenAPI document ----------------------------------------------------


def test_the_task_schema_documents_every_status_key_in_order():
    properties = openapi_document()["components"]["schemas"]["Task"]["properties"]
    assert [key for key in properties if key != "result_is_repr"] == list(STATUS_KEYS)
    assert "result_is_repr" in properties


def test_the_stats_schema_documents_every_stats_key_in_order():
    properties = openapi_document()["components"]["schemas"]["Stats"]["properties"]
    assert [key for key in properties if key in STATS_KEYS] == list(STATS_KEYS)


@pytest.mark.parametrize("auth", [False, True])
def test_the_openapi_document_is_valid_openapi_3_1(auth):
    document = openapi_document(auth=auth)
    OpenAPIChecker(document)  # validates
    assert document["openapi"].startswith("3.1")
    assert ("security" in document) is auth


def test_every_route_is_documented_with_its_methods(server):
    document = server.client.checker.document
    for rule in server.app.url_map.iter_rules():
        if rule.endpoint.endswith(".static"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in document["paths"], f"{path} is not documented"
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        assert methods <= set(document["paths"][path]), f"{path}: {methods}"


def test_undocumented_methods_are_405(server):
    paths = server.client.checker.document["paths"]

    def served_by_another(concrete: str, method: str) -> bool:
        """``GET /api/tasks/cancel`` is a (missing) task's: ``/api/tasks/{task_id}``."""
        return any(
            method.lower() in item and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", other), concrete)
            for other, item in paths.items()
        )

    for path, item in paths.items():
        concrete = path.replace("{task_id}", "1")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if method.lower() not in item and not served_by_another(concrete, method):
                response = server.client.raw.open(concrete, method=method)
                assert response.status_code == 405, (method, path)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "fake", "input": 1, "wait": 0},
        {"type": "fake", "input": [1, 2], "wait": 0, "timeout": 1.5, "name": "n"},
        {"type": "returns", "input": None, "wait": None, "timeout": None, "name": None},
        {"type": "fake"},
        {"type": "", "input": 1},
        {"type": "fake", "input": 1, "wait": -1},
        {"type": "fake", "input": 1, "timeout": 0},
        {"type": "fake", "input": 1, "name": ""},
        {"type": "fake", "input": 1, "other": 2},
    ],
)
def test_the_submission_schema_accepts_what_the_server_accepts(server, body):
    schema = server.client.checker.validator("/components/schemas/Submission")
    response = server.client.raw.post("/api/tasks", json=body)
    assert schema.is_valid(body) == (response.status_code != 400), response.get_json()


def _not_on_a_cluster() -> None:
    raise NotImplementedError("pause() does not work with a cluster yet")


def test_every_documented_response_is_produced_and_conforms(make_server):
    """Drives each (path, method, status) the documents promise, checking each response."""
    plain = make_server(max_unfinished=1, max_event_streams=1)
    client = plain.client
    running = plain.submit("fake_polling", 1, wait=60)  # POST 202; holds the one slot
    client.post("/api/tasks", json={"type": "fake", "input": 1})  # 503
    client.post("/api/tasks", data="{", content_type="application/json")  # 400
    client.post("/api/tasks", json={"type": "nope", "input": 1})  # 404
    client.post("/api/tasks", data="x" * 70_000, content_type="application/json")  # 413
    client.post("/api/tasks", data="x", content_type="text/plain")  # 415
    client.post("/api/tasks", json={"type": "broken", "input": 1})  # 500
    client.get("/api/tasks")  # 200
    client.get("/api/tasks?limit=0")  # 400
    client.get(f"/api/tasks/{running['id']}")  # 200
    client.get("/api/tasks/999")  # 404
    client.delete(f"/api/tasks/{running['id']}")  # 200
    client.delete("/api/tasks/999")  # 404
    finished = plain.submit("fake_blocking", 1, wait=0)
    plain.finish(finished["id"])
    client.delete(f"/api/tasks/{finished['id']}")  # 409
    client.get(f"/api/tasks/{finished['id']}/timeline")  # 200
    client.get("/api/tasks/999/timeline")  # 404
    plain.finish(client.post(f"/api/tasks/{finished['id']}/again").get_json()["id"])  # 202
    client.post("/api/tasks/999/again")  # 404
    client.post(f"/api/tasks/{finished['id']}/again", headers={"Idempotency-Key": ""})  # 400
    once = plain.submit("once", 1)
    plain.finish(once["id"])
    client.post(f"/api/tasks/{once['id']}/again")  # 500
    holder = plain.submit("fake_polling", 1, wait=60)
    client.post(f"/api/tasks/{holder['id']}/again")  # 409: not finished
    client.post(f"/api/tasks/{finished['id']}/again")  # 503: the one slot is taken
    client.delete(f"/api/tasks/{holder['id']}")
    client.get("/api/task-types")
    client.get("/api/meta")
    client.get("/api/access")
    client.get("/api/stats")
    client.get("/api/stats/history")  # 200
    client.get("/api/stats/history?window=5m")  # 400
    client.get("/api/workers")
    client.get("/api/limits")  # 200
    client.open("PUT", "/api/limits/gpu", json={"limit": 2})  # 200
    client.open("PUT", "/api/limits/gpu", json={"limit": -1})  # 400
    client.open("PUT", "/api/limits/gpu", data="x" * 70_000, content_type="application/json")
    client.open("PUT", "/api/limits/gpu", data="x", content_type="text/plain")  # 415
    stream = client.get("/api/events")  # 200
    client.get("/api/events")  # 503
    stream.close()
    client.post("/api/pause")  # 200
    client.post("/api/resume")  # 200
    client.post("/api/tasks/cancel", json={"ids": [finished["id"]]})  # 200
    client.post("/api/tasks/cancel", json={"ids": []})  # 400
    client.post("/api/tasks/cancel", data="x" * 70_000, content_type="application/json")  # 413
    client.post("/api/tasks/cancel", data="x", content_type="text/plain")  # 415
    client.get("/api/openapi.json")
    client.get("/metrics")
    client.get("/")
    client.get("/tasks/1")
    client.get("/healthz")  # 200
    plain.state.close()
    client.get("/healthz")  # 503
    plain.runner.shutdown(wait=False, cancel_pending=True)
    client.post("/api/pause")  # 503
    cluster_like = make_server()
    for operation in ("pause", "resume"):
        setattr(cluster_like.runner, operation, _not_on_a_cluster)
        cluster_like.client.post(f"/api/{operation}")  # 501
    client.checker.observed |= cluster_like.client.checker.observed
    assert client.checker.observed == client.checker.documented()

    guarded = make_server(token="t")
    for path, item in guarded.client.checker.document["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and "401" in operation["responses"]:
                guarded.client.open(method.upper(), path.replace("{task_id}", "1"), json={})
    promised_401 = {key for key in guarded.client.checker.documented() if key[2] == "401"}
    assert promised_401 and guarded.client.checker.observed == promised_401
