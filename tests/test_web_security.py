"""Secure by default: a token on any address beyond this machine, a read-only
token, the audit trail, and trusted proxies' headers."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest_web import CheckedClient, ServerProcess, assert_problem, run_serve

from taskrunner import TaskRunner
from taskrunner.web import create_app
from taskrunner.web.serve import is_loopback
from taskrunner.web.settings import Settings

from conftest import query_journal

FULL, READ = "full-s3cret", "read-s3cret"
# An address that is not loopback, on the loopback interface of a network
# namespace of the test's own: nothing outside the namespace can reach it.
PRIVATE_ADDRESS = "10.200.0.1"


def in_a_namespace_of_its_own(code: str) -> dict[str, Any]:
    """Runs ``code`` (which prints one JSON line last) in a new network namespace
    whose loopback interface also holds PRIVATE_ADDRESS; its JSON."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a network namespace")
    setup = f"ip link set lo up && ip addr add {PRIVATE_ADDRESS}/32 dev lo"
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", f'{setup} && exec "$0" -c "$1"', sys.executable, code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Starts `serve` on PRIVATE_ADDRESS with ARGS, then answers what the test asks.
SERVE_THERE = textwrap.dedent(
    """
    import json, os, re, subprocess, sys, urllib.error, urllib.request
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNER_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "taskrunner", "serve", "--host", "ADDRESS", "--port", "0",
         "--db", ":memory:", *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    said, expect_token = [], "--no-auth" not in ARGS
    for line in server.stdout:
        said.append(line)
        if "serving on" in line:
            url = re.search(r"serving on (http://[^/]+)", line).group(1)
        if "Authorization: Bearer" in line or ("serving on" in line and not expect_token):
            break
    token = next((m.group(1) for m in map(re.compile(r"#token=(\\S+)").search, said) if m), None)

    def ask(method, path, token=None, body=None):
        request = urllib.request.Request(url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": "Bearer " + token} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    answers = {
        "anonymous_stats": ask("GET", "/api/stats"),
        "anonymous_submit": ask("POST", "/api/tasks", body={"type": "fake", "input": 1, "wait": 0}),
        "token_stats": ask("GET", "/api/stats", token),
        "token_submit": ask("POST", "/api/tasks", token, {"type": "fake", "input": 1, "wait": 0}),
        "page": ask("GET", "/"),
        "healthz": ask("GET", "/healthz"),
    }
    server.terminate()
    _, errors = server.communicate(timeout=30)
    print(json.dumps({"said": "".join(said), "errors": errors, "token": token, **answers}))
    """
)


def serve_there(*args: str) -> dict[str, Any]:
    code = SERVE_THERE.replace("ADDRESS", PRIVATE_ADDRESS).replace("ARGS", repr(list(args)))
    return in_a_namespace_of_its_own(code)


def test_loopback_addresses_are_told_apart():
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.200.0.1", "example.org", ""]))


def test_a_public_address_without_a_token_gets_one_made_up_and_anonymous_requests_get_401():
    seen = serve_there()
    token = seen["token"]
    assert token and len(token) >= 40, seen["said"]
    # Printed once, in the URL's fragment.
    assert seen["said"].count(token) == 1
    assert f"http://{PRIVATE_ADDRESS}:" in seen["said"] and f"/#token={token}" in seen["said"]
    assert seen["anonymous_stats"] == 401 and seen["anonymous_submit"] == 401
    assert seen["token_stats"] == 200 and seen["token_submit"] == 202
    # The page (which then asks for the token) and the health check stay open.
    assert seen["page"] == 200 and seen["healthz"] == 200


def test_no_auth_on_a_public_address_warns_and_lets_anyone_in():
    seen = serve_there("--no-auth")
    assert seen["token"] is None
    assert "WARNING: --no-auth" in seen["errors"] and "anyone" in seen["errors"]
    assert seen["anonymous_stats"] == 200 and seen["anonymous_submit"] == 202


def test_loopback_stays_token_free_and_prints_no_token():
    server = ServerProcess()
    try:
        import requests

        assert requests.get(f"{server.url}/api/stats", timeout=10).status_code == 200
    finally:
        server.stop()
    assert "#token=" not in server.log() and "WARNING" not in server.log()


def test_no_auth_and_a_token_contradict():
    done = run_serve("--no-auth", TASKRUNNER_TOKEN="t")
    assert done.returncode == 2
    assert "--no-auth and TASKRUNNER_TOKEN contradict" in done.stderr


def test_a_read_token_needs_a_full_token_of_its_own():
    with pytest.raises(ValueError, match="READ_TOKEN needs TASKRUNNER_TOKEN"):
        Settings.load({"TASKRUNNER_READ_TOKEN": "r"}, {})
    with pytest.raises(ValueError, match="must differ"):
        Settings.load({"TASKRUNNER_TOKEN": "t", "TASKRUNNER_READ_TOKEN": "t"}, {})
    with pytest.raises(ValueError, match="TOKEN_LABEL"):
        Settings.load({"TASKRUNNER_TOKEN": "t", "TASKRUNNER_TOKEN_LABEL": ""}, {})


# ---- the read token ----------------------------------------------------------


