"""Type stubs for taskrunner's Rust core (kept true to the module by a stubtest run)."""

import os
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future
from typing import Any, Optional, Union, final

from typing_extensions import disjoint_base

from taskrunner.status import History, RunnerStats, TaskStatus, Timeline

__all__ = [
    "__version__",
    "DEFAULT_MAX_WORKERS",
    "KINDS",
    "STATES",
    "STATS_KEYS",
    "STATUS_KEYS",
    "Completions",
    "EventStream",
    "JournalError",
    "JournalView",
    "PollPolicy",
    "Rate",
    "Retry",
    "Runner",
    "TaskHandle",
    "TaskLost",
    "TaskTimeoutError",
    "_after_fork_in_child",
    "_close_all",
    "_join_all",
    "register_kind",
    "registered_kind",
]

__version__: str
DEFAULT_MAX_WORKERS: int
STATES: tuple[str, ...]
KINDS: tuple[str, ...]
STATUS_KEYS: tuple[str, ...]
STATS_KEYS: tuple[str, ...]

class TaskTimeoutError(Exception): ...
class TaskLost(RuntimeError): ...
class JournalError(OSError): ...

@final
class JournalView:
    def __new__(cls, path: Union[str, os.PathLike[str]]) -> JournalView: ...
    def status(self, id: int) -> TaskStatus: ...
    def tasks(
        self,
        state: Optional[str] = None,
        *,
        name: Optional[str] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        cursor: Optional[int] = None,
        limit: Optional[int] = None,
        newest_first: bool = False,
        kind: Optional[str] = None,
        type: Optional[str] = None,
        worker: Optional[str] = None,
        error: Optional[str] = None,
    ) -> list[TaskStatus]: ...
    @property
    def path(self) -> str: ...

@final
class PollPolicy:
    def __new__(
        cls,
        min_interval: float = 0.001,
        max_interval: float = 1.0,
        ratio: float = 0.03,
        *,
        errors: int = 0,
    ) -> PollPolicy: ...
    @property
    def min_interval(self) -> float: ...
    @property
    def max_interval(self) -> float: ...
    @property
    def ratio(self) -> float: ...
    @property
    def errors(self) -> int: ...

@final
class Retry:
    def __new__(
        cls,
        attempts: int,
        *,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        jitter: bool = True,
        on: Union[type[BaseException], tuple[type[BaseException], ...], None] = None,
    ) -> Retry: ...
    @property
    def attempts(self) -> int: ...
    @property
    def backoff(self) -> float: ...
    @property
    def max_backoff(self) -> float: ...
    @property
    def jitter(self) -> bool: ...
    @property
    def on(self) -> tuple[type[BaseException], ...]: ...

@final
class Rate:
    def __new__(cls, count: int, per: float = 1.0) -> Rate: ...
    @property
    def count(self) -> int: ...
    @property
    def per(self) -> float: ...

@final
class TaskHandle:
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def kind(self) -> Optional[str]: ...
    def status(self) -> TaskStatus: ...
    def done(self) -> bool: ...
    def running(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self, timeout: Optional[float] = None) -> Any: ...
    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]: ...
    def cancel(self) -> bool: ...
    def add_done_callback(self, callback: Callable[[TaskHandle], object]) -> None: ...
    def future(self) -> Future[Any]: ...
    def __await__(self) -> Generator[Any, None, Any]: ...
    def __hash__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Completions:
    def __iter__(self) -> Completions: ...
    def __next__(self) -> int: ...

@final
class EventStream:
    def next_batch(
        self, timeout: Optional[float] = None, max: int = 1024
    ) -> list[tuple[int, str]]: ...
    def take_lagged(self) -> bool: ...

