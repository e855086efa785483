"""Operations over HTTP: pause, resume, bulk cancel, their stats and events; and
the folded event stream (each checked response held to the OpenAPI document)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from conftest_web import assert_problem, invalid_names
from prometheus_client.parser import text_string_to_metric_families
from web_app import Server, open_events, read_until

from taskrunner import TaskRunner
from taskrunner.web import create_app, events

from conftest import wait_for

WAIT = 10.0


@pytest.fixture
def server(make_server) -> Server:
    return make_server()


# ---- pause and resume ----------------------------------------------------------


def test_pause_and_resume_are_idempotent_and_show_in_the_stats(server):
    client = server.client
    assert client.get("/api/stats").get_json()["paused"] is False
    for _ in range(2):
        response = client.post("/api/pause")
        assert response.status_code == 200 and response.get_json() == {"paused": True}
    assert server.runner.paused and client.get("/api/stats").get_json()["paused"] is True
    for _ in range(2):
        response = client.post("/api/resume")
        assert response.status_code == 200 and response.get_json() == {"paused": False}
    assert not server.runner.paused


def test_tasks_submitted_while_paused_wait_and_start_on_resume(server):
    client = server.client
    client.post("/api/pause")
    blocking = server.submit("fake_blocking", 1, wait=0)
    polling = server.submit("fake_polling", 2, wait=0)
    time.sleep(0.3)
    states = [client.get(f"/api/tasks/{t['id']}").get_json()["state"] for t in (blocking, polling)]
    assert states == ["pending", "pending"], "submits are accepted, nothing starts"
    client.post("/api/resume")
    server.finish(blocking["id"], polling["id"])
    results = [
        client.get(f"/api/tasks/{t['id']}").get_json()["result"] for t in (blocking, polling)
    ]
    assert results == [2, 4]


def test_pause_after_shutdown_is_503(server):
    server.runner.shutdown(wait=True)
    assert_problem(server.client.post("/api/pause"), 503, "/problems/shutting-down")


def test_the_stats_and_metrics_show_attaching_workers_and_the_pause(server):
    stats = server.client.get("/api/stats").get_json()
    assert isinstance(stats["workers_attaching"], int) and stats["workers_attaching"] >= 0
    server.client.post("/api/pause")
    text = server.client.get("/metrics").get_data(as_text=True)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["taskrunner_paused"] == 1
    assert samples["taskrunner_workers_attaching"] >= 0


# ---- bulk cancel -----------------------------------------------------------------


def test_bulk_cancel_says_what_it_cancelled_and_why_not_the_rest(server):
    running = server.until_running(server.submit("gate", "held"))
    finished = server.submit("fake_blocking", 1, wait=0)
    server.finish(finished["id"])
    server.client.post("/api/pause")
    pending = [server.submit("fake_blocking", i, wait=0)["id"] for i in range(3)]
    already = server.submit("fake_blocking", 9, wait=0)["id"]
    server.runner.cancel(already)
    ids = [*pending, running["id"], finished["id"], 999_999, pending[0], already]
    response = server.client.post("/api/tasks/cancel", json={"ids": ids})
    assert response.status_code == 200
    assert response.get_json() == {
        "cancelled": [*pending, already],
        "not_cancelled": [
            {"id": running["id"], "reason": "running"},
            {"id": finished["id"], "reason": "finished"},
            {"id": 999_999, "reason": "unknown"},
        ],
    }
    assert {server.runner.status(id)["state"] for id in pending} == {"cancelled"}


def test_bulk_cancel_takes_a_thousand_ids(server):
    ids = list(range(1, 1001))
    response = server.client.post("/api/tasks/cancel", json={"ids": ids})
    assert response.status_code == 200
    assert len(response.get_json()["not_cancelled"]) == 1000


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": 1},
        {"ids": "1,2"},
        {"ids": {"1": 1}},
        {"ids": []},
        {"ids": list(range(1, 1002))},
        {"ids": ["1"]},
        {"ids": [1.5]},
        {"ids": [1.0]},
        {"ids": [True]},
        {"ids": [None]},
        {"ids": [0]},
        {"ids": [-1]},
        {"ids": [2**64]},
        {"ids": [1], "force": True},
    ],
)
def test_a_bad_bulk_cancel_body_is_400(server, body):
    response = server.client.post("/api/tasks/cancel", json=body)
    assert invalid_names(response) <= {"ids", "force"} and invalid_names(response)


@pytest.mark.parametrize("raw", ["[1, 2]", "null", "{", ""])
def test_a_bulk_cancel_body_that_is_not_a_json_object_is_400(server, raw):
    response = server.client.post("/api/tasks/cancel", data=raw, content_type="application/json")
    assert_problem(response, 400)


# ---- the token -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/pause", None), ("/api/resume", None), ("/api/tasks/cancel", {"ids": [1]})],
)
def test_the_operations_need_the_token_when_one_is_set(make_server, path, body):
    server = make_server(token="s3cret")
    assert_problem(server.client.post(path, json=body), 401)
    wrong = {"Authorization": "Bearer nope"}
    assert_problem(server.client.post(path, json=body, headers=wrong), 401)
    assert not server.runner.paused
    right = {"Authorization": "Bearer s3cret"}
    assert server.client.post(path, json=body, headers=right).status_code == 200


# ---- the event stream --------------------------------------------------------------


def test_the_stream_says_when_the_runner_is_paused_and_resumed(server):
    response, stream = open_events(server)
    ready = read_until(stream, lambda name, _: name == "ready")[-1][1]
    assert ready["paused"] is False
    server.client.post("/api/pause")
    assert read_until(stream, lambda name, _: name == "paused")[-1][1] == {"paused": True}
    server.runner.resume()  # from Python too
    assert read_until(stream, lambda name, _: name == "paused")[-1][1] == {"paused": False}
    response.close()


def test_a_slow_reader_gets_folded_changes_ending_with_each_final_status(server):
    response, stream = open_events(server)
    read_until(stream, lambda name, _: name == "ready")
    ids = [server.submit("fake_blocking", i, wait=0)["id"] for i in range(20)]
    server.finish(*ids)
    time.sleep(2 * events.FOLD_SECONDS)  # the client reads late
    latest: dict[int, dict] = {}
    task_events = 0

    def all_final(name: str, data: Any) -> bool:
        nonlocal task_events
        if name == "task":
            task_events += 1
            latest[data["id"]] = data
        return len(latest) == len(ids) and all(t["state"] == "succeeded" for t in latest.values())

    seen = read_until(stream, all_final)
    assert not any(name == "resync" for name, _ in seen)
    assert [latest[id]["result"] for id in ids] == [2 * i for i in range(20)]
    # Submitted, started and finished: 60 changes, folded into fewer events.
    assert task_events < 3 * len(ids)
    response.close()


def test_a_capped_interval_sends_the_latest_changes_then_resync(server, monkeypatch):
    monkeypatch.setattr(events, "MAX_TASK_EVENTS", 3)
    response, stream = open_events(server)
    read_until(stream, lambda name, _: name == "ready")
    server.client.post("/api/pause")  # so that all ten change within one interval
    ids = [server.submit("fake_blocking", i, wait=0)["id"] for i in range(10)]
    seen = read_until(stream, lambda name, _: name == "resync")
    task_ids = [data["id"] for name, data in seen if name == "task"]
    assert len(task_ids) <= 3 and set(task_ids) <= set(ids)
    assert ids[-1] in task_ids, "the latest change is among those sent"
    assert set(seen[-1][1]["counts"]) >= {"pending", "succeeded"}
    response.close()


def test_streams_share_one_fold_which_stops_with_the_last_stream(server):
    first, first_events = open_events(server)
    second, second_events = open_events(server)
    for stream in (first_events, second_events):
        read_until(stream, lambda name, _: name == "ready")
    assert events._FOLDS[server.state].listeners == 2
    task = server.submit("fake_blocking", 4, wait=0)

    def finished(name: str, data: Any) -> bool:
        return name == "task" and data["id"] == task["id"] and data["state"] == "succeeded"

    for stream in (first_events, second_events):
        assert read_until(stream, finished)[-1][1]["result"] == 8
    first.close()
    second.close()
    assert wait_for(lambda: server.state not in events._FOLDS, WAIT), "the fold stopped"


def test_pause_resume_and_bulk_cancel_are_audited_with_the_tokens_label(caplog):
    runner = TaskRunner()
    config = {"TESTING": True, "TASKRUNNER_TOKEN": "s3cret", "TASKRUNNER_TOKEN_LABEL": "ops"}
    app = create_app(runner=runner, config=config)
    client, auth = app.test_client(), {"Authorization": "Bearer s3cret"}
    try:
        with caplog.at_level(logging.INFO, logger="taskrunner.web.audit"):
            client.post("/api/pause", headers=auth)
            body = {"type": "fake", "input": 1, "wait": 0}
            submits = [client.post("/api/tasks", json=body, headers=auth) for _ in "ab"]
            ids = [response.get_json()["id"] for response in submits]
            client.post("/api/tasks/cancel", json={"ids": ids}, headers=auth)
            client.post("/api/resume", headers=auth)
        logged = [r.getMessage() for r in caplog.records if r.name == "taskrunner.web.audit"]
        assert logged[0] == "POST /api/pause task=None token=ops"
        assert logged[3:] == [
            f"POST /api/tasks/cancel task={ids[0]} token=ops",
            f"POST /api/tasks/cancel task={ids[1]} token=ops",
            "POST /api/resume task=None token=ops",
        ]
    finally:
        app.extensions["taskrunner"].close()
        runner.shutdown(cancel_pending=True)
