"""Helpers shared by the web tests: a real server in a subprocess, and an SSE reader."""

from __future__ import annotations

import codecs
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Optional
from urllib.parse import urlsplit

PROBLEM = "application/problem+json"
SERVE_SNIPPET = (
    "import sys; from taskrunner.web.serve import main; sys.exit(main('127.0.0.1', 0, {threads}))"
)
LISTENING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)/")


class ServerProcess:
    """``taskrunner.web.serve.main`` in a subprocess, on a free loopback port.

    ``db`` is its ``TASKRUNNER_DB`` (``--db`` in ``command`` wins): by
    default none, since ``serve`` would otherwise journal to the current
    directory; None leaves the variable unset.
    """

    def __init__(
        self,
        command: Optional[list[str]] = None,
        threads: int = 8,
        *,
        db: Optional[str] = ":memory:",
        cwd: Optional[str] = None,
        **env: str,
    ) -> None:
        self.command = command or [sys.executable, "-c", SERVE_SNIPPET.format(threads=threads)]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNER_")}
        if db is not None:
            environ["TASKRUNNER_DB"] = db
        environ.update(env)
        environ["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environ,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read_output, daemon=True).start()
        self.url = self._wait_for_url(timeout=30)

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            match = LISTENING.search(line)
            if match:
                return match.group(1)
        self.process.kill()
        raise RuntimeError("the server did not start:\n" + "".join(self.output))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return "".join(self.output)


def parse_sse(chunks: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(event name, decoded data) for each event in a text stream; comments skipped."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.replace("\r\n", "\n")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            name, data = "message", []
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
            if data:
                yield name, json.loads("\n".join(data))


class EventCollector:
    """Reads ``/api/events`` in a thread; keeps the latest status of each task.

    It talks plain ``http.client`` so that ``close()`` can shut the socket
    down under the reading thread.
    """

    def __init__(self, base_url: str, headers: Optional[dict[str, str]] = None) -> None:
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.connection.request("GET", "/api/events", headers=headers or {})
        # Kept here: the connection lets go of its socket once the response has it.
        self.socket = self.connection.sock
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.latest: dict[int, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _chunks(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        while True:
            data = self.response.read1(65536)
            if not data:
                return
            yield decoder.decode(data)

    def _read(self) -> None:
        try:
            for name, data in parse_sse(self._chunks()):
                if name == "task":
                    self.latest[data["id"]] = data
                elif name == "counts":
                    self.counts = data
                elif name in ("ready", "resync"):
                    self.counts = data["counts"]
                self.events.put((name, data))
        except (OSError, http.client.HTTPException, ValueError):
            pass  # the connection closed
        finally:
            self.ended.set()

    def wait_for(self, name: str, timeout: float = 10.0) -> Any:
        """The data of the next event called ``name``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event, data = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if event == name:
                return data
        raise AssertionError(f"no {name!r} event within {timeout} s")

    def last_counts(self) -> dict[str, int]:
        """The counts per state the stream sent last."""
        return self.counts

    def close(self) -> None:
        """Hangs up, waking the reading thread."""
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
        self.ended.wait(10)
        self.response.close()
        self.connection.close()


class OpenAPIChecker:
    """Holds responses to an OpenAPI 3.1 document, and records which ones it saw."""

    def __init__(self, document: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator
        from openapi_spec_validator import validate
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        validate(document)  # raises when the document is not valid OpenAPI 3.1
        self.document = document
        self._validator_class = Draft202012Validator
        self._base = "urn:taskrunner:openapi"
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(self._base, resource)
        self.observed: set[tuple[str, str, str]] = set()
        self._templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]

    def template(self, path: str) -> str:
        if path in self.document["paths"]:
            return path  # /api/tasks/cancel, not /api/tasks/{task_id}
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        raise AssertionError(f"{path} is not in the OpenAPI document")

    def validator(self, pointer: str) -> Any:
        """A validator for the schema at a JSON pointer inside the document."""
        schema = {"$ref": f"{self._base}#{pointer}"}
        return self._validator_class(schema, registry=self._registry)

    def documented(self) -> set[tuple[str, str, str]]:
        """Every (path, method, status) the document promises."""
        promised = set()
        for path, item in self.document["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                for status in operation["responses"]:
                    promised.add((path, method, status))
        return promised

    def check(
        self, method: str, path: str, status: int, mimetype: str, headers: Any, body: Any
    ) -> None:
        """Asserts the response is one the document describes; ``body`` is a thunk or None."""
        template = self.template(path.split("?")[0])
        item = self.document["paths"][template]
        method = method.lower()
        assert method in item, f"{method.upper()} {template} is not documented"
        responses = item[method]["responses"]
        key = str(status)
        assert key in responses, f"{method.upper()} {template} -> {status} is not documented"
        response = responses[key]
        assert mimetype in response["content"], (
            f"{method.upper()} {template} -> {status}: {mimetype} is not documented"
        )
        for header, spec in response.get("headers", {}).items():
            if spec.get("required"):
                assert header in headers, f"{method.upper()} {template} -> {status}: no {header}"
        if body is not None and "json" in mimetype:
            escaped = template.replace("~", "~0").replace("/", "~1")
            media = mimetype.replace("/", "~1")
            pointer = f"/paths/{escaped}/{method}/responses/{key}/content/{media}/schema"
            errors = sorted(self.validator(pointer).iter_errors(body()), key=str)
            assert not errors, f"{method.upper()} {path} -> {status}: {errors[0].message}"
        self.observed.add((template, method, key))


class CheckedClient:
    """Flask's test client, holding every response to the app's OpenAPI document."""

    def __init__(self, app: Any) -> None:
        self.raw = app.test_client()
        self.checker = OpenAPIChecker(self.raw.get("/api/openapi.json").get_json())

    def open(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.raw.open(path, method=method, **kwargs)
        streaming = response.mimetype == "text/event-stream"
        body = None if streaming else (lambda: response.get_json(force=True))
        self.checker.check(
            method, path, response.status_code, response.mimetype, response.headers, body
        )
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.open("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.open("DELETE", path, **kwargs)


def assert_problem(response: Any, status: int, type: Optional[str] = None) -> dict[str, Any]:
    """The response is RFC 9457 problem details with this status (and type); its body.

    ``response`` is a Flask test response or a ``requests`` response.
    """
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].split(";")[0].strip() == PROBLEM
    body = json.loads(response.text)
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if type is not None:
        assert body["type"] == type, body
    return body


def invalid_names(response: Any) -> set[str]:
    """The names of the parameters a 400 invalid-params problem lists."""
    body = assert_problem(response, 400, "/problems/invalid-params")
    return {param["name"] for param in body["invalid_params"]}


def run_serve(*args: str, cwd: Optional[str] = None, **env: str) -> subprocess.CompletedProcess:
    """Runs ``taskrunner serve`` (in memory, on a free port) with ``args`` to
    its end: for start-up errors. Only ``env``'s TASKRUNNER_ settings apply."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNER_")}
    return subprocess.run(
        [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--db", ":memory:", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**environ, **env},
    )
