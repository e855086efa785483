"""The app through Flask's test client, for the API tests: an app over its own
runner with a checked client, the small task types its tests submit, and a
reader of its event stream.

Also a pytest plugin (``pytest_plugins`` in conftest.py): the ``make_server``
fixture, for the modules that ask for it. The modules name their own
``server`` fixture (``make_server()``), since the cluster plugin has one too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Optional, TypeVar

import pytest
from conftest_web import CheckedClient, parse_sse

from taskrunner import TaskRunner

from conftest import Gate, wait_for

WAIT = 10.0  # generous: how long a test waits for a task to finish

Closable = TypeVar("Closable")


def closing_factory(
    make: Callable[..., Closable], *, reverse: bool = False
) -> Iterator[Callable[..., Closable]]:
    """For a fixture to ``yield from``: ``make``, keeping what it makes; after
    the test, closes each in the order made (the last made first with ``reverse``)."""
    made: list[Any] = []

    def factory(*args: Any, **kwargs: Any) -> Closable:
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    yield factory
    for thing in reversed(made) if reverse else made:
        thing.close()


class Fails:
    """Fails in run(), saying what it was given."""

    def __init__(self, input: Any) -> None:
        self.input = input

    def run(self) -> Any:
        raise ValueError(f"cannot do {self.input!r}")

    def get_output(self) -> Any:
        return None


class ReturnsTask:
    """A blocking task whose result is whatever the test chose."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def run(self) -> Any:
        return self.value

    def get_output(self) -> Any:
        return self.value


def broken_factory(input: Any) -> Any:
    """A task type whose factory crashes."""
    raise RuntimeError("the factory is broken")


def strict_factory(input: Any) -> Any:
    """A task type that takes only integers (and no wait)."""
    if not isinstance(input, int):
        raise TypeError("input must be an integer")
    return ReturnsTask(input)


class Server:
    """An app over its own runner, with a checked client and a gate factory."""

    def __init__(self, task_types: Optional[dict] = None, **settings: Any) -> None:
        # Here, so that the plugin loads without the [web] extra.
        from taskrunner.web import create_app, default_task_types

        self.gates: list[Gate] = []
        types = dict(default_task_types())
        types.update(gate=self._gate, broken=broken_factory, strict=strict_factory)
        types["once"] = self._once
        types["returns"] = ReturnsTask
        self.runner = TaskRunner()
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None}
        config.update({f"TASKRUNNER_{k.upper()}": v for k, v in settings.items()})
        self.app = create_app(runner=self.runner, task_types=task_types or types, config=config)
        self.state = self.app.extensions["taskrunner"]
        self.client = CheckedClient(self.app)

    def _gate(self, input: Any) -> Gate:
        gate = Gate(input)
        self.gates.append(gate)
        return gate

    def _once(self, input: Any) -> ReturnsTask:
        """A task type whose factory works once, then crashes (as on a run again)."""
        if getattr(self, "made_once", False):
            raise RuntimeError("this factory works once")
        self.made_once = True
        return ReturnsTask(input)

    def submit(self, type: str = "fake_blocking", input: Any = 21, **fields: Any) -> dict:
        response = self.client.post("/api/tasks", json={"type": type, "input": input, **fields})
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def until_running(self, task: dict) -> dict:
        """Waits for a submitted task to start; returns it."""
        assert wait_for(lambda: self.runner.status(task["id"])["state"] == "running", WAIT)
        return task

    def finish(self, *ids: int) -> None:
        done, not_done = self.runner.wait(ids, timeout=WAIT)
        assert not not_done, f"tasks {sorted(not_done)} did not finish"

    def close(self) -> None:
        for gate in self.gates:
            gate.release.set()
        for id in self.runner.ids():
            self.runner.cancel(id)
        self.state.close()
        self.runner.shutdown(wait=True, cancel_pending=True)


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    """Makes a ``Server`` (its arguments: the task types, settings); closes each after the test."""
    yield from closing_factory(Server)


def read_until(stream, predicate, limit: int = 500):
    """Events from ``stream`` up to and including the first that matches."""
    seen = []
    for name, data in stream:
        seen.append((name, data))
        if predicate(name, data):
            return seen
        assert len(seen) < limit, seen
    raise AssertionError(f"the stream ended first: {seen}")


def open_events(server: Server):
    response = server.client.get("/api/events")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-cache"
    chunks = (chunk.decode() for chunk in response.response)
    return response, parse_sse(chunks)
