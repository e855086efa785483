"""A real server (waitress, in a subprocess) driven over loopback by an HTTP client."""

from __future__ import annotations

import importlib.util
import inspect
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest_web import EventCollector, OpenAPIChecker, ServerProcess, assert_problem

from taskrunner import FINAL_STATES
from taskrunner.web import serve

TASKS = 100
DEADLINE = 60.0  # generous: every task waits at most 0.5 s


@pytest.fixture(scope="module")
def server():
    process = ServerProcess(threads=8)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def checker(server) -> OpenAPIChecker:
    return OpenAPIChecker(requests.get(f"{server.url}/api/openapi.json", timeout=10).json())


def checked(checker: OpenAPIChecker, response: requests.Response) -> requests.Response:
    """Holds a response that went over the wire to the OpenAPI document."""
    mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
    body = None if mimetype == "text/event-stream" else response.json
    path = response.request.path_url
    checker.check(
        response.request.method, path, response.status_code, mimetype, response.headers, body
    )
    return response


def test_it_is_served_by_waitress_not_the_development_server(server):
    response = requests.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.headers["Server"] == "taskrunner"
    assert "Werkzeug" not in response.headers["Server"]


def test_it_listens_on_loopback_by_default(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert inspect.signature(serve.main).parameters["host"].default == "127.0.0.1"


@pytest.mark.slow
def test_submit_100_tasks_and_watch_all_finish(server, checker):
    events = EventCollector(server.url)
    assert events.status == 200
    events.wait_for("ready")

    def submit(i: int) -> int:
        body = {"type": "fake", "input": i, "wait": 0.05 + (i % 10) * 0.05, "name": f"job-{i}"}
        response = checked(checker, requests.post(f"{server.url}/api/tasks", json=body, timeout=30))
        assert response.status_code == 202, response.text
        assert response.headers["Location"] == f"{server.url}/api/tasks/{response.json()['id']}"
        return response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(submit, range(TASKS)))
    assert len(set(ids)) == TASKS

    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        finished = [i for i in ids if events.latest.get(i, {}).get("state") in FINAL_STATES]
        if len(finished) == TASKS:
            break
        time.sleep(0.05)
    states = {events.latest[i]["state"] for i in ids if i in events.latest}
    assert len(finished) == TASKS, f"{len(finished)} of {TASKS} seen finished; states {states}"
    assert states == {"succeeded"}

    by_id = {}
    cursor = None
    while True:
        query = {"limit": 40, **({"cursor": cursor} if cursor else {})}
        page = checked(
            checker, requests.get(f"{server.url}/api/tasks", params=query, timeout=30)
        ).json()
        by_id.update({task["id"]: task for task in page["tasks"]})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    for n, id in enumerate(ids):
        assert by_id[id]["state"] == "succeeded"
        assert by_id[id]["result"] == 2 * n
        assert by_id[id]["name"] == f"job-{n}"

    stats = checked(checker, requests.get(f"{server.url}/api/stats", timeout=30)).json()
    assert stats["counts"]["succeeded"] >= TASKS
    assert stats["unfinished"] == 0
    events.close()


def test_errors_over_the_wire_are_problem_json(server, checker):
    response = checked(checker, requests.post(f"{server.url}/api/tasks", data="{oops", timeout=10))
    assert_problem(response, 400, "/problems/invalid-body")
    gone = checked(checker, requests.get(f"{server.url}/api/tasks/99999", timeout=10))
    assert_problem(gone, 404, "/problems/unknown-task")


def test_cancel_over_the_wire(server, checker):
    body = {"type": "fake_polling", "input": 1, "wait": 60}
    task = requests.post(f"{server.url}/api/tasks", json=body, timeout=10).json()
    response = checked(checker, requests.delete(f"{server.url}/api/tasks/{task['id']}", timeout=10))
    assert response.status_code == 200 and response.json()["state"] == "cancelled"


