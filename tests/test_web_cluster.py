"""``serve --cluster`` driven over HTTP: a real server subprocess in front of a real
Dask scheduler and two workers on 127.0.0.1, every answer held to the OpenAPI document."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from conftest_web import OpenAPIChecker, assert_problem

# A hang fails its test rather than the run.
pytestmark = pytest.mark.timeout(120)

distributed = pytest.importorskip("distributed", reason="the cluster tests need the [dask] extra")

from dask_cluster import DaskProcesses, start_server  # noqa: E402

from taskrunner import ClusterUnreachable, TaskRunner  # noqa: E402
from taskrunner.cluster.link import live_workers  # noqa: E402
from taskrunner.web import create_app  # noqa: E402

PATIENCE = 30.0  # seconds to wait for tasks on the cluster


@pytest.fixture(scope="module")
def checker(server) -> OpenAPIChecker:
    return OpenAPIChecker(requests.get(f"{server.url}/api/openapi.json", timeout=10).json())


def checked(checker: OpenAPIChecker, response: requests.Response) -> requests.Response:
    mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
    checker.check(
        response.request.method,
        response.request.path_url,
        response.status_code,
        mimetype,
        response.headers,
        response.json,
    )
    return response


def submit(url: str, checker: OpenAPIChecker, **body: Any) -> dict[str, Any]:
    response = checked(checker, requests.post(f"{url}/api/tasks", json=body, timeout=10))
    assert response.status_code == 202, response.text
    return response.json()


def finished(url: str, checker: OpenAPIChecker, ids: list[int]) -> list[dict[str, Any]]:
    """The statuses of ``ids`` once all are done."""
    deadline = time.monotonic() + PATIENCE
    while True:
        statuses = [
            checked(checker, requests.get(f"{url}/api/tasks/{id}", timeout=10)).json() for id in ids
        ]
        if all(s["done"] for s in statuses):
            return statuses
        assert time.monotonic() < deadline, [s for s in statuses if not s["done"]]
        time.sleep(0.1)


def test_tasks_submitted_over_http_run_on_the_workers_and_their_results_come_back(
    server, checker, dask_processes
):
    workers = live_workers(dask_processes.client)
    ids = [
        submit(server.url, checker, type=type, input=i, wait=0.2)["id"]
        for i, type in enumerate(["fake_blocking", "fake_polling"] * 3)
    ]
    statuses = finished(server.url, checker, ids)
    assert [s["state"] for s in statuses] == ["succeeded"] * len(ids)
    assert [s["result"] for s in statuses] == [2 * i for i in range(len(ids))]
    assert {s["kind"] for s in statuses} == {"blocking", "polling"}
    # Each task says where it ran: on the cluster's workers, not in the server.
    assert {s["worker"] for s in statuses} <= workers
    assert len({s["worker"] for s in statuses}) == 2


def test_the_task_list_carries_each_tasks_worker(server, checker, dask_processes):
    id = submit(server.url, checker, type="fake", input=5, wait=0)["id"]
    finished(server.url, checker, [id])
    page = checked(checker, requests.get(f"{server.url}/api/tasks?limit=5", timeout=10)).json()
    (task,) = [t for t in page["tasks"] if t["id"] == id]
    assert task["worker"] in live_workers(dask_processes.client)


def test_the_workers_list_shows_both_workers(server, checker, dask_processes):
    # A task on each, so that both have reported.
    ids = [submit(server.url, checker, type="fake_blocking", input=i, wait=0)["id"] for i in (1, 2)]
    finished(server.url, checker, ids)
    response = checked(checker, requests.get(f"{server.url}/api/workers", timeout=10))
    assert response.status_code == 200
    view = response.json()
    assert view["cluster"] is True
    assert view["scheduler"] == dask_processes.address
    assert view["reachable"] is True
    rows = view["workers"]
    assert {w["address"] for w in rows} == live_workers(dask_processes.client)
    assert len(rows) == 2
    for worker in rows:
        assert worker["threads"] is None or worker["threads"] >= 0
        assert worker["heartbeat"] is None or worker["heartbeat"] >= 0


def test_health_names_the_cluster(server, checker, dask_processes):
    health = checked(checker, requests.get(f"{server.url}/healthz", timeout=10)).json()
    assert health["status"] == "ok"
    assert health["cluster"] == {"scheduler": dask_processes.address, "reachable": True}


def test_the_server_says_where_its_tasks_run(server, dask_processes):
    assert f"tasks run on the Dask cluster at {dask_processes.address}" in server.log()


def test_a_cluster_server_cannot_pause_and_says_so(server, checker):
    for operation in ("pause", "resume"):
        response = checked(checker, requests.post(f"{server.url}/api/{operation}", timeout=10))
        assert "cluster" in assert_problem(response, 501)["detail"]
    stats = checked(checker, requests.get(f"{server.url}/api/stats", timeout=10)).json()
    assert stats["paused"] is False


# ---- a lost scheduler ----------------------------------------------------------


@pytest.mark.slow
def test_while_the_scheduler_is_away_submits_are_503_and_health_is_degraded(tmp_path):
    cluster = DaskProcesses(workers=1)
    server = start_server(cluster.address, "--db", ":memory:")
    try:
        checker = OpenAPIChecker(requests.get(f"{server.url}/api/openapi.json", timeout=10).json())
        id = submit(server.url, checker, type="fake", input=1, wait=0)["id"]
        finished(server.url, checker, [id])
        cluster.scheduler.terminate()
        cluster.scheduler.wait(10)
        deadline = time.monotonic() + PATIENCE
        while True:
            response = checked(
                checker,
                requests.post(
                    f"{server.url}/api/tasks", json={"type": "fake", "input": 1}, timeout=10
                ),
            )
            if response.status_code != 202:
                break
            assert time.monotonic() < deadline, "submits were still accepted"
            time.sleep(0.2)
        body = assert_problem(response, 503, "/problems/cluster-unreachable")
        assert cluster.address in body["detail"]
        assert response.headers["Retry-After"]
        health = checked(checker, requests.get(f"{server.url}/healthz", timeout=10)).json()
        assert health["status"] == "degraded"
        assert health["cluster"]["reachable"] is False
        view = checked(checker, requests.get(f"{server.url}/api/workers", timeout=10)).json()
        assert view["reachable"] is False
    finally:
        server.stop()
        cluster.close()


# ---- a journal -----------------------------------------------------------------


@pytest.mark.slow
def test_with_a_journal_the_tasks_and_their_workers_outlive_the_server(tmp_path, dask_processes):
    db = str(tmp_path / "tasks.db")
    server = start_server(dask_processes.address, "--db", db)
    try:
        checker = OpenAPIChecker(requests.get(f"{server.url}/api/openapi.json", timeout=10).json())
        id = submit(server.url, checker, type="fake_polling", input=4, wait=0.2)["id"]
        (status,) = finished(server.url, checker, [id])
        assert status["result"] == 8 and status["worker"]
    finally:
        server.stop()
    again = start_server(dask_processes.address, "--db", db)
    try:
        task = requests.get(f"{again.url}/api/tasks/{id}", timeout=10).json()
        assert task["result"] == 8 and task["worker"] == status["worker"]
    finally:
        again.stop()


# ---- without a cluster ---------------------------------------------------------


def _unreachable(task: Any, **options: Any) -> Any:
    raise ClusterUnreachable("the cluster's scheduler at tcp://10.0.0.5:8786 is out of reach")


def test_a_submit_the_cluster_refuses_is_503_cluster_unreachable():
    runner = TaskRunner()
    runner.submit = _unreachable  # as a cluster runner's submit answers while it is cut off
    app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_TOKEN": None})
    try:
        response = app.test_client().post("/api/tasks", json={"type": "fake", "input": 1})
        body = assert_problem(response, 503, "/problems/cluster-unreachable")
        assert body["title"] == "The cluster's scheduler is out of reach"
        assert "tcp://10.0.0.5:8786" in body["detail"] and "not submitted" in body["detail"]
        assert response.headers["Retry-After"] == "5"
    finally:
        runner.shutdown()


def test_without_a_cluster_the_workers_list_is_empty():
    runner = TaskRunner()
    app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_TOKEN": None})
    try:
        client = app.test_client()
        assert client.get("/api/workers").get_json() == {
            "cluster": False,
            "scheduler": None,
            "reachable": None,
            "workers": [],
        }
        assert "cluster" not in client.get("/healthz").get_json()
    finally:
        runner.shutdown()


def test_the_workers_list_needs_the_token():
    runner = TaskRunner()
    app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_TOKEN": "t"})
    try:
        client = app.test_client()
        assert_problem(client.get("/api/workers"), 401)
        ok = client.get("/api/workers", headers={"Authorization": "Bearer t"})
        assert ok.status_code == 200
    finally:
        runner.shutdown()
