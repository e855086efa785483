"""The HTTP API over a journal, through Flask's test client: 202 once committed,
Idempotency-Key, health while the journal cannot write, history after a restart.

Real servers, restarts and crashes are in ``test_web_restarts.py``.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import pytest
from conftest_web import CheckedClient, assert_problem, invalid_names
from prometheus_client.parser import text_string_to_metric_families
from web_app import Fails, closing_factory

from taskrunner import TaskRunner
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
from taskrunner.web import create_app, default_task_types
from taskrunner.web.settings import Settings
from taskrunner.web.tasktypes import TaskTypes, recipe

WAIT = 10.0


def strict_factory(input: Any) -> Any:
    """Takes only integers, and no wait."""
    if not isinstance(input, int):
        raise TypeError("input must be an integer")
    return FakeTaskBlocking(input, wait=0)


TYPES = {**default_task_types(), "strict": strict_factory, "fails": Fails}


class JournaledApp:
    """An app over the runner it makes for itself, journaled to ``db``."""

    def __init__(self, db: Optional[str], **settings: Any) -> None:
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None, "TASKRUNNER_DB": db}
        config.update({f"TASKRUNNER_{k.upper()}": v for k, v in settings.items()})
        self.app = create_app(task_types=TYPES, config=config)
        self.state = self.app.extensions["taskrunner"]
        self.runner: TaskRunner = self.state.runner
        self.client = CheckedClient(self.app)

    def post(self, body: Optional[dict] = None, key: Optional[str] = None) -> Any:
        body = body or {"type": "fake_blocking", "input": 21, "wait": 0}
        headers = {"Idempotency-Key": key} if key is not None else {}
        return self.client.post("/api/tasks", json=body, headers=headers)

    def submit(self, body: Optional[dict] = None, key: Optional[str] = None) -> dict:
        response = self.post(body, key)
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def finish(self, *ids: int) -> None:
        _, not_done = self.runner.wait(ids, timeout=WAIT)
        assert not not_done

    def close(self) -> None:
        """Stops the runner and frees the file, as a process that exits would."""
        if self.runner.closed:
            return
        self.state.close()
        self.runner.shutdown(wait=False, cancel_pending=True)
        for id in self.runner.ids(state="running"):
            self.runner.cancel(id)  # polling tasks would otherwise be waited for
        self.runner.shutdown(wait=True)


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "tasks.db")


@pytest.fixture
def open_app():
    yield from closing_factory(JournaledApp)


@pytest.fixture
def journaled(open_app, db) -> JournaledApp:
    return open_app(db)


# ---- where the journal is ----------------------------------------------------


def test_the_apps_own_runner_journals_to_taskrunner_db(open_app, db):
    assert open_app(db).runner.journal == db


@pytest.mark.parametrize("none", [None, "", ":memory:"])
def test_unset_empty_or_memory_means_no_journal(open_app, none):
    app = open_app(none)
    assert app.runner.journal is None
    assert app.client.get("/api/stats").get_json()["journal"] is None


def test_taskrunner_db_comes_from_the_environment(monkeypatch, db):
    monkeypatch.setenv("TASKRUNNER_DB", db)
    app = create_app(config={"TESTING": True})
    try:
        assert app.extensions["taskrunner"].runner.journal == db
    finally:
        app.extensions["taskrunner"].runner.shutdown()


def test_a_given_runner_keeps_its_own_journal_choice(tmp_path, db):
    runner = TaskRunner()
    app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_DB": db})
    try:
        response = app.test_client().post("/api/tasks", json={"type": "fake", "input": 1})
        assert response.status_code == 202
        assert runner.journal is None and list(tmp_path.iterdir()) == []
    finally:
        runner.shutdown(wait=False, cancel_pending=True)


def test_settings_check_the_commit_timeout():
    with pytest.raises(ValueError, match="TASKRUNNER_COMMIT_TIMEOUT"):
        Settings.load({"TASKRUNNER_COMMIT_TIMEOUT": 0}, {})
    assert Settings.load({}, {"TASKRUNNER_COMMIT_TIMEOUT": "0.5"}).commit_timeout == 0.5
    assert Settings.load({}, {"TASKRUNNER_DB": ":memory:"}).runner_options()["journal"] is None


# ---- recipes -----------------------------------------------------------------


def test_task_types_recreate_a_task_from_its_recipe():
    types = TaskTypes(TYPES)
    made = types.get("fake_blocking").build(21, 0)
    task = types.recreate(recipe("fake_blocking", 21, 0, made))
    assert isinstance(task, FakeTaskBlocking) and task.run() == 42
    strict = recipe("strict", 2, None, strict_factory(2))
    assert types.recreate(strict).run() == 4


def test_a_factory_that_draws_at_random_makes_the_class_it_first_made():
    types = TaskTypes(TYPES)
    for kind in (FakeTaskBlocking, FakeTaskPolling):
        made = kind(3, wait=0)
        for _ in range(20):
            assert isinstance(types.recreate(recipe("fake", 3, 0, made)), kind)


BLOCKING = "taskrunner.faketasks.FakeTaskBlocking"


@pytest.mark.parametrize(
    ("recipe", "match"),
    [
        ({"type": "gone", "input": 1, "wait": None, "class": BLOCKING}, "no task type 'gone'"),
        ({"type": "strict", "input": "x", "wait": None, "class": BLOCKING}, "must be an integer"),
        ({"type": "strict", "input": 1, "wait": 1, "class": BLOCKING}, "takes no wait"),
        ({"type": "fake_polling", "input": 1, "wait": 1, "class": BLOCKING}, "no longer makes"),
        ({"type": "fake", "input": 1, "wait": 1}, "not a task recipe"),
        ([1, 2], "not a task recipe"),
    ],
)
def test_a_recipe_that_no_longer_makes_its_task_is_a_value_error(recipe, match):
    with pytest.raises(ValueError, match=match):
        TaskTypes(TYPES).recreate(recipe)


# ---- 202 once committed --------------------------------------------------------


def spy_on_flush(runner: TaskRunner, monkeypatch: Any, answer: Optional[bool] = None) -> list:
    """Records each ``flush(timeout)`` and what it gave; ``answer`` overrides it."""
    calls: list[tuple[Optional[float], bool]] = []
    real = runner.flush

    def flush(timeout: Optional[float] = None) -> bool:
        committed = real(timeout) if answer is None else answer
        calls.append((timeout, committed))
        return committed

    monkeypatch.setattr(runner, "flush", flush)
    return calls


def test_a_submission_is_answered_once_its_task_is_committed(open_app, db, monkeypatch):
    app = open_app(db, commit_timeout=3)
    calls = spy_on_flush(app.runner, monkeypatch)
    task = app.submit()
    assert calls == [(3.0, True)]
    app.finish(task["id"])


def test_without_a_journal_a_submission_waits_for_no_commit(open_app, monkeypatch):
    app = open_app(None)
    calls = spy_on_flush(app.runner, monkeypatch)
    app.submit()
    assert calls == []


def test_concurrent_submissions_all_get_202(journaled):
    ids: list[int] = []

    def submit() -> None:
        client = journaled.app.test_client()
        for i in range(10):
            body = {"type": "fake_blocking", "input": i, "wait": 0}
            response = client.post("/api/tasks", json=body)
            assert response.status_code == 202
            ids.append(response.get_json()["id"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 80


def test_a_commit_that_does_not_come_in_time_is_503_naming_the_task(open_app, db, monkeypatch):
    app = open_app(db, commit_timeout=0.5)
    calls = spy_on_flush(app.runner, monkeypatch, answer=False)
    response = app.post(key="late")
    body = assert_problem(response, 503, "/problems/not-recorded")
    assert response.headers["Retry-After"] == "5"
    assert calls == [(0.5, False)]
    assert f"task {body['id']} was accepted but not recorded" in body["detail"]
    assert "Location" not in response.headers
    # Once the journal commits again, the same key gets the task, recorded.
    monkeypatch.undo()
    again = app.post(key="late")
    assert again.status_code == 202 and again.get_json()["id"] == body["id"]
    assert again.headers["Location"] == f"http://localhost/api/tasks/{body['id']}"


# ---- Idempotency-Key -------------------------------------------------------------


@pytest.mark.parametrize("journal", [True, False])
def test_a_repeated_key_returns_the_first_task(open_app, db, journal):
    app = open_app(db if journal else None)
    first = app.post({"type": "fake_polling", "input": 1, "wait": 60}, key="order-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = app.post({"type": "fake_polling", "input": 1, "wait": 60}, key="order-1")
    assert again.status_code == 202
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    other = app.post({"type": "fake_polling", "input": 1, "wait": 60}, key="order-2")
    assert other.get_json()["id"] != first.get_json()["id"]
    assert len(app.runner.ids()) == 2


def test_a_repeat_with_another_body_still_returns_the_first_task(journaled):
    first = journaled.submit({"type": "fake_blocking", "input": 1, "wait": 0}, key="k")
    again = journaled.submit({"type": "fake_polling", "input": 2, "wait": 60}, key="k")
    assert again["id"] == first["id"] and again["kind"] == "blocking"


def test_a_repeat_with_a_bad_body_is_still_400(journaled):
    journaled.submit(key="k")
    response = journaled.client.post(
        "/api/tasks", json={"type": "fake"}, headers={"Idempotency-Key": "k"}
    )
    assert invalid_names(response) == {"input"}


def test_keys_sent_at_once_make_one_task(journaled):
    ids: list[int] = []

    def submit() -> None:
        client = journaled.app.test_client()
        body = {"type": "fake_polling", "input": 1, "wait": 60}
        response = client.post("/api/tasks", json=body, headers={"Idempotency-Key": "same"})
        assert response.status_code == 202
        ids.append(response.get_json()["id"])

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 16 and len(set(ids)) == 1
    assert journaled.runner.ids() == ids[:1]


def test_keys_are_remembered_across_a_restart(open_app, db):
    first = open_app(db)
    task = first.submit(key="across")
    first.finish(task["id"])
    first.close()
    second = open_app(db)
    response = second.post({"type": "fake_polling", "input": 5, "wait": 60}, key="across")
    assert response.status_code == 202
    assert response.headers["Location"] == f"http://localhost/api/tasks/{task['id']}"
    assert response.get_json()["result"] == 42
    assert response.headers["Idempotent-Replayed"] == "true"
    assert second.runner.stats()["unfinished"] == 0


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "clé", "tab\there", "del\x7f", "nul\x00"],
    ids=["empty", "too-long", "not-ascii", "tab", "del", "nul"],
)
def test_a_bad_key_is_400_naming_the_header(journaled, key):
    response = journaled.client.raw.post(
        "/api/tasks",
        json={"type": "fake", "input": 1},
        environ_overrides={"HTTP_IDEMPOTENCY_KEY": key},
    )
    assert invalid_names(response) == {"Idempotency-Key"}
    body = response.get_json()
    assert "printable ASCII" in body["invalid_params"][0]["reason"]
    assert journaled.runner.ids() == []


@pytest.mark.parametrize("key", ["a", "x" * 255, " spaced out ~!", '"quoted"'])
def test_printable_ascii_keys_of_up_to_255_characters_are_taken(journaled, key):
    assert journaled.post(key=key).status_code == 202


def test_the_document_describes_the_header(journaled):
    post = journaled.client.checker.document["paths"]["/api/tasks"]["post"]
    (parameter,) = post["parameters"]
    assert parameter["name"] == "Idempotency-Key" and parameter["in"] == "header"
    assert parameter["schema"]["maxLength"] == 255
    assert "Idempotent-Replayed" in post["responses"]["202"]["headers"]
    assert "Retry-After" in post["responses"]["503"]["headers"]


# ---- a journal that cannot write ---------------------------------------------------


def degrade(runner: TaskRunner, monkeypatch: Any, problem: str = "disk full") -> None:
    """Makes the runner report its journal degraded, as when its disk is full."""
    real = runner.stats

    def stats() -> dict[str, Any]:
        return {**real(), "journal": "degraded", "journal_problem": problem}

    monkeypatch.setattr(runner, "stats", stats)


def journal_gauge(app: JournaledApp) -> Optional[float]:
    text = app.client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        if family.name == "taskrunner_journal_degraded":
            return family.samples[0].value
    return None


def test_while_the_journal_cannot_write_submissions_get_503_and_nothing_is_submitted(
    journaled, monkeypatch
):
    degrade(journaled.runner, monkeypatch)
    response = journaled.post(key="k")
    body = assert_problem(response, 503, "/problems/journal-degraded")
    assert response.headers["Retry-After"] == "5"
    assert "disk full" in body["detail"] and "not submitted" in body["detail"]
    assert journaled.runner.ids() == [] and journaled.runner.stats()["unfinished"] == 0
    monkeypatch.undo()
    # The key was not used up: the retry makes the task.
    again = journaled.post(key="k")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers


def test_health_says_degraded_with_the_reason_and_stays_200(journaled, monkeypatch):
    healthy = journaled.client.get("/healthz")
    assert healthy.get_json() == {"status": "ok", "journal": "ok", "journal_problem": None}
    degrade(journaled.runner, monkeypatch, "journal tasks.db: disk I/O error")
    response = journaled.client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "degraded",
        "journal": "degraded",
        "journal_problem": "journal tasks.db: disk I/O error",
    }


def test_stats_and_metrics_show_the_journal(journaled, monkeypatch):
    stats = journaled.client.get("/api/stats").get_json()
    assert stats["journal"] == "ok" and stats["journal_problem"] is None
    assert journal_gauge(journaled) == 0
    degrade(journaled.runner, monkeypatch)
    stats = journaled.client.get("/api/stats").get_json()
    assert stats["journal"] == "degraded" and stats["journal_problem"] == "disk full"
    assert journal_gauge(journaled) == 1


def test_without_a_journal_there_is_no_journal_gauge(open_app):
    assert journal_gauge(open_app(None)) is None


# ---- history after a restart ---------------------------------------------------------


def page_through(app: JournaledApp, limit: int, state: Optional[str] = None) -> list[dict]:
    tasks: list[dict] = []
    cursor = None
    while True:
        query = f"/api/tasks?limit={limit}" + (f"&state={state}" if state else "")
        page = app.client.get(query + (f"&cursor={cursor}" if cursor else "")).get_json()
        tasks += page["tasks"]
        cursor = page["next_cursor"]
        if cursor is None:
            return tasks


def test_after_a_restart_the_list_pages_over_every_task_in_the_journal(open_app, db):
    first = open_app(db, retain_finished=3)
    ids = [first.submit({"type": "fake_blocking", "input": i, "wait": 0})["id"] for i in range(25)]
    failed = first.submit({"type": "fails", "input": "this"})["id"]
    first.finish(*ids, failed)
    first.close()

    second = open_app(db, retain_finished=3)
    newer = [second.submit({"type": "fake_polling", "input": i, "wait": 60})["id"] for i in (1, 2)]
    listed = page_through(second, limit=4)
    assert [t["id"] for t in listed] == [*reversed(newer), failed, *reversed(ids)]
    by_id = {t["id"]: t for t in listed}
    for n, id in enumerate(ids):
        assert by_id[id]["state"] == "succeeded" and by_id[id]["result"] == 2 * n
    assert by_id[failed]["error"]["message"] == "cannot do 'this'"
    assert [t["id"] for t in page_through(second, 7, "succeeded")] == list(reversed(ids))
    assert [t["id"] for t in page_through(second, 7, "failed")] == [failed]
    assert [t["id"] for t in page_through(second, 1, "running")] == list(reversed(newer))
    oldest = second.client.get(f"/api/tasks/{ids[0]}")
    assert oldest.status_code == 200 and oldest.get_json()["result"] == 0
    assert_problem(second.client.get("/api/tasks/999"), 404, "/problems/unknown-task")