def test_metrics_over_the_wire(server, checker):
    response = checked(checker, requests.get(f"{server.url}/metrics", timeout=10))
    assert response.status_code == 200
    assert "taskrunner_tasks{" in response.text


@pytest.mark.slow
def test_a_client_that_hangs_up_frees_its_event_stream_at_once():
    process = ServerProcess(threads=4)  # room for 2 event streams
    try:
        first, second = EventCollector(process.url), EventCollector(process.url)
        assert first.status == second.status == 200
        third = requests.get(f"{process.url}/api/events", stream=True, timeout=10)
        assert_problem(third, 503, "/problems/too-many-event-streams")
        first.close()
        # Well before the 15 s heartbeat would find the dead connection.
        deadline = time.monotonic() + 5
        while requests.get(f"{process.url}/api/stats", timeout=10).json()["event_streams"] > 1:
            assert time.monotonic() < deadline, "the slot stayed taken"
            time.sleep(0.05)
        fourth = EventCollector(process.url)
        assert fourth.status == 200
        for collector in (second, fourth):
            collector.close()
    finally:
        process.stop()


def _stop_with(signum: int, command=None) -> tuple[int, float, ServerProcess, EventCollector]:
    process = ServerProcess(command=command, threads=4)
    events = EventCollector(process.url)
    events.wait_for("ready")
    # Work in flight: one task waiting in the poller, one sleeping on a worker.
    for type in ("fake_polling", "fake_blocking"):
        body = {"type": type, "input": 1, "wait": 60 if type == "fake_polling" else 0.5}
        assert requests.post(f"{process.url}/api/tasks", json=body, timeout=10).status_code == 202
    started = time.monotonic()
    process.signal(signum)
    try:
        code = process.wait(timeout=30)
    finally:
        process.stop()
    return code, time.monotonic() - started, process, events


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_gracefully(signum):
    code, took, process, events = _stop_with(signum)
    assert code == 0, process.log()
    assert took < 20, process.log()
    assert "stopped" in process.log()
    assert "Traceback" not in process.log()
    assert events.ended.wait(10), "the event stream stayed open"


OWN_APP = """
import sys
from taskrunner.web import create_app
from taskrunner.web.serve import run_server

class Square:
    \"\"\"Squares its input.\"\"\"
    def __init__(self, input): self.input = input
    def run(self): return self.input ** 2
    def get_output(self): return None

app = create_app(task_types={"square": Square}, config={"TASKRUNNER_MAX_UNFINISHED": 50})
sys.exit(run_server(app, "127.0.0.1", 0, 4))
"""


@pytest.mark.slow
def test_run_server_serves_an_app_of_your_own():
    process = ServerProcess(command=[sys.executable, "-c", OWN_APP])
    try:
        types = requests.get(f"{process.url}/api/task-types", timeout=10).json()["task_types"]
        assert types == [
            {
                "name": "square",
                "description": "Squares its input.",
                "input_schema": None,
                "takes_wait": False,
            }
        ]
        body = {"type": "square", "input": 12}
        task = requests.post(f"{process.url}/api/tasks", json=body, timeout=10).json()
        deadline = time.monotonic() + DEADLINE
        while (
            requests.get(f"{process.url}/api/tasks/{task['id']}", timeout=10).json()["state"]
            != "succeeded"
        ):
            assert time.monotonic() < deadline, "the task never finished"
            time.sleep(0.05)
        assert requests.get(f"{process.url}/api/stats", timeout=10).json()["max_unfinished"] == 50
        process.signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.log()
    finally:
        process.stop()


def test_too_few_threads_is_refused_before_serving():
    assert serve.main("127.0.0.1", 0, 1) == 2


@pytest.mark.skipif(
    importlib.util.find_spec("taskrunner.cli") is None, reason="no command line yet"
)
@pytest.mark.slow
def test_python_m_taskrunner_serve():
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    code, _, process, _ = _stop_with(signal.SIGTERM, command)
    assert code == 0, process.log()
