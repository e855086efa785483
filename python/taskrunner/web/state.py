"""What one app holds: its runner, task types, settings, and the bookkeeping around them."""

from __future__ import annotations

import threading
from typing import Any, Optional

from flask import current_app
from prometheus_client import CollectorRegistry

from taskrunner import TaskRunner
from taskrunner.web.pollrate import PollRateMeter
from taskrunner.web.problems import SHUTTING_DOWN, TOO_MANY_UNFINISHED, Problem, invalid_params
from taskrunner.web.settings import Settings
from taskrunner.web.tasktypes import TaskTypes

EXTENSION_KEY = "taskrunner"


class StreamSlots:
    """Counts open event streams against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """Takes a slot; False when all are taken."""
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
            return True

    def release(self) -> None:
        """Gives a slot back."""
        with self._lock:
            self._open = max(self._open - 1, 0)

    @property
    def open(self) -> int:
        return self._open


class WebState:
    """The runner behind one app and what the views share about it."""

    def __init__(
        self,
        runner: TaskRunner,
        owns_runner: bool,
        task_types: TaskTypes,
        settings: Settings,
        metrics_registry: CollectorRegistry,
    ) -> None:
        self.runner = runner
        self.owns_runner = owns_runner
        self.task_types = task_types
        self.settings = settings
        self.poll_rate = PollRateMeter(runner.stats()["polls"])
        self.streams = StreamSlots(settings.max_event_streams)
        self.stopping = threading.Event()
        self.submitted = 0
        self.metrics_registry = metrics_registry
        # Checking the limit and submitting must be one step, or concurrent
        # requests could all pass the check and overshoot it.
        self._submit_lock = threading.Lock()

    def submit(self, task: Any, *, timeout: Optional[float], name: Optional[str]) -> dict:
        """Submits ``task`` within the limit of unfinished tasks; returns its status.

        Raises:
            Problem: 503 when shutting down or at the limit; 400 when the runner
                rejects the timeout.
        """
        with self._submit_lock:
            if self.stopping.is_set() or self.runner.closed:
                raise Problem(503, "the server is shutting down", type=SHUTTING_DOWN)
            limit = self.settings.max_unfinished
            if self.runner.stats()["unfinished"] >= limit:
                raise Problem(
                    503,
                    f"{limit} tasks are already pending or running; retry when some finish",
                    type=TOO_MANY_UNFINISHED,
                    headers={"Retry-After": "1"},
                )
            try:
                handle = self.runner.submit(task, timeout=timeout, name=name)
            except ValueError as error:
                raise invalid_params({"timeout": str(error)}, where="body") from None
            except RuntimeError:
                raise Problem(503, "the task runner is shut down", type=SHUTTING_DOWN) from None
            self.submitted += 1
        return handle.status()

    def close(self) -> None:
        """Ends the event streams and, if the app made the runner, shuts it down.

        Pending tasks are cancelled; running ones are not waited for here.
        """
        self.stopping.set()
        if self.owns_runner:
            self.runner.shutdown(wait=False, cancel_pending=True)


def current_state() -> WebState:
    """The ``WebState`` of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
