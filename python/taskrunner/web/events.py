"""``GET /api/events``: state changes as server-sent events.

The stream opens with ``ready`` (the counts per state, and whether the runner
is paused). Then, every ``FOLD_SECONDS`` in which something changed, one
``task`` event per task that changed, carrying its status as it is when sent
(every change of a task in that interval folds into one event, so the last
``task`` event of a task is its latest status), and one ``counts`` event.
At most ``MAX_TASK_EVENTS`` task events go out per interval, the tasks that
changed last; when some were left out, or a client read too slowly to keep
up, the stream sends ``resync``: reload the list (at most one every
``RESYNC_SECONDS``, so that a dashboard under load does not reload all the
time). ``paused`` {"paused": bool} says the runner was paused or resumed.
``forgotten`` names a task that no longer exists. ``stats``, once a second,
gives the tasks finished in the last whole second by final state and those
running and pending at its end. A comment line every few quiet seconds
keeps proxies from closing the connection. The stream ends
when the server shuts down; clients reconnect.

Every stream of an app sends the same text: one `Fold` per app reads the
runner's changes and builds it once per interval, whatever the number of
streams, and stops when the last stream closes.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Optional

from taskrunner.web.encoding import task_json
from taskrunner.web.state import WebState

RETRY_MILLISECONDS = 2000
# The longest a stream waits for a change before it looks again at whether
# the server is stopping or the client has gone.
WAKE_SECONDS = 0.5
# The changes the fold can hold between two intervals: a runner that makes
# more (over 10,000 tasks a second) has its streams resync.
CAPACITY = 32768
# How often the changes are folded and sent; the most task events sent per
# interval; the least time between two resyncs.
FOLD_SECONDS = 0.5
MAX_TASK_EVENTS = 100
RESYNC_SECONDS = 10.0
# Intervals kept for streams whose client reads slowly; one further behind resyncs.
KEPT_FRAMES = 8


def message(event: str, data: Any) -> str:
    """One server-sent event: its name and a line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Frame(NamedTuple):
    """What every stream sends for one interval."""

    seq: int
    text: str


class Fold:
    """One subscription to an app's runner, folded into frames that every stream sends."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.listeners = 0
        self._stream = state.runner.events(capacity=CAPACITY)
        self._frames: deque[Frame] = deque(maxlen=KEPT_FRAMES)
        self._seq = 0
        self._new_frame = threading.Condition()
        self._changed: dict[int, None] = {}
        self._paused = state.runner.paused
        self._resync_owed = False
        self._resync_at = -RESYNC_SECONDS
        self._stats_second = math.floor(time.time())
        threading.Thread(target=self._run, name="taskrunner-event-fold", daemon=True).start()

    @property
    def seq(self) -> int:
        return self._seq

    def _run(self) -> None:
        # Sleeps through the interval and takes its changes at once: waking
        # for each change would cost more than the changes themselves.
        while not self._done():
            time.sleep(FOLD_SECONDS)
            self._take_changes()
            self._publish(self._frame_text())

    def _take_changes(self) -> None:
        changed = self._changed
        while True:
            batch = self._stream.next_batch(timeout=0, max=CAPACITY)
            for id, _ in batch:
                # Newest last: a task that changes again moves to the end.
                changed.pop(id, None)
                changed[id] = None
            if len(batch) < CAPACITY:
                return

    def _done(self) -> bool:
        """True (and forgotten by its app) once no stream listens, or the server stops."""
        with _FOLDS_LOCK:
            if self.listeners > 0 and not self._stopping():
                return False
            if _FOLDS.get(self.state) is self:
                del _FOLDS[self.state]
        with self._new_frame:
            self._new_frame.notify_all()
        return True

    def _stopping(self) -> bool:
        return self.state.stopping.is_set() or self.state.runner.closed

    def _frame_text(self) -> str:
        """The interval's events; empty when nothing happened."""
        runner = self.state.runner
        changed, self._changed = list(self._changed), {}
        parts = [_task_message(runner, id) for id in changed[-MAX_TASK_EVENTS:]]
        paused = runner.paused
        if paused != self._paused:
            self._paused = paused
            parts.append(message("paused", {"paused": paused}))
        if self._stream.take_lagged() or len(changed) > MAX_TASK_EVENTS:
            self._resync_owed = True
        now = time.monotonic()
        resync = self._resync_owed and now - self._resync_at >= RESYNC_SECONDS
        if resync:
            self._resync_owed, self._resync_at = False, now
            parts.append(message("resync", {"counts": runner.counts()}))
        elif changed:
            parts.append(message("counts", runner.counts()))
        # Once a second, made here once for every stream.
        second = math.floor(time.time())
        if second != self._stats_second:
            self._stats_second = second
            parts.append(message("stats", stats_of(runner.history("1m"))))
        return "".join(parts)

    def _publish(self, text: str) -> None:
        if not text:
            return
        with self._new_frame:
            self._seq += 1
            self._frames.append(Frame(self._seq, text))
            self._new_frame.notify_all()

    def after(self, seq: int, timeout: float) -> tuple[int, str]:
        """The text of the frames after ``seq``, waiting up to ``timeout`` for one;
        with the seq to ask after next. A reader that fell behind the kept
        frames gets ``resync`` instead."""
        with self._new_frame:
            if self._seq == seq:
                self._new_frame.wait(timeout)
            if self._seq == seq:
                return seq, ""
            if self._frames[0].seq > seq + 1:
                return self._seq, message("resync", {"counts": self.state.runner.counts()})
            return self._seq, "".join(f.text for f in self._frames if f.seq > seq)


