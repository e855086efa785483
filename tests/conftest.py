"""Shared fixtures and small task classes for the core tests."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import taskrunner

# Shared fixtures: a real Dask cluster and a server in front of it, a headless
# browser, and an app through Flask's test client.
pytest_plugins = ["dask_cluster", "browser", "web_app"]


@pytest.fixture
def runner():
    r = taskrunner.TaskRunner()
    yield r
    r.shutdown(wait=False, cancel_pending=True)
    for status in r.tasks("running"):
        r.cancel(status["id"])  # long polling tasks would otherwise be waited for
    r.shutdown(wait=True)


@pytest.fixture
def one_worker():
    """A runner with a single worker, so that a second blocking task stays pending."""
    r = taskrunner.TaskRunner(max_workers=1)
    yield r
    r.shutdown(wait=False, cancel_pending=True)
    r.shutdown(wait=True)


class Blocking:
    """A plain (unregistered) blocking task: works in run(), returns its output."""

    def __init__(self, value: Any = 1, wait: float = 0.0) -> None:
        self.value, self.wait, self.output = value, wait, None

    def run(self) -> Any:
        time.sleep(self.wait)
        self.output = self.value
        return self.value

    def get_output(self) -> Any:
        return self.output


class Polling:
    """A plain (unregistered) polling task: done `wait` seconds after run()."""

    def __init__(self, value: Any = 1, wait: float = 0.0) -> None:
        self.value, self.wait, self.started = value, wait, None
        self.polls = 0

    def run(self) -> None:
        self.started = time.monotonic()

    def get_output(self) -> Any:
        self.polls += 1
        if self.started is not None and time.monotonic() - self.started >= self.wait:
            return self.value
        return None


class Gate:
    """A blocking task that holds a worker until released; its output is ``value``.

    Registered as blocking, so that its kind is known before it runs.
    """

    def __init__(self, value: Any = "released") -> None:
        self.value = value
        self.entered = threading.Event()
        self.release = threading.Event()
        self.ran = False

    def run(self) -> Any:
        self.ran = True
        self.entered.set()
        self.release.wait(30)
        return self.value

    def get_output(self) -> None:
        return None


taskrunner.register_kind(Gate, "blocking")


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Polls a predicate for tests that observe a background change."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


READ_JOURNAL = """
import json, sqlite3, sys
connection = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(json.dumps(connection.execute(sys.argv[2]).fetchall()))
"""


def query_journal(db: str, sql: str) -> list[tuple]:
    """The rows of `sql` on a journal that a runner of this process may hold.

    Read from another process: Python's sqlite3 is a second copy of SQLite,
    and two copies in one process do not see each other's POSIX locks. One
    could take the WAL index for its own and truncate it under the runner's
    writer (a bus error).
    """
    done = subprocess.run(
        [sys.executable, "-c", READ_JOURNAL, db, sql],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [tuple(row) for row in json.loads(done.stdout)]
