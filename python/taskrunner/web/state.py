"""What one app holds: its runner, task types, settings, and the bookkeeping around them."""

from __future__ import annotations

import threading
from typing import Any, NamedTuple, Optional

from flask import current_app
from prometheus_client import CollectorRegistry

from taskrunner import ClusterUnreachable, TaskRunner
from taskrunner.web.pollrate import PollRateMeter
from taskrunner.web.problems import (
    CLUSTER_UNREACHABLE,
    JOURNAL_DEGRADED,
    NOT_RECORDED,
    SHUTTING_DOWN,
    TOO_MANY_UNFINISHED,
    Problem,
    invalid_params,
)
from taskrunner.web.settings import Settings
from taskrunner.web.tasktypes import Recipe, TaskTypes

EXTENSION_KEY = "taskrunner"
# Seconds a client is asked to wait when the journal cannot write: its writer
# retries with a back-off, and recovers by itself.
RETRY_AFTER_JOURNAL = "5"
# Seconds a client is asked to wait while the cluster's scheduler is out of
# reach: the runner reconnects by itself.
RETRY_AFTER_CLUSTER = "5"


class Accepted(NamedTuple):
    """A submission the runner took: the task's status, and whether its key made it before."""

    status: dict
    replayed: bool


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
        # The newest task id when the app started, then of each new submission.
        self._newest_id = max(runner.ids(limit=1), default=0)

    def submit(
        self,
        task: Any,
        *,
        timeout: Optional[float],
        name: Optional[str],
        recipe: Optional[Recipe] = None,
        key: Optional[str] = None,
        scheduling: Optional[dict[str, Any]] = None,
        type: Optional[str] = None,
    ) -> Accepted:
        """Submits ``task`` within the limit of unfinished tasks, and waits for its commit.

        The runner keeps the task's ``recipe`` (for ``POST .../again``); with
        a journal it goes with the task's row (so that it runs again after a
        crash), and this returns only once that row is committed. With
        ``key``, a repeat returns the task the key first made.
        ``scheduling`` holds the submit's scheduling options (``retries``,
        ``delay``, ``priority``, ``after``, ``limit``...), already checked
        but for what only the runner knows: the ids and the labels it has.
        ``type`` is the task type it was submitted as, kept in its status.

        Raises:
            Problem: 503 when shutting down, at the limit, when the journal
                cannot write or the cluster's scheduler is out of reach
                (nothing is submitted), or when the commit does not come
                within the commit timeout (the task runs, unrecorded); 400
                when the runner refuses an option (an unknown ``after`` id or
                ``limit`` label), naming it.
        """
        journaled = self.runner.journal is not None
        with self._submit_lock:
            if self.stopping.is_set() or self.runner.closed:
                raise Problem(503, "the server is shutting down", type=SHUTTING_DOWN)
            stats = self.runner.stats()
            if stats["journal"] == "degraded":
                raise Problem(
                    503,
                    f"the journal cannot record tasks ({stats['journal_problem']}); "
                    "the task was not submitted; retry later",
                    type=JOURNAL_DEGRADED,
                    headers={"Retry-After": RETRY_AFTER_JOURNAL},
                )
            limit = self.settings.max_unfinished
            if stats["unfinished"] >= limit:
                raise Problem(
                    503,
                    f"{limit} tasks are already pending or running; retry when some finish",
                    type=TOO_MANY_UNFINISHED,
                    headers={"Retry-After": "1"},
                )
            try:
                handle = self.runner.submit(
                    task,
                    timeout=timeout,
                    name=name,
                    recipe=recipe,
                    key=key,
                    type=type,
                    **(scheduling or {}),
                )
            except KeyError as error:
                # Only an ``after`` id can name no task. A 400 naming the field,
                # not a 404: the request's own resource exists, one of its
                # fields is wrong, as an unknown limit label is.
                raise invalid_params({"after": error.args[0]}, where="body") from None
            except ValueError as error:
                raise self._refused(str(error), scheduling or {}) from None
            except ClusterUnreachable as error:
                raise Problem(
                    503,
                    f"{error}; the task was not submitted",
                    type=CLUSTER_UNREACHABLE,
                    headers={"Retry-After": RETRY_AFTER_CLUSTER},
                ) from None
            except RuntimeError:
                raise Problem(503, "the task runner is shut down", type=SHUTTING_DOWN) from None
            # Ids grow with every submit: a task older than the newest one
            # seen is the one the key made before.
            replayed = handle.id <= self._newest_id
            if not replayed:
                self._newest_id = handle.id
                self.submitted += 1
        # Outside the lock, so that concurrent submissions share commits.
        if journaled and not self.runner.flush(self.settings.commit_timeout):
            raise self._not_recorded(handle.id)
        return Accepted(handle.status(), replayed)

    def _refused(self, message: str, scheduling: dict[str, Any]) -> Problem:
        """The 400 for an option the runner refused, named by its message."""
        if message.startswith("no limit named"):
            label = scheduling.get("limit")
            known = ", ".join(sorted(self.runner.limits())) or "none"
            reason = (
                f"no limit named {label!r} (known: {known}); declare it with "
                f"PUT /api/limits/{label} or when the server starts"
            )
            return invalid_params({"limit": reason}, where="body")
        if "on a cluster" in message:
            return invalid_params(dict.fromkeys(scheduling, message), where="body")
        named = [name for name in scheduling if message.startswith(name)]
        return invalid_params({(named or ["timeout"])[0]: message}, where="body")

    def cluster(self) -> Optional[dict[str, Any]]:
        """The runner's cluster: its scheduler's address and whether it is in
        reach now; None for a runner that runs its tasks in this process."""
        client = self.runner.cluster
        if client is None:
            return None
        scheduler = getattr(client.scheduler, "address", None)
        return {"scheduler": scheduler, "reachable": client.status == "running"}

    def _not_recorded(self, id: int) -> Problem:
        problem = self.runner.stats()["journal_problem"] or "the journal is slow to commit"
        return Problem(
            503,
            f"task {id} was accepted but not recorded within {self.settings.commit_timeout:g} s "
            f"({problem}): it runs, but a crash would lose it; retry with the same "
            "Idempotency-Key to get it once it is recorded",
            type=NOT_RECORDED,
            headers={"Retry-After": RETRY_AFTER_JOURNAL},
            id=id,
        )

    def close(self) -> None:
        """Ends the event streams and, if the app made the runner, stops it taking tasks.

        Without a journal, pending tasks are cancelled. With one, they are
        left to the interpreter's exit, which leaves them (and polling tasks)
        unfinished in the journal, so that the next start runs them again.
        Running tasks are not waited for here.
        """
        self.stopping.set()
        if self.owns_runner:
            journaled = self.runner.journal is not None
            self.runner.shutdown(wait=False, cancel_pending=not journaled)


def current_state() -> WebState:
    """The ``WebState`` of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
