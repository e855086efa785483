"""``GET /api/events``: state changes as server-sent events.

The stream opens with ``ready``. Then, for every batch of state changes, one
``task`` event per task that changed, carrying its status as it is when
sent (changes close together may fold into one event), and one ``counts``
event. ``resync`` says events were dropped because the client read too
slowly: reload the list. ``forgotten`` names a task that no longer exists.
``stats``, once a second, gives the tasks finished in the last whole second
by final state and those running and pending at its end (made once a second
for all open streams). A comment line every few seconds without task changes
keeps proxies from closing the connection. The stream ends when the server
shuts down; clients reconnect.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from taskrunner._core import EventStream
from taskrunner.web.encoding import task_json
from taskrunner.web.state import WebState

RETRY_MILLISECONDS = 2000
# The longest a stream waits for a change before it looks again at whether
# the server is stopping or the client has gone.
WAKE_SECONDS = 0.5
BATCH = 512
CAPACITY = 8192


def message(event: str, data: Any) -> str:
    """One server-sent event: its name and a line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _changed_tasks(state: WebState, batch: list[tuple[int, str]]) -> Iterator[str]:
    for id in dict.fromkeys(id for id, _ in batch):
        try:
            status = state.runner.status(id)
        except KeyError:
            yield message("forgotten", {"id": id})
            continue
        yield message("task", task_json(status))


def stats_of(history: dict[str, Any]) -> dict[str, Any]:
    """The ``stats`` event of the last second of a ``runner.history("1m")``."""
    return {
        "at": float(history["at"][-1]),
        "finished": {state: round(series[-1]) for state, series in history["finished"].items()},
        "running": history["running"][-1],
        "pending": history["pending"][-1],
    }


class SecondStats:
    """The ``stats`` event of the last whole second, made at most once a second
    however many streams send it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second = -1
        self._message = ""

    def message(self, runner: Any) -> str:
        second = math.floor(time.time())
        with self._lock:
            if second != self._second:
                self._second = second
                self._message = message("stats", stats_of(runner.history("1m")))
            return self._message


_second_stats: weakref.WeakKeyDictionary[WebState, SecondStats] = weakref.WeakKeyDictionary()
_second_stats_lock = threading.Lock()


def second_stats(state: WebState) -> SecondStats:
    """The one ``SecondStats`` of an app."""
    with _second_stats_lock:
        return _second_stats.setdefault(state, SecondStats())


def task_events(
    state: WebState, stream: EventStream, gone: Callable[[], bool] = lambda: False
) -> Iterator[str]:
    """The body of one event-stream response, until the server stops or ``gone()``.

    ``gone`` says the client hung up, so that its thread comes free at once
    rather than at the next write.
    """
    runner = state.runner
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    yield message("ready", {"counts": runner.counts()})
    quiet_since = time.monotonic()
    stats, stats_at = second_stats(state), math.floor(time.time()) + 1
    while not (state.stopping.is_set() or runner.closed or gone()):
        heartbeat_due = quiet_since + state.settings.heartbeat - time.monotonic()
        wait = min(max(heartbeat_due, 0.0), max(stats_at - time.time(), 0.0), WAKE_SECONDS)
        batch = stream.next_batch(timeout=wait, max=BATCH)
        if stream.take_lagged():
            yield message("resync", {"counts": runner.counts()})
        if batch:
            yield from _changed_tasks(state, batch)
            yield message("counts", runner.counts())
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= state.settings.heartbeat:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        if time.time() >= stats_at:
            yield stats.message(runner)
            stats_at = math.floor(time.time()) + 1


def open_stream(state: WebState) -> EventStream:
    """Subscribes to the runner's events (before the response starts, so none are missed)."""
    return state.runner.events(capacity=CAPACITY)
