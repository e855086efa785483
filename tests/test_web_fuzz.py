"""Bad input over HTTP, against a real server on loopback.

- schemathesis generates requests from the server's own OpenAPI document
  (valid and invalid ones) and holds every response to it: no 500, and
  status, media type, headers and body as documented. Once without a token,
  once with one (then a missing or wrong token must be refused).
- Hand-written hostile requests: malformed JSON, wrong types, huge numbers,
  unknown types, oversized bodies, odd Unicode, missing or wrong tokens.
- A flood of submits past the limit of unfinished tasks.

Each schemathesis run takes ``TASKRUNNER_FUZZ_SECONDS`` (default 12) and the
flood ``TASKRUNNER_FLOOD_SECONDS`` (default 5); for a longer run::

    TASKRUNNER_FUZZ_SECONDS=300 TASKRUNNER_FLOOD_SECONDS=60 python -m pytest tests/test_web_fuzz.py

``TASKRUNNER_FUZZ_SEED`` sets schemathesis's seed (each run prints the one it used).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Optional
from urllib.parse import urlsplit

import pytest
import requests
from conftest_web import (
    PROBLEM,
    EventCollector,
    OpenAPIChecker,
    ServerProcess,
    assert_problem,
    invalid_names,
)

FUZZ_SECONDS = int(os.environ.get("TASKRUNNER_FUZZ_SECONDS", "8"))
FLOOD_SECONDS = float(os.environ.get("TASKRUNNER_FLOOD_SECONDS", "5"))
FUZZ_SEED = os.environ.get("TASKRUNNER_FUZZ_SEED")
TOKEN = "fuzz-token"
PATIENCE = 60.0  # generous: how long accepted tasks may take to finish

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]

# The default app, but the fake tasks wait at most 0.2 s whatever a client
# asks: a fuzzer asks for day-long waits, and a stopping server waits for
# running blocking tasks to return.
QUICK_SERVER = """
import logging, sys
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling, gen_task
from taskrunner.web import create_app
from taskrunner.web.serve import run_server

def quick(factory):
    def build(input, wait=None):
        return factory(input, wait=0.01 if wait is None else min(wait, 0.2))
    build.__doc__ = factory.__doc__
    return build

logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
types = {"fake": quick(gen_task), "fake_blocking": quick(FakeTaskBlocking),
         "fake_polling": quick(FakeTaskPolling)}
sys.exit(run_server(create_app(task_types=types), "127.0.0.1", 0, 8))
"""

# What the server's log must never show.
FAILURE_MARKS = (
    "Traceback",
    "unhandled error",
    "panicked",
    "Exception when servicing",
    "Exception while serving",
)


def quick_server(**settings: Any) -> ServerProcess:
    settings.setdefault("max_event_streams", 4)  # of its 8 threads
    env = {f"TASKRUNNER_{name.upper()}": str(value) for name, value in settings.items()}
    return ServerProcess(command=[sys.executable, "-c", QUICK_SERVER], **env)


def assert_clean_log(server: ServerProcess) -> None:
    log = server.log()
    marks = [mark for mark in FAILURE_MARKS if mark in log]
    assert not marks, f"the server log shows {marks}:\n{log[-5000:]}"


# ---- schemathesis, from the OpenAPI document -----------------------------------


def schemathesis_run(
    tmp_path: Any, server: ServerProcess, checks: list[str], headers: Optional[dict] = None
) -> str:
    """Runs schemathesis against ``server`` for FUZZ_SECONDS; returns its report."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/api/openapi.json",
        f"--checks={','.join(checks)}",
        # An event stream never ends: it has its own tests.
        "--exclude-path=/api/events",
        f"--max-time={FUZZ_SECONDS}",
        # One worker: hypothesis parses lambdas with ast.parse, which on
        # CPython 3.11 can fail spuriously in concurrent threads (gh-106905).
        "--workers=1",
        "--request-timeout=10",
        "--generation-database=none",
        "--no-color",
    ]
    if FUZZ_SEED:
        command.append(f"--seed={FUZZ_SEED}")
    for name, value in (headers or {}).items():
        command.append(f"--header={name}: {value}")
    environ = {**os.environ, "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 180,
    )
    report = done.stdout + done.stderr
    print(report[-3000:])
    assert done.returncode == 0, f"schemathesis found problems:\n{report[-20000:]}"
    assert re.search(r"\d+ generated, \d+ passed", report), report[-3000:]
    return report


