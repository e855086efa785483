"""``GET /api/events``: state changes as server-sent events.

The stream opens with ``ready``. Then, for every batch of state changes, one
``task`` event per task that changed, carrying its status as it is when
sent (changes close together may fold into one event), and one ``counts``
event. ``resync`` says events were dropped because the client read too
slowly: reload the list. ``forgotten`` names a task that no longer exists.
A comment line every few quiet seconds keeps proxies from closing the
connection. The stream ends when the server shuts down; clients reconnect.
"""

from __future__ import annotations

import json
import time
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
    while not (state.stopping.is_set() or runner.closed or gone()):
        heartbeat_due = quiet_since + state.settings.heartbeat - time.monotonic()
        batch = stream.next_batch(timeout=min(max(heartbeat_due, 0.0), WAKE_SECONDS), max=BATCH)
        if stream.take_lagged():
            yield message("resync", {"counts": runner.counts()})
        if batch:
            yield from _changed_tasks(state, batch)
            yield message("counts", runner.counts())
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= state.settings.heartbeat:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()


def open_stream(state: WebState) -> EventStream:
    """Subscribes to the runner's events (before the response starts, so none are missed)."""
    return state.runner.events(capacity=CAPACITY)
