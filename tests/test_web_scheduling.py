"""Scheduling over HTTP: the submit's retries, delay, not_before, priority, after and
limit fields, the limits endpoints, and the server's ``limits`` setting and flag."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Optional

import pytest
import requests
from conftest_web import CheckedClient, ServerProcess, assert_problem, invalid_names

from taskrunner import TaskRunner
from taskrunner.web import create_app, default_task_types
from taskrunner.web.limits import parse_limits
from taskrunner.web.settings import Settings

from conftest import Gate, wait_for

WAIT = 10.0  # generous: how long a test waits for a task to finish


class Flaky:
    """A blocking task whose first ``input`` runs fail; retries run the same object."""

    def __init__(self, input: int) -> None:
        self.failures_left = input

    def run(self) -> str:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise ConnectionError("the service is down")
        return "ok"

    def get_output(self) -> None:
        return None


class App:
    """An app over the runner it makes for itself, with its settings."""

    def __init__(self, **settings: Any) -> None:
        self.gates: list[Gate] = []
        types = {**default_task_types(), "flaky": Flaky, "gate": self._gate}
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None, "TASKRUNNER_DB": None}
        config.update({f"TASKRUNNER_{k.upper()}": v for k, v in settings.items()})
        self.app = create_app(task_types=types, config=config)
        self.state = self.app.extensions["taskrunner"]
        self.runner: TaskRunner = self.state.runner
        self.client = CheckedClient(self.app)

    def _gate(self, input: Any) -> Gate:
        gate = Gate(input)
        self.gates.append(gate)
        return gate

    def post(self, body: dict, key: Optional[str] = None) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        return self.client.post("/api/tasks", json=body, headers=headers)

    def submit(self, type: str = "fake_blocking", input: Any = 21, **fields: Any) -> dict:
        response = self.post({"type": type, "input": input, **fields})
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def task(self, id: int) -> dict:
        return self.client.get(f"/api/tasks/{id}").get_json()

    def finish(self, *ids: int) -> list[dict]:
        _, not_done = self.runner.wait(ids, timeout=WAIT)
        assert not not_done, f"tasks {sorted(not_done)} did not finish"
        return [self.task(id) for id in ids]

    def limits(self) -> dict[str, dict]:
        body = self.client.get("/api/limits").get_json()
        return {entry.pop("label"): entry for entry in body["limits"]}

    def put_limit(self, label: str, limit: Any, **headers: str) -> Any:
        return self.client.open(
            "PUT", f"/api/limits/{label}", json={"limit": limit}, headers=headers
        )

    def close(self) -> None:
        for gate in self.gates:
            gate.release.set()
        self.state.close()
        self.runner.shutdown(wait=True, cancel_pending=True)


@pytest.fixture
def make_app():
    apps: list[App] = []

    def make(**settings: Any) -> App:
        app = App(**settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app) -> App:
    return make_app(limits="gpu=1 api=100/1s")


# ---- each field, accepted and seen in the status ---------------------------------


def test_a_delayed_task_is_pending_with_its_start_time(app):
    before = time.time()
    task = app.submit(delay=60)
    assert task["state"] == "pending"
    assert before + 60 <= task["not_before"] <= time.time() + 60
    assert app.task(task["id"])["not_before"] == task["not_before"]


def test_a_task_not_before_a_time_is_pending_until_then(app):
    at = time.time() + 0.3
    task = app.submit(not_before=at, wait=0)
    assert task["state"] == "pending" and task["not_before"] == pytest.approx(at)
    [done] = app.finish(task["id"])
    assert done["state"] == "succeeded" and done["started_at"] >= at - 0.01


def test_retries_as_a_number_run_a_failing_task_again(app):
    task = app.submit("flaky", 1, retries=1)
    [done] = app.finish(task["id"])
    assert done["state"] == "succeeded" and done["result"] == "ok"
    assert done["attempt"] == 2


def test_a_retry_policy_says_how_many_attempts_and_the_last_error_is_kept(app):
    policy = {"attempts": 3, "backoff": 0, "max_backoff": 0, "jitter": False}
    task = app.submit("flaky", 5, retries=policy)
    [done] = app.finish(task["id"])
    assert done["state"] == "failed" and done["attempt"] == 3
    assert done["error"]["type"] == "ConnectionError"


def test_a_priority_is_in_the_status(app):
    assert app.submit(priority=-7)["priority"] == -7
    assert app.submit(priority=2**31 - 1)["priority"] == 2**31 - 1


def test_a_task_after_another_waits_for_it_then_runs(app):
    upstream = app.submit("gate", "up")
    task = app.submit(after=[upstream["id"]], wait=0)
    assert task["state"] == "pending" and task["after"] == [upstream["id"]]
    assert wait_for(lambda: app.gates and app.gates[0].entered.is_set(), WAIT)
    assert app.task(task["id"])["state"] == "pending"
    app.gates[0].release.set()
    [done] = app.finish(task["id"])
    assert done["state"] == "succeeded" and done["after"] == [upstream["id"]]


def test_a_task_after_one_that_fails_is_cancelled_naming_it(app):
    upstream = app.submit("flaky", 1)
    task = app.submit(after=[upstream["id"]], wait=0)
    [done] = app.finish(task["id"])
    assert done["state"] == "cancelled" and str(upstream["id"]) in done["error"]["message"]


def test_a_limit_holds_tasks_past_it_and_shows_them_waiting(app):
    first = app.submit("gate", 1, limit="gpu")
    second = app.submit("gate", 2, limit="gpu")
    assert first["limit"] == second["limit"] == "gpu"
    assert wait_for(lambda: app.limits()["gpu"] == {"limit": 1, "running": 1, "waiting": 1}, WAIT)
    assert len(app.gates) == 2 and not app.gates[1].entered.is_set()
    app.gates[0].release.set()
    assert wait_for(lambda: app.gates[1].entered.is_set(), WAIT), "the second never started"


def test_null_options_are_no_options(app):
    fields = dict.fromkeys(("retries", "delay", "not_before", "priority", "after", "limit"))
    task = app.submit(wait=0, **fields)
    assert (task["priority"], task["after"], task["limit"]) == (0, [], None)
    assert app.finish(task["id"])[0]["state"] == "succeeded"


# ---- bad values ------------------------------------------------------------------

BAD_VALUES = {
    "retries": [-1, 2**32 - 1, 1.5, True, "3", [3], {}, {"attempts": 0}, {"attempts": 2, "x": 1},
                {"attempts": 2, "backoff": -1}, {"attempts": 2, "backoff": 86_401},
                {"attempts": 2, "max_backoff": "1"}, {"attempts": 2, "jitter": 1},
                {"attempts": 2, "backoff": 10, "max_backoff": 5}],
    "delay": [-1, 365 * 86_400 + 1, "1", True, [], {}],
    "not_before": [-1, time.time() + 366 * 86_400, "soon", True, {}],
    "priority": [2**31, -(2**31) - 1, 1.5, True, "1", []],
    "after": [1, "1", [0], [-1], [1.5], ["1"], [True], [2**64], {}],
    "limit": ["", "x" * 201, 1, True, [], {}],
}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [(field, value) for field, values in BAD_VALUES.items() for value in values],
)
def test_a_bad_value_is_400_naming_its_field(app, field, value):
    response = app.post({"type": "fake", "input": 1, field: value})
    assert invalid_names(response) == {field}
    assert not app.runner.ids(), "a task was submitted"


def test_every_bad_field_is_named_at_once(app):
    body = {"type": "fake", "input": 1, "delay": -1, "priority": 0.5, "limit": "", "after": 3}
    assert invalid_names(app.post(body)) == {"delay", "priority", "limit", "after"}


def test_delay_and_not_before_together_are_400(app):
    response = app.post({"type": "fake", "input": 1, "delay": 1, "not_before": time.time()})
    assert invalid_names(response) == {"not_before"}


def test_a_retry_policy_cannot_name_exceptions(app):
    response = app.post({"type": "fake", "input": 1, "retries": {"attempts": 2, "on": "OSError"}})
    [param] = assert_problem(response, 400)["invalid_params"]
    assert param["name"] == "retries" and "every Exception" in param["reason"]


def test_the_core_says_why_max_backoff_is_below_backoff(app):
    policy = {"attempts": 2, "backoff": 10}  # max_backoff is 60 by default
    assert app.post({"type": "fake", "input": 1, "retries": policy}).status_code == 202
    policy = {"attempts": 2, "backoff": 100}
    [param] = assert_problem(app.post({"type": "fake", "input": 1, "retries": policy}), 400)[
        "invalid_params"
    ]
    assert param == {
        "name": "retries",
        "reason": "max_backoff (60) must not be below backoff (100)",
    }


def test_an_unknown_after_id_is_400_naming_after(app):
    known = app.submit(wait=0)
    response = app.post({"type": "fake", "input": 1, "after": [known["id"], 999]})
    [param] = assert_problem(response, 400, "/problems/invalid-params")["invalid_params"]
    assert param == {"name": "after", "reason": "no task with id 999"}
    assert app.runner.ids() == [known["id"]]


def test_an_unknown_limit_is_400_naming_the_known_ones(app):
    response = app.post({"type": "fake", "input": 1, "limit": "tpu"})
    [param] = assert_problem(response, 400, "/problems/invalid-params")["invalid_params"]
    assert param["name"] == "limit"
    assert "'tpu'" in param["reason"] and "known: api, gpu" in param["reason"]
    assert "PUT /api/limits/tpu" in param["reason"]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "fake", "input": 1, "retries": 2, "priority": -3, "delay": 0.5},
        {"type": "fake", "input": 1, "retries": {"attempts": 2, "backoff": 0.1}, "after": []},
        {"type": "fake", "input": 1, "not_before": 0, "priority": 2.0, "limit": "gpu"},
        {"type": "fake", "input": 1, "retries": {"attempts": 0}},
        {"type": "fake", "input": 1, "retries": {"attempts": 2, "on": "OSError"}},
        {"type": "fake", "input": 1, "delay": 365 * 86_400 + 1},
        {"type": "fake", "input": 1, "priority": 2**31},
        {"type": "fake", "input": 1, "after": [0]},
        {"type": "fake", "input": 1, "limit": ""},
    ],
)
def test_the_submission_schema_accepts_what_the_server_accepts(app, body):
    schema = app.client.checker.validator("/components/schemas/Submission")
    response = app.client.raw.post("/api/tasks", json=body)
    assert schema.is_valid(body) == (response.status_code != 400), response.get_json()


def test_the_document_describes_each_field_and_the_limits_endpoints(app):
    document = app.client.checker.document
    properties = document["components"]["schemas"]["Submission"]["properties"]
    for field in ("retries", "delay", "not_before", "priority", "after", "limit"):
        assert properties[field]["description"], field
    assert "Exception" in properties["retries"]["description"]
    assert set(document["paths"]["/api/limits"]) == {"get"}
    assert set(document["paths"]["/api/limits/{label}"]) == {"parameters", "put"}


# ---- idempotency -------------------------------------------------------------------


def test_a_repeat_with_a_key_answers_with_the_first_scheduled_task(make_app, tmp_path):
    app = make_app(db=str(tmp_path / "tasks.db"), limits="gpu=1")
    upstream = app.submit("gate", 1)
    body = {"type": "fake", "input": 1, "delay": 60, "after": [upstream["id"]], "limit": "gpu"}
    first = app.post(body, key="nightly")
    assert first.status_code == 202, first.get_json()
    again = app.post({**body, "priority": 5, "delay": 1}, key="nightly")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["priority"] == 0 and again.get_json()["limit"] == "gpu"
    assert len(app.runner.ids()) == 2
    # Options that no longer hold still find the key's task.
    stale = app.post({**body, "limit": "gone", "after": [999_999]}, key="nightly")
    assert stale.status_code == 202 and stale.get_json()["id"] == first.get_json()["id"]
    # Without the key, the same options are refused.
    assert app.post({**body, "limit": "gone"}).status_code == 400


@pytest.mark.slow
def test_a_delayed_task_with_a_limit_and_its_key_survive_a_crash(tmp_path):
    db = str(tmp_path / "tasks.db")
    first = ServerProcess(db=db, TASKRUNNER_LIMITS="gpu=1")
    body = {"type": "fake", "input": 1, "delay": 3600, "limit": "gpu", "priority": 4}
    headers = {"Idempotency-Key": "later"}
    try:
        task = requests.post(f"{first.url}/api/tasks", json=body, headers=headers, timeout=10)
    finally:
        first.process.kill()
        first.process.wait(timeout=30)
    second = ServerProcess(db=db, TASKRUNNER_LIMITS="gpu=1")
    try:
        again = requests.post(f"{second.url}/api/tasks", json=body, headers=headers, timeout=10)
        assert again.headers["Idempotent-Replayed"] == "true"
        status = again.json()
        assert status["id"] == task.json()["id"] and status["state"] == "pending"
        assert status["not_before"] == task.json()["not_before"]
        assert (status["limit"], status["priority"], status["attempt"]) == ("gpu", 4, 2)
        limits = requests.get(f"{second.url}/api/limits", timeout=10).json()["limits"]
        assert limits == [{"label": "gpu", "limit": 1, "running": 0, "waiting": 0}]
    finally:
        second.stop()


# ---- the limits endpoints -----------------------------------------------------------


def test_get_limits_lists_each_label_with_a_rate_as_count_and_per(app):
    assert app.limits() == {
        "api": {"limit": {"count": 100, "per": 1.0}, "running": 0, "waiting": 0},
        "gpu": {"limit": 1, "running": 0, "waiting": 0},
    }


def test_without_limits_the_list_is_empty(make_app):
    assert make_app().limits() == {}


def test_raising_a_limit_starts_the_tasks_it_now_lets_through(app):
    app.submit("gate", 1, limit="gpu")
    app.submit("gate", 2, limit="gpu")
    assert wait_for(lambda: app.limits()["gpu"]["waiting"] == 1, WAIT)
    response = app.put_limit("gpu", 2)
    assert response.status_code == 200
    assert response.get_json()["label"] == "gpu" and response.get_json()["limit"] == 2
    assert wait_for(lambda: len(app.gates) == 2 and app.gates[1].entered.is_set(), WAIT)
    assert app.limits()["gpu"] == {"limit": 2, "running": 2, "waiting": 0}


def test_a_limit_of_0_holds_every_task_of_its_label(app):
    assert app.put_limit("gpu", 0).status_code == 200
    task = app.submit(wait=0, limit="gpu")
    assert wait_for(lambda: app.limits()["gpu"]["waiting"] == 1, WAIT)
    assert app.task(task["id"])["state"] == "pending"


def test_put_declares_a_new_label_and_a_rate(app):
    response = app.put_limit("mail", {"count": 10, "per": 60})
    assert response.get_json() == {
        "label": "mail",
        "limit": {"count": 10, "per": 60.0},
        "running": 0,
        "waiting": 0,
    }
    assert app.submit(wait=0, limit="mail")["limit"] == "mail"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"limit": -1},
        {"limit": 1.5},
        {"limit": True},
        {"limit": "2"},
        {"limit": None},
        {"limit": 2**63},
        {"limit": {"count": 0, "per": 1}},
        {"limit": {"count": 1, "per": 0}},
        {"limit": {"count": 1, "per": 86_401}},
        {"limit": {"count": 1}},
        {"limit": {"count": 1, "per": 1, "burst": 2}},
    ],
)
def test_a_bad_limit_is_400_naming_it(app, body):
    response = app.client.open("PUT", "/api/limits/gpu", json=body)
    assert invalid_names(response) == {"limit"}
    assert app.limits()["gpu"]["limit"] == 1


def test_an_unknown_field_of_a_limit_is_named(app):
    response = app.client.open("PUT", "/api/limits/gpu", json={"limit": 1, "max": 2})
    assert invalid_names(response) == {"max"}


def test_a_label_over_200_characters_is_400(app):
    assert invalid_names(app.put_limit("x" * 201, 1)) == {"label"}


def test_setting_a_limit_needs_the_token(make_app):
    app = make_app(token="secret", limits="gpu=1")
    assert_problem(app.put_limit("gpu", 5), 401)
    assert_problem(app.client.get("/api/limits"), 401)
    assert app.put_limit("gpu", 5, Authorization="Bearer secret").status_code == 200
    assert app.runner.limits()["gpu"]["limit"] == 5


# ---- the limits setting and the flag ----------------------------------------------


def test_the_setting_reads_counts_and_rates_in_seconds_minutes_and_hours():
    limits = parse_limits("gpu=2, api=100/1s mail=10/5m slow=1/h half=3/0.5s")
    assert limits["gpu"] == 2
    rates = {label: (rate.count, rate.per) for label, rate in limits.items() if label != "gpu"}
    assert rates == {
        "api": (100, 1.0),
        "mail": (10, 300.0),
        "slow": (1, 3600.0),
        "half": (3, 0.5),
    }


@pytest.mark.parametrize(
    "text", ["gpu", "gpu=", "=2", "gpu=-1", "gpu=x", "gpu=2/", "api=0/1s", "api=1/2d", "a=1/25h"]
)
def test_a_bad_setting_is_a_value_error_naming_the_item(text):
    with pytest.raises(ValueError, match="TASKRUNNER_LIMITS: the limit") as raised:
        Settings.load({"TASKRUNNER_LIMITS": text}, environ={})
    assert repr(text.split()[0]) in str(raised.value)


def test_the_setting_comes_from_the_environment(monkeypatch, make_app):
    monkeypatch.setenv("TASKRUNNER_LIMITS", "tpu=3")
    assert make_app().limits() == {"tpu": {"limit": 3, "running": 0, "waiting": 0}}


def test_a_runner_given_to_the_app_keeps_its_own_limits():
    runner = TaskRunner(limits={"own": 1})
    try:
        app = create_app(runner=runner, config={"TASKRUNNER_LIMITS": "gpu=2"})
        labels = [e["label"] for e in app.test_client().get("/api/limits").get_json()["limits"]]
        assert labels == ["own"]
    finally:
        runner.shutdown(cancel_pending=True)


def test_serve_with_a_bad_limit_exits_2_with_one_line():
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--limit", "gpu=lots"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "taskrunner serve: TASKRUNNER_LIMITS: the limit 'gpu=lots' is not "
        "LABEL=N or LABEL=COUNT/PER (gpu=2, api=100/1s, mail=10/5m)"
    ]


@pytest.mark.slow
def test_serve_starts_with_the_limits_of_its_flags():
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    server = ServerProcess([*command, "--limit", "gpu=2", "--limit", "api=100/1s"])
    try:
        limits = requests.get(f"{server.url}/api/limits", timeout=10).json()["limits"]
        assert limits == [
            {"label": "api", "limit": {"count": 100, "per": 1.0}, "running": 0, "waiting": 0},
            {"label": "gpu", "limit": 2, "running": 0, "waiting": 0},
        ]
        assert "taskrunner: limits: api=100/1s, gpu=2" in server.log()
    finally:
        server.stop()
