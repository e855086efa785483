"""The shapes of the dicts taskrunner reports: a task's status, and a runner's stats.

Their keys are the core's ``STATUS_KEYS`` and ``STATS_KEYS``, in the same
order (a test holds the two together). Both are plain dicts at run time; the
``TypedDict``s are for type checkers and readers.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict

__all__ = ["ErrorInfo", "Progress", "RunnerStats", "TaskStatus"]

State = Literal["pending", "running", "succeeded", "failed", "cancelled", "timed_out"]
Kind = Literal["blocking", "polling"]


class ErrorInfo(TypedDict):
    """Why a task failed."""

    type: str
    message: str
    traceback: str


class Progress(TypedDict):
    """How far along a task is, from its optional ``progress()``."""

    fraction: Optional[float]
    message: Optional[str]


class TaskStatus(TypedDict):
    """One task's status, as ``TaskRunner.status(id)`` and the HTTP API give it."""

    id: int
    name: str
    kind: Optional[Kind]
    state: State
    done: bool
    result: Any
    error: Optional[ErrorInfo]
    submitted_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    runtime: Optional[float]
    polls: int
    attempt: int
    worker: Optional[str]
    progress: Optional[Progress]
    priority: int
    not_before: Optional[float]
    after: list[int]
    limit: Optional[str]


class RunnerStats(TypedDict):
    """A runner's load figures, as ``TaskRunner.stats()`` gives them."""

    max_workers: int
    workers: int
    workers_busy: int
    workers_idle: int
    workers_timed_out: int
    workers_attaching: int
    queued: int
    polling: int
    poller_queue: int
    polls: int
    unfinished: int
    journal: Optional[str]
    journal_problem: Optional[str]
    paused: bool