@pytest.fixture
def app(tmp_path):
    runner = TaskRunner(journal=str(tmp_path / "audit.db"))
    config = {
        "TESTING": True,
        "TASKRUNNER_TOKEN": FULL,
        "TASKRUNNER_TOKEN_LABEL": "ops",
        "TASKRUNNER_READ_TOKEN": READ,
        "TASKRUNNER_READ_TOKEN_LABEL": "grafana",
    }
    app = create_app(runner=runner, config=config)
    yield app
    app.extensions["taskrunner"].close()
    runner.shutdown(cancel_pending=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (method, path) of the document, with 1 for each path parameter."""
    found = []
    for path, item in document["paths"].items():
        for method in item:
            if method != "parameters":
                concrete = path.replace("{task_id}", "1").replace("{label}", "gpu")
                found.append((method.upper(), concrete))
    return found


def test_the_read_token_gets_403_on_every_change_and_reads_everything_else(app):
    client = CheckedClient(app)
    task = client.post(
        "/api/tasks", json={"type": "fake", "input": 1, "wait": 0}, headers=bearer(FULL)
    ).get_json()
    changes = reads = 0
    for method, path in operations(client.checker.document):
        path = path.replace("/1", f"/{task['id']}")
        if method in ("GET", "HEAD"):
            if path == "/api/events":
                continue  # never ends; its guard is the same
            response = client.open(method, path, headers=bearer(READ))
            assert response.status_code < 400, (method, path, response.status_code)
            reads += 1
        else:
            response = client.open(method, path, headers=bearer(READ), json={})
            body = assert_problem(response, 403, "/problems/read-only-token")
            assert "grafana" in body["detail"]
            changes += 1
    # Every change the document lists, and each read.
    assert changes >= 3 and reads >= 8
    assert client.get("/api/access", headers=bearer(READ)).get_json() == {
        "label": "grafana",
        "can_change": False,
        "token_required": True,
    }
    assert client.get("/api/access", headers=bearer(FULL)).get_json()["can_change"] is True


def test_the_full_token_still_changes_things(app):
    client = CheckedClient(app)
    response = client.post(
        "/api/tasks", json={"type": "fake_polling", "input": 1, "wait": 60}, headers=bearer(FULL)
    )
    assert response.status_code == 202
    cancelled = client.delete(f"/api/tasks/{response.get_json()['id']}", headers=bearer(FULL))
    assert cancelled.status_code == 200


def test_metrics_and_health_are_open_unless_protected(tmp_path):
    config = {"TESTING": True, "TASKRUNNER_TOKEN": FULL, "TASKRUNNER_READ_TOKEN": READ}
    runner = TaskRunner()
    try:
        client = create_app(runner=runner, config=config).test_client()
        assert client.get("/metrics").status_code == 200
        assert client.get("/healthz").status_code == 200
        protected = create_app(runner=runner, config={**config, "TASKRUNNER_PROTECT_METRICS": "1"})
        client = CheckedClient(protected)
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 401
        assert client.get("/metrics", headers=bearer(READ)).status_code == 200
        assert client.get("/healthz", headers=bearer(READ)).status_code == 200
    finally:
        runner.shutdown()


# ---- the audit trail -----------------------------------------------------------


def test_a_submit_a_cancel_and_a_run_again_are_audited_with_the_tokens_label(app, caplog):
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="taskrunner.web.audit"):
        task = client.post(
            "/api/tasks",
            json={"type": "fake_polling", "input": 1, "wait": 60},
            headers=bearer(FULL),
        ).get_json()
        assert client.delete(f"/api/tasks/{task['id']}", headers=bearer(FULL)).status_code == 200
        # Refused and read-only requests change nothing: no entry.
        client.delete(f"/api/tasks/{task['id']}", headers=bearer(READ))
        client.get(f"/api/tasks/{task['id']}", headers=bearer(READ))
        # A run again names the task it made.
        again = client.post(f"/api/tasks/{task['id']}/again", headers=bearer(FULL)).get_json()
    runner = app.extensions["taskrunner"].runner
    assert runner.flush(10)
    audit = "SELECT route, task_id, token_label FROM audit ORDER BY rowid"
    rows = query_journal(runner.journal, audit)
    assert rows == [
        ("POST /api/tasks", task["id"], "ops"),
        (f"DELETE /api/tasks/{task['id']}", task["id"], "ops"),
        (f"POST /api/tasks/{task['id']}/again", again["id"], "ops"),
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "taskrunner.web.audit"]
    assert logged == [
        f"POST /api/tasks task={task['id']} token=ops",
        f"DELETE /api/tasks/{task['id']} task={task['id']} token=ops",
        f"POST /api/tasks/{task['id']}/again task={again['id']} token=ops",
    ]
    assert FULL not in caplog.text and READ not in caplog.text


def test_audit_entries_outlive_the_server(tmp_path):
    db = str(tmp_path / "kept.db")
    for _ in range(2):
        runner = TaskRunner(journal=db)
        client = create_app(runner=runner, config={"TESTING": True}).test_client()
        client.post("/api/tasks", json={"type": "fake", "input": 1, "wait": 0})
        runner.shutdown()
    with sqlite3.connect(db) as journal:
        rows = journal.execute("SELECT route, token_label FROM audit").fetchall()
    assert rows == [("POST /api/tasks", "anonymous")] * 2


# ---- trusted proxies -----------------------------------------------------------

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tasks.example.org"}


@pytest.mark.parametrize("proxy", [0, 1])
def test_forwarded_headers_count_only_from_trusted_proxies(proxy):
    runner = TaskRunner()
    try:
        app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_PROXY": proxy})
        client = app.test_client()
        response = client.post(
            "/api/tasks", json={"type": "fake", "input": 1, "wait": 0}, headers=FORWARDED
        )
        servers = client.get("/api/openapi.json", headers=FORWARDED).get_json()["servers"]
    finally:
        runner.shutdown()
    base = "https://tasks.example.org" if proxy else "http://localhost"
    assert response.headers["Location"] == f"{base}/api/tasks/{response.get_json()['id']}"
    assert servers == [{"url": base}]