def _task_message(runner: Any, id: int) -> str:
    try:
        return message("task", task_json(runner.status(id)))
    except KeyError:
        return message("forgotten", {"id": id})


_FOLDS: weakref.WeakKeyDictionary[WebState, Fold] = weakref.WeakKeyDictionary()
_FOLDS_LOCK = threading.Lock()


class Listener:
    """One stream's place in its app's `Fold`."""

    def __init__(self, state: WebState) -> None:
        with _FOLDS_LOCK:
            fold = _FOLDS.get(state)
            if fold is None:
                fold = _FOLDS[state] = Fold(state)
            fold.listeners += 1
        self.fold: Optional[Fold] = fold
        self.seq = fold.seq

    def next(self, timeout: float) -> str:
        """What to send next: the frames since the last call, or "" after ``timeout``."""
        if self.fold is None:
            return ""
        self.seq, text = self.fold.after(self.seq, timeout)
        return text

    def close(self) -> None:
        """Leaves the fold (which stops with its last listener). Safe to call twice."""
        with _FOLDS_LOCK:
            if self.fold is not None:
                self.fold.listeners -= 1
                self.fold = None


def stats_of(history: dict[str, Any]) -> dict[str, Any]:
    """The ``stats`` event of the last second of a ``runner.history("1m")``."""
    return {
        "at": float(history["at"][-1]),
        "finished": {state: round(series[-1]) for state, series in history["finished"].items()},
        "running": history["running"][-1],
        "pending": history["pending"][-1],
    }


def task_events(
    state: WebState, listener: Listener, gone: Callable[[], bool] = lambda: False
) -> Iterator[str]:
    """The body of one event-stream response, until the server stops or ``gone()``.

    ``gone`` says the client hung up, so that its thread comes free at once
    rather than at the next write.
    """
    runner = state.runner
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        yield message("ready", {"counts": runner.counts(), "paused": runner.paused})
        quiet_since = time.monotonic()
        while not (state.stopping.is_set() or runner.closed or gone()):
            heartbeat_due = quiet_since + state.settings.heartbeat - time.monotonic()
            text = listener.next(timeout=min(max(heartbeat_due, 0.0), WAKE_SECONDS))
            if text:
                yield text
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= state.settings.heartbeat:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
    finally:
        listener.close()


def open_stream(state: WebState) -> Listener:
    """Joins the app's fold of the runner's events (before the response
    starts, so that none is missed)."""
    return Listener(state)