def need_schemathesis() -> None:
    pytest.importorskip("schemathesis", reason="the fuzzer needs the schemathesis package")


@pytest.mark.slow
@pytest.mark.timeout(FUZZ_SECONDS + 240)
def test_fuzzing_from_the_openapi_document_finds_nothing(tmp_path):
    need_schemathesis()
    server = quick_server(max_unfinished=200)
    try:
        schemathesis_run(tmp_path, server, CHECKS)
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    assert_clean_log(server)


@pytest.mark.slow
@pytest.mark.timeout(FUZZ_SECONDS + 240)
def test_fuzzing_with_a_token_finds_nothing_and_the_token_is_enforced(tmp_path):
    need_schemathesis()
    server = quick_server(max_unfinished=200, token=TOKEN)
    try:
        document = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        # ignored_auth sends each request again without the token and with a
        # wrong one, and fails if either is not refused.
        headers = {"Authorization": f"Bearer {TOKEN}"}
        schemathesis_run(tmp_path, server, [*CHECKS, "ignored_auth"], headers)
    finally:
        server.stop()
    assert_clean_log(server)


# ---- hand-written hostile requests -------------------------------------------


class Client:
    """requests against one server, every response held to its OpenAPI document."""

    def __init__(self, server: ServerProcess, token: Optional[str] = None) -> None:
        self.url = server.url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        document = self.session.get(f"{self.url}/api/openapi.json", timeout=10).json()
        self.checker = OpenAPIChecker(document)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=30, **kwargs)
        self.check(response)
        return response

    def check(self, response: requests.Response) -> None:
        mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
        body = None if mimetype == "text/event-stream" else response.json
        request = response.request
        self.checker.check(
            request.method, request.path_url, response.status_code, mimetype, response.headers, body
        )

    def post_raw(self, data: bytes, content_type: str = "application/json") -> requests.Response:
        return self.request("POST", "/api/tasks", data=data, headers={"Content-Type": content_type})

    def submit(self, body: Any) -> requests.Response:
        return self.post_raw(json.dumps(body).encode())


@pytest.fixture(scope="module")
def server():
    process = quick_server(max_unfinished=1000)
    yield process
    process.stop()
    assert_clean_log(process)


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server)


def wait_done(client: Client, id: int) -> dict:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        task = client.request("GET", f"/api/tasks/{id}").json()
        if task["done"]:
            return task
        time.sleep(0.02)
    raise AssertionError(f"task {id} did not finish")


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b'{"type": "fake", "input": 1,}',
        b"{'type': 'fake', 'input': 1}",
        b'{"type": "fake", "input": NaN}',
        b'{"type": "fake", "input": Infinity}',
        b'{"type": "fake", "input": -Infinity}',
        b'{"type": "fake", "input": 1} trailing',
        b"",
        b"   \n\t ",
        b"[]",
        b'"a string"',
        b"null",
        b"42",
        b'{"type": "fake", "input": "\xff\xfe"}',  # not UTF-8
        b'{"type": "fake", "input": "\xed\xa0\x80"}',  # a surrogate, UTF-8 encoded
        '{"type": "fake", "input": 1}'.encode("utf-16"),
        b'\xef\xbb\xbf{"type": "fake", "input": 1}',  # a byte order mark
        b"\x00\x00\x00\x00",
        b"[" * 20_000 + b"]" * 20_000,  # deeper than the parser recurses
        b'{"input": ' * 3000 + b"1" + b"}" * 3000,
    ],
)
def test_malformed_json_is_400_invalid_body(client, data):
    assert_problem(client.post_raw(data), 400, "/problems/invalid-body")


