"""A task's timeline and "run again" over HTTP, through Flask's test client:
``GET /api/tasks/{id}/timeline`` and ``POST /api/tasks/{id}/again``, each
response held to the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest
from conftest_web import CheckedClient, assert_problem, invalid_names
from web_app import Fails, closing_factory

from taskrunner import TaskRunner
from taskrunner.web import create_app, default_task_types

from conftest import Gate

WAIT = 10.0
CANNOT_RUN_AGAIN = "/problems/cannot-run-again"


class Picky:
    """A factory that takes only the inputs on its list (which a test may change)."""

    def __init__(self) -> None:
        self.allowed = {1, 2, 3}

    def __call__(self, input: Any) -> Any:
        if input not in self.allowed:
            raise ValueError(f"{input!r} is not allowed")
        return Fails(input)


class App:
    """An app over a runner (its own, or one given), with a checked client."""

    def __init__(
        self,
        runner: Optional[TaskRunner] = None,
        types: Optional[dict] = None,
        db: Optional[str] = None,
        **settings: Any,
    ) -> None:
        self.gates: list[Gate] = []
        self.picky = Picky()
        if types is None:
            types = {**default_task_types(), "fails": Fails, "picky": self.picky}
            types["gate"] = self._gate
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None, "TASKRUNNER_DB": db}
        config.update({f"TASKRUNNER_{k.upper()}": v for k, v in settings.items()})
        self.app = create_app(runner=runner, task_types=types, config=config)
        self.state = self.app.extensions["taskrunner"]
        self.runner: TaskRunner = self.state.runner
        self.client = CheckedClient(self.app)

    def _gate(self, input: Any) -> Gate:
        gate = Gate(input)
        self.gates.append(gate)
        return gate

    def submit(self, body: dict, **headers: str) -> dict:
        response = self.client.post("/api/tasks", json=body, headers=headers)
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def timeline(self, id: int, **headers: str) -> dict:
        response = self.client.get(f"/api/tasks/{id}/timeline", headers=headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def again(self, id: int, **headers: str) -> Any:
        return self.client.post(f"/api/tasks/{id}/again", headers=headers)

    def finish(self, *ids: int) -> None:
        _, not_done = self.runner.wait(ids, timeout=WAIT)
        assert not not_done

    def close(self) -> None:
        if self.runner.closed:
            return
        for gate in self.gates:
            gate.release.set()
        self.state.close()
        self.runner.shutdown(wait=False, cancel_pending=True)
        for id in self.runner.ids(state="running"):
            self.runner.cancel(id)
        self.runner.shutdown(wait=True)


@pytest.fixture
def make_app():
    yield from closing_factory(App, reverse=True)


@pytest.fixture
def app(make_app) -> App:
    return make_app()


def test_the_timeline_of_a_retried_task_shows_each_attempt_and_its_error(app):
    retries = {"attempts": 3, "backoff": 0, "jitter": False}
    task = app.submit({"type": "fails", "input": "x", "retries": retries})
    app.finish(task["id"])
    timeline = app.timeline(task["id"])
    assert [(e["state"], e["attempt"]) for e in timeline["events"]] == [
        ("pending", 1),
        ("running", 1),
        ("pending", 2),
        ("running", 2),
        ("pending", 3),
        ("running", 3),
        ("failed", 3),
    ]
    assert [a["attempt"] for a in timeline["attempts"]] == [1, 2, 3]
    for attempt in timeline["attempts"]:
        assert attempt["error"]["type"] == "ValueError"
        assert "cannot do 'x'" in attempt["error"]["traceback"]
    assert timeline["events"][-1]["error"] == app.runner.status(task["id"])["error"]
    assert timeline["again"] is True
    assert app.runner.timeline(task["id"]) == timeline


def test_after_and_dependents_link_tasks_both_ways(app):
    first = app.submit({"type": "fake_blocking", "input": 1, "wait": 0})
    second = app.submit({"type": "fake_blocking", "input": 2, "wait": 0, "after": [first["id"]]})
    app.finish(first["id"], second["id"])
    assert app.timeline(first["id"])["dependents"] == [second["id"]]
    assert app.timeline(second["id"])["after"] == [first["id"]]


def test_run_again_makes_a_new_task_of_the_same_type_input_wait_and_timeout(app):
    failed = app.submit({"type": "fails", "input": [1, "two"], "timeout": 30, "name": "mine"})
    app.finish(failed["id"])
    response = app.again(failed["id"])
    assert response.status_code == 202
    again = response.get_json()
    assert again["id"] > failed["id"]
    assert response.headers["Location"].endswith(f"/api/tasks/{again['id']}")
    assert again["name"] == "mine", "the name it was given goes with it"
    assert again["type"] == failed["type"] == "fails"
    made = app.runner.recipe(again["id"])
    assert made == app.runner.recipe(failed["id"])
    assert (made["type"], made["input"], made["wait"], made["timeout"]) == (
        "fails",
        [1, "two"],
        None,
        30,
    )
    app.finish(again["id"])
    assert app.runner.status(again["id"])["error"]["message"] == "cannot do [1, 'two']"


def test_a_task_run_again_keeps_its_timeout_and_takes_its_class_name(app):
    slow = app.submit({"type": "fake_blocking", "input": 1, "wait": 1, "timeout": 0.1})
    app.finish(slow["id"])
    assert app.runner.status(slow["id"])["state"] == "timed_out"
    again = app.again(slow["id"]).get_json()
    assert again["name"] == "FakeTaskBlocking"
    app.finish(again["id"])
    assert app.runner.status(again["id"])["state"] == "timed_out"


def test_run_again_with_an_idempotency_key_makes_one_task(app):
    done = app.submit({"type": "fake_blocking", "input": 1, "wait": 0})
    app.finish(done["id"])
    first = app.again(done["id"], **{"Idempotency-Key": "once"})
    repeat = app.again(done["id"], **{"Idempotency-Key": "once"})
    assert first.status_code == repeat.status_code == 202
    assert first.get_json()["id"] == repeat.get_json()["id"]
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert invalid_names(app.again(done["id"], **{"Idempotency-Key": ""})) == {"Idempotency-Key"}


def test_a_task_not_submitted_over_http_cannot_run_again(app):
    handle = app.runner.submit(Fails(1), kind="blocking")
    handle.exception(WAIT)
    body = assert_problem(app.again(handle.id), 409, CANNOT_RUN_AGAIN)
    assert "not submitted over HTTP" in body["detail"]
    assert app.timeline(handle.id)["again"] is False
    # A recipe that is not an HTTP task's is no way to run it again either.
    other = app.runner.submit(Fails(1), kind="blocking", recipe={"n": 1})
    other.exception(WAIT)
    assert_problem(app.again(other.id), 409, CANNOT_RUN_AGAIN)
    assert app.timeline(other.id)["again"] is False


def test_an_unfinished_task_cannot_run_again_until_it_finishes(app):
    task = app.submit({"type": "gate", "input": 1})
    assert app.gates[0].entered.wait(WAIT)
    body = assert_problem(app.again(task["id"]), 409, CANNOT_RUN_AGAIN)
    assert "running" in body["detail"]
    assert app.timeline(task["id"])["again"] is False
    app.gates[0].release.set()
    app.finish(task["id"])
    assert app.timeline(task["id"])["again"] is True


def test_a_type_no_longer_served_or_an_input_now_refused_cannot_run_again(make_app):
    first = make_app()
    old = first.submit({"type": "fails", "input": 1})
    picky = first.submit({"type": "picky", "input": 2})
    first.finish(old["id"], picky["id"])
    first.picky.allowed.discard(2)
    body = assert_problem(first.again(picky["id"]), 409, CANNOT_RUN_AGAIN)
    assert "2 is not allowed" in body["detail"]
    # The same runner behind an app without the type.
    second = make_app(runner=first.runner, types=default_task_types())
    body = assert_problem(second.again(old["id"]), 409, CANNOT_RUN_AGAIN)
    assert "'fails'" in body["detail"]
    assert second.timeline(old["id"])["again"] is False
    assert first.timeline(old["id"])["again"] is True


def test_run_again_goes_through_the_limit_of_unfinished_tasks(make_app):
    app = make_app(max_unfinished=1)
    done = app.submit({"type": "fake_blocking", "input": 1, "wait": 0})
    app.finish(done["id"])
    app.submit({"type": "gate", "input": 1})
    response = app.again(done["id"])
    assert_problem(response, 503, "/problems/too-many-unfinished")
    assert "Retry-After" in response.headers


def test_unknown_ids_are_404(app):
    for id in ("999", "x", "-1", "1" * 30):
        assert_problem(app.client.get(f"/api/tasks/{id}/timeline"), 404, "/problems/unknown-task")
        assert_problem(app.again(id), 404, "/problems/unknown-task")


def test_run_again_needs_the_token_when_one_is_set(make_app):
    app = make_app(token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    done = app.submit({"type": "fake_blocking", "input": 1, "wait": 0}, **auth)
    app.finish(done["id"])
    assert_problem(app.again(done["id"]), 401)
    assert_problem(app.again(done["id"], Authorization="Bearer wrong"), 401)
    assert_problem(app.client.get(f"/api/tasks/{done['id']}/timeline"), 401)
    assert app.timeline(done["id"], **auth)["again"] is True
    assert app.again(done["id"], **auth).status_code == 202


def test_with_a_journal_a_task_runs_again_after_a_restart(make_app, tmp_path: Path):
    db = str(tmp_path / "tasks.db")
    first = make_app(db=db)
    retries = {"attempts": 2, "backoff": 0, "jitter": False}
    failed = first.submit({"type": "fails", "input": 7, "timeout": 60, "retries": retries})
    first.finish(failed["id"])
    before = first.timeline(failed["id"])
    first.close()

    second = make_app(db=db)
    assert second.timeline(failed["id"]) == before
    response = second.again(failed["id"])
    assert response.status_code == 202
    again = response.get_json()
    second.finish(again["id"])
    second.close()

    # The new task's recipe is in the journal: it can run again in turn.
    third = make_app(db=db)
    assert third.runner.recipe(again["id"])["timeout"] == 60
    assert third.timeline(again["id"])["again"] is True
    assert third.again(again["id"]).status_code == 202
