"""The shapes of the dicts taskrunner reports: a task's status, and a runner's stats.

Their keys are the core's ``STATUS_KEYS`` and ``STATS_KEYS``, in the same
order (a test holds the two together). Both are plain dicts at run time; the
``TypedDict``s are for type checkers and readers.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict

__all__ = [
    "Attempt",
    "ErrorInfo",
    "History",
    "Progress",
    "RunnerStats",
    "TaskStatus",
    "Timeline",
    "TimelineEvent",
]

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
    type: Optional[str]


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


class TimelineEvent(TypedDict):
    """A moment a task's state changed, in its ``Timeline``."""

    at: float
    state: State
    attempt: int
    error: Optional[ErrorInfo]


class Attempt(TypedDict):
    """One run of a task, in its ``Timeline``."""

    attempt: int
    started_at: Optional[float]
    ended_at: Optional[float]
    error: Optional[ErrorInfo]


class Timeline(TypedDict):
    """A task's history, as ``TaskRunner.timeline(id)`` and the HTTP API give it."""

    id: int
    events: list[TimelineEvent]
    attempts: list[Attempt]
    after: list[int]
    dependents: list[int]
    again: bool


class FinishedSeries(TypedDict):
    """Tasks finished per second in each step of a history, by final state."""

    succeeded: list[float]
    failed: list[float]
    cancelled: list[float]
    timed_out: list[float]


class RuntimePercentiles(TypedDict):
    """Runtime percentiles (seconds) over a window; None when no task finished."""

    count: int
    p50: Optional[float]
    p90: Optional[float]
    p99: Optional[float]


RuntimeWindows = TypedDict(
    "RuntimeWindows", {"1m": RuntimePercentiles, "1h": RuntimePercentiles, "1d": RuntimePercentiles}
)


class History(TypedDict):
    """Throughput over time, as ``TaskRunner.history()`` gives it: one point per step."""

    window: str
    step: int
    at: list[int]
    finished: FinishedSeries
    running: list[int]
    pending: list[int]
    runtime: RuntimeWindows