FIELD_VALUES = {
    "type": [1, None, True, [], {}, ""],
    "wait": ["1", True, [], {}, -1, -1e-9, 86_400.5, 2**64, -(2**63) - 1],
    "timeout": ["1", True, [], {}, 0, -1, 2**64, -(2**63) - 1, 1e308, 31_536_001],
    "name": [1, True, [], {}, "", "x" * 201],
}


@pytest.mark.parametrize(
    ("field", "value"),
    [(field, value) for field, values in FIELD_VALUES.items() for value in values],
)
def test_a_wrong_value_for_each_field_is_named(client, field, value):
    body = {"type": "fake", "input": 1, field: value}
    assert field in invalid_names(client.submit(body))


def test_missing_and_unknown_fields_are_named(client):
    names = invalid_names(client.submit({"wait": 1, "Type": "fake", "": 1, "\ud800": 2}))
    assert names == {"type", "input", "Type", "", "\ud800"}


@pytest.mark.parametrize("field", ["input", "wait", "timeout"])
@pytest.mark.parametrize("number", ["1e309", "-1e309", "1" + "0" * 5000])
def test_numbers_beyond_any_range_are_400(client, field, number):
    data = f'{{"type": "fake", "input": 1, "{field}": {number}}}'.encode()
    body = assert_problem(client.post_raw(data), 400, "/problems/invalid-body")
    assert "too large" in body["detail"] or "digits" in body["detail"]


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**300, 1e308, -1e308, 5e-324])
def test_huge_numbers_as_input_are_accepted_and_doubled(client, number):
    response = client.submit({"type": "fake_blocking", "input": number, "wait": 0})
    assert response.status_code == 202, response.text
    task = wait_done(client, response.json()["id"])
    assert task["state"] == "succeeded", task
    if abs(number) >= 1e308:  # doubled, it overflows to infinity, which JSON cannot hold
        assert task["result_is_repr"] and task["result"] in ("inf", "-inf")
    else:
        assert task["result"] == 2 * number and not task["result_is_repr"]


@pytest.mark.parametrize("type", ["nope", "FAKE", "fake ", " fake", "fake\x00", "\ud800", "😀"])
def test_an_unknown_task_type_is_404(client, type):
    response = client.submit({"type": type, "input": 1})
    assert_problem(response, 404, "/problems/unknown-task-type")


@pytest.mark.parametrize(
    "name",
    [
        "\ud800",  # a lone high surrogate
        "\udfff",  # a lone low surrogate
        "x\udc80y",
        "a\x00b",
        "\u202eevil\u202c \u200f",  # right-to-left override and mark
        "😀 \U0001f3f3\ufe0f\u200d\U0001f308",  # emoji, a ZWJ sequence
        "\ufeff\ufffe\uffff",
        "e\u0301" * 100,  # 200 characters, combining accents
    ],
)
def test_odd_unicode_names_round_trip(client, name):
    response = client.submit({"type": "fake_polling", "input": name, "wait": 0, "name": name})
    assert response.status_code == 202, response.text
    assert response.json()["name"] == name
    task = wait_done(client, response.json()["id"])
    assert task["name"] == name and task["result"] == 2 * name


def test_lone_surrogates_are_sent_as_escapes_never_raw(client):
    response = client.submit(
        {"type": "fake_polling", "input": "\ud800", "wait": 0, "name": "\udfff"}
    )
    assert response.status_code == 202
    assert b"\\udfff" in response.content
    response.content.decode("utf-8")  # strict: would fail on a raw surrogate
    response = client.submit({"type": "\udbff", "input": 1})
    assert b"\\udbff" in response.content