@disjoint_base
class Runner:
    def __new__(
        cls,
        max_workers: Optional[int] = None,
        *,
        poll: Optional[PollPolicy] = None,
        max_poll_rate: float = 100000.0,
        keep_alive: float = 10.0,
        retain_finished: Optional[int] = 100000,
        retain_seconds: Optional[float] = 3600.0,
        run_pending_at_exit: bool = False,
        journal: Optional[Union[str, os.PathLike[str]]] = None,
        durability: str = "normal",
        journal_batch: float = 0.002,
        journal_retention: float = 604800.0,
        recreate: Optional[Callable[[Any], Any]] = None,
        handoff: bool = False,
        limits: Optional[dict[str, Union[int, Rate]]] = None,
        _recover_elsewhere: bool = False,
    ) -> Runner: ...
    def submit(
        self,
        task: Any,
        *,
        kind: Optional[str] = None,
        timeout: Optional[float] = None,
        name: Optional[str] = None,
        poll: Optional[PollPolicy] = None,
        durable: bool = False,
        recipe: Any = None,
        key: Optional[str] = None,
        retries: Union[int, Retry, None] = None,
        delay: Optional[float] = None,
        not_before: Optional[float] = None,
        priority: int = 0,
        after: Optional[Iterable[Union[int, TaskHandle]]] = None,
        limit: Optional[str] = None,
        type: Optional[str] = None,
        _elsewhere: bool = False,
    ) -> TaskHandle: ...
    def set_limit(self, label: str, limit: Union[int, Rate]) -> None: ...
    def limits(self) -> dict[str, dict[str, Any]]: ...
    def handle(self, id: int) -> TaskHandle: ...
    def done(self, id: int) -> bool: ...
    def unfinished(self, id: int) -> bool: ...
    def timeline(self, id: int) -> Timeline: ...
    def recipe(self, id: int) -> Any: ...
    def status(self, id: int) -> TaskStatus: ...
    def tasks(
        self,
        state: Optional[str] = None,
        *,
        name: Optional[str] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        after: Optional[int] = None,
        limit: Optional[int] = None,
        kind: Optional[str] = None,
        type: Optional[str] = None,
        worker: Optional[str] = None,
        error: Optional[str] = None,
    ) -> list[TaskStatus]: ...
    def ids(
        self,
        state: Optional[str] = None,
        limit: Optional[int] = None,
        before: Optional[int] = None,
        *,
        name: Optional[str] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        kind: Optional[str] = None,
        type: Optional[str] = None,
        worker: Optional[str] = None,
        error: Optional[str] = None,
    ) -> list[int]: ...
    def counts(self) -> dict[str, int]: ...
    def result(self, id: int, timeout: Optional[float] = None) -> Any: ...
    def cancel(self, id: int) -> bool: ...
    def forget(self, id: int) -> None: ...
    def _audit(self, route: str, task_id: Optional[int], token_label: str) -> bool: ...
    def _wait(
        self,
        ids: Optional[list[Union[int, TaskHandle]]] = None,
        timeout: Optional[float] = None,
        return_when: str = "ALL_COMPLETED",
    ) -> tuple[set[int], set[int]]: ...
    def _completions(
        self, ids: Optional[list[Union[int, TaskHandle]]] = None, timeout: Optional[float] = None
    ) -> Completions: ...
    def events(self, capacity: int = 4096) -> EventStream: ...
    def _take_recovered(self) -> list[tuple[TaskHandle, Any]]: ...
    def _started_elsewhere(self, started: list[tuple[int, Optional[str], str]]) -> None: ...
    def _finished_elsewhere(
        self,
        finished: list[
            tuple[int, Optional[str], str, Any, Optional[tuple[str, str, str, BaseException]], int]
        ],
    ) -> None: ...
    def _requeue(self, ids: list[int]) -> list[tuple[int, int]]: ...
    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None: ...
    def flush(self, timeout: Optional[float] = None) -> bool: ...
    @property
    def journal(self) -> Optional[str]: ...
    def stats(self) -> RunnerStats: ...
    def history(self, window: str = "1h") -> History: ...
    @property
    def max_workers(self) -> int: ...
    @property
    def poll(self) -> PollPolicy: ...
    @property
    def max_poll_rate(self) -> float: ...
    @property
    def closed(self) -> bool: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    @property
    def paused(self) -> bool: ...

def register_kind(cls: type, kind: str) -> None: ...
def registered_kind(task: Any) -> Optional[str]: ...
def _close_all() -> int: ...
def _join_all(timeout: Optional[float] = None) -> bool: ...
def _after_fork_in_child() -> None: ...
