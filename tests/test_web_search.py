"""Search over HTTP: ``GET /api/tasks`` filtered by state, name, kind, type,
worker, error type and submit time, from memory and from the journal, paged
with the cursor; a task's ``type``; bad values are 400. Every response is
held to the OpenAPI document."""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlencode

import pytest
from conftest_web import CheckedClient, invalid_names

from taskrunner import TaskRunner
from taskrunner.faketasks import FakeTaskBlocking
from taskrunner.web import create_app, default_task_types

WAIT = 10.0
WORKER = "tcp://10.0.0.9:4000"


class FailsWith:
    """A task type whose tasks raise ``error`` in run()."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def __call__(self, input: Any) -> Any:
        error = self.error

        class Fails:
            def run(self) -> Any:
                raise error(input)

            def get_output(self) -> Any:
                return None

        return Fails()


TYPES = {
    **default_task_types(),
    "value_error": FailsWith(ValueError),
    "key_error": FailsWith(KeyError),
}


class App:
    """An app over its own runner, in memory or journaled to ``db``."""

    def __init__(self, db: Optional[str]) -> None:
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None, "TASKRUNNER_DB": db}
        self.app = create_app(task_types=TYPES, config=config)
        self.state = self.app.extensions["taskrunner"]
        self.runner: TaskRunner = self.state.runner
        self.client = CheckedClient(self.app)

    def submit(self, type: str, name: Optional[str] = None) -> dict:
        body: dict[str, Any] = {"type": type, "input": 1}
        if type.startswith("fake"):
            body["wait"] = 0
        if name is not None:
            body["name"] = name
        response = self.client.post("/api/tasks", json=body)
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def list(self, **params: Any) -> Any:
        return self.client.get("/api/tasks?" + urlencode(params))

    def all_ids(self, page: int, **params: Any) -> list[int]:
        """Every id the list gives, newest first, following next_cursor."""
        ids: list[int] = []
        cursor = None
        while True:
            query = {**params, "limit": page}
            if cursor is not None:
                query["cursor"] = cursor
            response = self.list(**query)
            assert response.status_code == 200, response.get_json()
            body = response.get_json()
            assert len(body["tasks"]) <= page
            ids.extend(task["id"] for task in body["tasks"])
            cursor = body["next_cursor"]
            if cursor is None:
                return ids

    def close(self) -> None:
        if self.runner.closed:
            return
        self.state.close()
        self.runner.shutdown(wait=True)


@pytest.fixture
def open_app():
    apps: list[App] = []

    def open(db: Optional[str]) -> App:
        app = App(db)
        apps.append(app)
        return app

    yield open
    for app in apps:
        app.close()


def fill(app: App) -> list[dict]:
    """A mix of finished tasks: HTTP ones of four types, a Python one with a
    type= label, and one that ran on a cluster worker. Returns their statuses."""
    ids = []
    for i in range(24):
        task_type = ("fake_blocking", "fake_polling", "value_error", "key_error")[i % 4]
        name = "rare-report" if i == 5 else None
        ids.append(app.submit(task_type, name=name)["id"])
    ids.append(app.runner.submit(FakeTaskBlocking(1, wait=0), type="from-python").id)
    remote = app.runner.submit(FakeTaskBlocking(1, wait=0), type="fake_blocking", _elsewhere=True)
    app.runner._started_elsewhere([(remote.id, "blocking", WORKER)])
    app.runner._finished_elsewhere([(remote.id, "blocking", "succeeded", 2, None, 0)])
    ids.append(remote.id)
    _, not_done = app.runner.wait(ids, timeout=WAIT)
    assert not not_done
    assert app.runner.flush(WAIT)
    return [app.runner.status(id) for id in ids]


def passes(status: dict, **filters: str) -> bool:
    error = status["error"]["type"] if status["error"] else None
    have = {
        "state": status["state"],
        "kind": status["kind"],
        "type": status["type"],
        "worker": status["worker"],
        "error": error,
    }
    return all(
        (want in status["name"]) if key == "name" else have[key] == want
        for key, want in filters.items()
    )


FILTERS = [
    {},
    {"name": "rare"},
    {"name": "no such name"},
    {"kind": "polling"},
    {"kind": "blocking"},
    {"type": "value_error"},
    {"type": "from-python"},
    {"type": "no_such_type"},
    {"worker": WORKER},
    {"error": "ValueError"},
    {"error": "KeyError"},
    {"error": "NoSuchError"},
    {"state": "failed", "error": "KeyError"},
    {"state": "succeeded", "kind": "blocking", "type": "fake_blocking"},
    {"type": "fake_blocking", "worker": WORKER},
]


@pytest.fixture(params=["memory", "journal"])
def searched(request, open_app, tmp_path):
    db = str(tmp_path / "tasks.db") if request.param == "journal" else None
    app = open_app(db)
    return app, fill(app)


def test_an_http_task_carries_its_type(open_app):
    app = open_app(None)
    task = app.submit("fake_blocking")
    assert task["type"] == "fake_blocking"
    assert list(task)[-1] == "type"
    got = app.client.get(f"/api/tasks/{task['id']}").get_json()
    assert got["type"] == "fake_blocking"


@pytest.mark.parametrize(
    "filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "none"
)
def test_each_filter_lists_exactly_its_tasks_newest_first_across_pages(searched, filters):
    app, statuses = searched
    expected = sorted((s["id"] for s in statuses if passes(s, **filters)), reverse=True)
    assert app.all_ids(4, **filters) == expected
    # One page holding them all says there is no next one.
    body = app.list(**filters, limit=100).get_json()
    assert [t["id"] for t in body["tasks"]] == expected and body["next_cursor"] is None
    assert all(passes(t, **filters) for t in body["tasks"])


def test_the_submit_time_bounds_combine_with_the_other_filters(searched):
    app, statuses = searched
    middle = statuses[len(statuses) // 2]["submitted_at"]
    filters = {"since": middle, "error": "ValueError"}
    expected = [
        s["id"] for s in statuses if s["submitted_at"] >= middle and passes(s, error="ValueError")
    ]
    assert expected
    assert app.all_ids(2, **filters) == sorted(expected, reverse=True)


def test_tasks_of_an_earlier_process_are_found_after_a_restart(open_app, tmp_path):
    db = str(tmp_path / "tasks.db")
    first = open_app(db)
    statuses = fill(first)
    first.close()
    second = open_app(db)
    for filters in FILTERS:
        expected = sorted((s["id"] for s in statuses if passes(s, **filters)), reverse=True)
        assert second.all_ids(3, **filters) == expected, filters
    task = second.list(type="from-python").get_json()["tasks"][0]
    assert task["type"] == "from-python" and task["done"]


@pytest.mark.parametrize(
    "params, bad",
    [
        ({"kind": "quick"}, {"kind"}),
        ({"kind": "Blocking"}, {"kind"}),
        ({"type": "t" * 201}, {"type"}),
        ({"worker": "w" * 201}, {"worker"}),
        ({"error": "E" * 201}, {"error"}),
        ({"kind": "x", "error": "E" * 201, "state": "done"}, {"kind", "error", "state"}),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(open_app, params, bad):
    app = open_app(None)
    assert invalid_names(app.list(**params)) == bad


def test_an_empty_filter_is_no_filter(open_app):
    app = open_app(None)
    ids = [app.submit("fake_blocking")["id"] for _ in range(3)]
    app.runner.wait(ids, timeout=WAIT)
    body = app.list(kind="", type="", worker="", error="").get_json()
    assert [t["id"] for t in body["tasks"]] == ids[::-1]


def test_the_filters_are_in_the_openapi_document(open_app):
    app = open_app(None)
    document = app.client.get("/api/openapi.json").get_json()
    parameters = document["paths"]["/api/tasks"]["get"]["parameters"]
    names = {p["name"] for p in parameters}
    assert {"kind", "type", "worker", "error", "state", "name", "since", "until"} <= names
    status = document["components"]["schemas"]["Task"]
    assert "type" in status["required"] and "type" in status["properties"]