def test_oversized_bodies_are_413(client):
    big = json.dumps({"type": "fake", "input": "x" * 70_000}).encode()
    assert_problem(client.post_raw(big), 413)
    # Without a Content-Length, as a chunked body, too.
    chunks = (big[i : i + 8192] for i in range(0, len(big), 8192))
    response = client.request(
        "POST", "/api/tasks", data=chunks, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413)


def test_a_body_just_under_the_limit_is_accepted(client):
    body = json.dumps({"type": "fake", "input": "x" * 60_000, "wait": 0}).encode()
    response = client.post_raw(body)
    assert response.status_code == 202, response.text
    assert wait_done(client, response.json()["id"])["state"] == "succeeded"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_body_that_is_not_json_is_415(client, content_type):
    assert_problem(client.post_raw(b'{"type": "fake", "input": 1}', content_type), 415)


@pytest.mark.parametrize(
    "id",
    ["0", "-1", "1.0", "1e3", "+1", " 1", "0x1", "١", "%F0%9F%98%80", "%00", str(2**64), "9" * 30],
)
def test_an_id_that_names_no_task_is_404(client, id):
    assert_problem(client.request("GET", f"/api/tasks/{id}"), 404, "/problems/unknown-task")
    assert_problem(client.request("DELETE", f"/api/tasks/{id}"), 404, "/problems/unknown-task")


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-1", "limit=١", "limit=1e3", "limit=" + "9" * 30, "cursor=0", "cursor=x",
     "cursor=" + "9" * 30, "state=%F0%9F%98%80", "state=RUNNING", "state=%00"],
)  # fmt: skip
def test_bad_list_queries_are_400(client, query):
    assert_problem(client.request("GET", f"/api/tasks?{query}"), 400, "/problems/invalid-params")


def test_a_cursor_past_every_id_lists_from_the_newest(client):
    newest = client.submit({"type": "fake", "input": 1, "wait": 0}).json()["id"]
    for cursor in (2**64 + 1, 10**19):
        page = client.request("GET", f"/api/tasks?limit=1&cursor={cursor}").json()
        assert [task["id"] for task in page["tasks"]] == [newest]


def test_undocumented_methods_are_405_problems(client):
    for method, path in (("PUT", "/api/tasks"), ("PATCH", "/api/tasks/1"), ("POST", "/healthz")):
        response = client.session.request(method, client.url + path, timeout=10)
        assert_problem(response, 405)
        assert response.headers["Allow"]


def test_malformed_http_gets_an_answer_and_the_server_carries_on(server):
    parts = urlsplit(server.url)
    for request in (
        b"GET /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/tasks/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
    ):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
            connection.sendall(request)
            answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.") and b" 500 " not in answer.split(b"\r\n")[0], answer
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200


# ---- tokens ------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server():
    process = quick_server(token=TOKEN)
    yield process
    process.stop()
    assert_clean_log(process)


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
     f"Basic {TOKEN}", TOKEN, f"Bearer\t{TOKEN}x", "Bearer \u00fc\u00ff"],
)  # fmt: skip
def test_every_guarded_operation_refuses_a_missing_or_wrong_token(token_server, authorization):
    client = Client(token_server)
    headers = {} if authorization is None else {"Authorization": authorization.encode("latin-1")}
    for method, path, operation in _operations(client.checker.document):
        concrete = path.replace("{task_id}", "1")
        response = client.request(method.upper(), concrete, headers=headers, json={}, stream=True)
        if operation.get("security") == []:
            assert response.status_code < 400, (method, path, response.status_code)
        else:
            assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response.close()


def test_the_right_token_passes_whatever_the_scheme_case(token_server):
    for scheme in ("Bearer", "bearer", "BEARER"):
        client = Client(token_server, token=None)
        client.session.headers["Authorization"] = f"{scheme} {TOKEN}"
        response = client.submit({"type": "fake", "input": 1, "wait": 0})
        assert response.status_code == 202, response.text


# ---- a flood of submits ------------------------------------------------------


class Flood:
    """Client threads submitting as fast as they can until a deadline."""

    def __init__(self, url: str, threads: int, seconds: float) -> None:
        self.url = url
        self.threads = threads
        self.seconds = seconds
        self.statuses: Counter[int] = Counter()
        self.accepted: list[int] = []
        self.bad: list[str] = []
        self.lock = threading.Lock()

    def _submit_until(self, deadline: float, number: int) -> None:
        session = requests.Session()
        i = 0
        while time.monotonic() < deadline:
            i += 1
            body = {"type": "fake", "input": number * 1_000_000 + i, "wait": 0.2}
            try:
                response = session.post(f"{self.url}/api/tasks", json=body, timeout=30)
            except requests.RequestException as error:
                with self.lock:
                    self.bad.append(f"{type(error).__name__}: {error}")
                continue
            self._record(response)

    def _record(self, response: requests.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.append(response.json()["id"])
            elif response.status_code in (429, 503):
                problem = response.headers.get("Content-Type", "").startswith(PROBLEM)
                if not problem or "Retry-After" not in response.headers:
                    self.bad.append(f"a refusal that is not as documented: {response.headers}")
            else:
                self.bad.append(f"{response.status_code}: {response.text[:300]}")

    def run(self) -> float:
        deadline = time.monotonic() + self.seconds
        started = time.monotonic()
        workers = [
            threading.Thread(target=self._submit_until, args=(deadline, n))
            for n in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(self.seconds + 60)
        assert not any(worker.is_alive() for worker in workers), "a flood thread hung"
        return time.monotonic() - started


def _final_states(url: str) -> dict[int, str]:
    """Every task the server knows, paged through the list: id -> state."""
    states: dict[int, str] = {}
    cursor = None
    while True:
        query = "limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = requests.get(f"{url}/api/tasks?{query}", timeout=30).json()
        states.update({task["id"]: task["state"] for task in page["tasks"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return states


@pytest.mark.slow
@pytest.mark.timeout(FLOOD_SECONDS + 240)
def test_a_flood_of_submits_is_refused_with_503_never_a_crash():
    limit = 50
    server = quick_server(max_unfinished=limit, retain_finished=0)
    try:
        watcher = EventCollector(server.url)
        watcher.wait_for("ready")
        flood = Flood(server.url, threads=20, seconds=FLOOD_SECONDS)
        elapsed = flood.run()
        total = sum(flood.statuses.values())
        refused = total - len(flood.accepted)
        print(
            f"flood: {total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s), "
            f"{len(flood.accepted)} accepted, {refused} refused: {dict(flood.statuses)}"
        )
        assert not flood.bad, flood.bad[:10]
        assert set(flood.statuses) <= {202, 429, 503}, flood.statuses
        assert flood.accepted and refused, "the flood never reached the limit"
        assert len(set(flood.accepted)) == len(flood.accepted), "an id was given twice"

        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
        deadline = time.monotonic() + PATIENCE
        while requests.get(f"{server.url}/api/stats", timeout=10).json()["unfinished"]:
            assert time.monotonic() < deadline, "accepted tasks did not finish"
            time.sleep(0.1)
        states = _final_states(server.url)
        assert {states.get(id) for id in flood.accepted} == {"succeeded"}
        # An event stream open all along saw the end of it.
        deadline = time.monotonic() + PATIENCE
        while watcher.last_counts().get("succeeded", 0) < len(flood.accepted):
            assert not watcher.ended.is_set(), "the event stream ended"
            assert time.monotonic() < deadline, f"the events stopped at {watcher.last_counts()}"
            time.sleep(0.1)
        watcher.close()
        # Under the limit again, a submission is accepted at once.
        body = {"type": "fake", "input": 1, "wait": 0}
        assert requests.post(f"{server.url}/api/tasks", json=body, timeout=10).status_code == 202
    finally:
        server.stop()
    assert_clean_log(server)
