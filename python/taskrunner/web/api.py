"""The HTTP API: a Blueprint of JSON endpoints under ``/api`` over the app's ``TaskRunner``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

from flask import Blueprint, Response, g, jsonify, request, url_for

from taskrunner import KINDS, STATES, STATUS_KEYS
from taskrunner.web import events
from taskrunner.web.audit import audited
from taskrunner.web.auth import guard
from taskrunner.web.commands import serves_commands
from taskrunner.web.encoding import task_json
from taskrunner.web.limits import limit_entries, read_limit
from taskrunner.web.openapi import openapi_document
from taskrunner.web.problems import (
    CANNOT_RUN_AGAIN,
    NOT_CANCELLABLE,
    SHUTTING_DOWN,
    TOO_MANY_STREAMS,
    Problem,
    invalid_params,
    unknown_task,
)
from taskrunner.web.state import WebState, current_state
from taskrunner.web.submission import (
    IDEMPOTENCY_KEY,
    MAX_KEY_CHARS,
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    REPLAYED,
    is_idempotency_key,
    is_label,
    parse_submission,
    read_json_object,
)
from taskrunner.web.tasktypes import Recipe, is_recipe, recipe

api = Blueprint("taskrunner_api", __name__, url_prefix="/api")
guard(api, public={"openapi"})
audited(api)

DEFAULT_PAGE = 100
# A task id is an unsigned 64-bit number: 20 digits at most. Longer text is no
# id, and the bound spares the parsing of huge numbers.
MAX_DIGITS = 20
MAX_ID = 2**64 - 1


def _whole_number(raw: str) -> Optional[int]:
    """``raw`` as plain decimal digits (not "+1", " 1", "1_000" or "١"), else None."""
    if raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS:
        return int(raw)
    return None


def _task_id(raw: str) -> int:
    """The id in a path; any text that is not a whole number is an unknown task."""
    id = _whole_number(raw)
    if id is None:
        raise unknown_task(raw)
    return id


def _status(state: WebState, id: int) -> dict[str, Any]:
    try:
        return state.runner.status(id)
    except KeyError:
        raise unknown_task(id) from None


def _idempotency_key() -> Optional[str]:
    """The ``Idempotency-Key`` header, checked; None when there is none.

    (Sent twice, the server has already joined the values with ", ", as
    HTTP allows: the joined text is the key.)
    """
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None or is_idempotency_key(key):
        return key
    reason = f"must be 1 to {MAX_KEY_CHARS} printable ASCII characters"
    raise invalid_params({IDEMPOTENCY_KEY: reason}, where="header")


@api.post("/tasks")
def submit_task() -> tuple[Response, int, dict[str, str]]:
    """Starts a task of a registered type; 202 with its status and Location once recorded."""
    state = current_state()
    key = _idempotency_key()
    submission = parse_submission(read_json_object(request))
    task = state.task_types.get(submission.type).build(submission.input, submission.wait)
    accepted = state.submit(
        task,
        timeout=submission.timeout,
        name=submission.name,
        recipe=recipe(submission.type, submission.input, submission.wait, task, submission.timeout),
        key=key,
        scheduling=submission.scheduling(),
        type=submission.type,
    )
    # Absolute, with the scheme and host the client used (through a trusted proxy too).
    location = url_for("taskrunner_api.get_task", task_id=accepted.status["id"], _external=True)
    headers = {"Location": location}
    if accepted.replayed:
        headers[REPLAYED] = "true"
    return jsonify(task_json(accepted.status)), 202, headers


class PageQuery(NamedTuple):
    """What ``GET /api/tasks`` asks for."""

    state: Optional[str]
    limit: int
    cursor: Optional[int]
    name: Optional[str]
    since: Optional[float]
    until: Optional[float]
    kind: Optional[str] = None
    type: Optional[str] = None
    worker: Optional[str] = None
    error: Optional[str] = None

    def admits(self, status: dict[str, Any]) -> bool:
        """Whether a listed task still passes: the journal's row of a task can
        trail its status in memory by a commit (a state, an error moved on)."""
        error = status["error"]["type"] if status["error"] else None
        return (
            (self.state is None or status["state"] == self.state)
            and (self.name is None or self.name in status["name"])
            and all(
                want is None or have == want
                for want, have in (
                    (self.kind, status["kind"]),
                    (self.type, status["type"]),
                    (self.worker, status["worker"]),
                    (self.error, error),
                )
            )
        )


# The exact-match filters of ``GET /api/tasks``, beside ``kind``.
LABEL_FILTERS = ("type", "worker", "error")


def _page_query() -> PageQuery:
    reasons: dict[str, str] = {}
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        reasons["state"] = f"must be one of {', '.join(STATES)}"
    max_page = current_state().settings.max_page
    limit = _positive_int(request.args.get("limit"), DEFAULT_PAGE)
    if limit is None or limit > max_page:
        reasons["limit"] = f"must be a whole number from 1 to {max_page}"
    cursor = _positive_int(request.args.get("cursor"), 0)
    if cursor is None:
        reasons["cursor"] = "must be a task id, as given in next_cursor"
    name = request.args.get("name") or None
    if name is not None and len(name) > MAX_NAME_CHARS:
        reasons["name"] = f"must be at most {MAX_NAME_CHARS} characters"
    kind = request.args.get("kind") or None
    if kind is not None and kind not in KINDS:
        reasons["kind"] = f"must be one of {', '.join(KINDS)}"
    labels = {label: request.args.get(label) or None for label in LABEL_FILTERS}
    for label, value in labels.items():
        if value is not None and len(value) > MAX_LABEL_CHARS:
            reasons[label] = f"must be at most {MAX_LABEL_CHARS} characters"
    times: dict[str, Optional[float]] = {}
    for bound in ("since", "until"):
        times[bound] = _time(request.args.get(bound))
        if times[bound] is None and request.args.get(bound):
            reasons[bound] = "must be a time in Unix seconds, such as 1767225600.5"
    if reasons or limit is None or cursor is None:
        raise invalid_params(reasons, where="query")
    # A cursor past every id pages from the newest.
    return PageQuery(
        state,
        limit,
        min(cursor, MAX_ID) or None,
        name,
        times["since"],
        times["until"],
        kind=kind,
        **labels,
    )


def _time(raw: Optional[str]) -> Optional[float]:
    """``raw`` as a finite number of seconds, None when absent or invalid."""
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _positive_int(raw: Optional[str], default: int) -> Optional[int]:
    """``raw`` as an int >= 1, ``default`` when absent, None when invalid."""
    if raw is None or raw == "":
        return default
    number = _whole_number(raw)
    return number if number else None


@api.get("/tasks")
def list_tasks() -> Response:
    """Tasks newest first, optionally filtered by state, name, kind, type, worker,
    error type and submit time, a page at a time."""
    query = _page_query()
    runner = current_state().runner
    # With a journal, ids come from it (tasks no longer in memory included),
    # and the status of each from memory when it is still there, else from it.
    ids = runner.ids(
        state=query.state,
        limit=query.limit + 1,
        before=query.cursor,
        name=query.name,
        since=query.since,
        until=query.until,
        kind=query.kind,
        type=query.type,
        worker=query.worker,
        error=query.error,
    )
    limit = query.limit
    page = ids[:limit]
    tasks = []
    for id in page:
        try:
            status = runner.status(id)
        except KeyError:
            continue  # forgotten since it was listed
        if query.admits(status):
            tasks.append(task_json(status))
    next_cursor = page[-1] if len(ids) > limit else None
    return jsonify({"tasks": tasks, "next_cursor": next_cursor})


@api.get("/tasks/<task_id>")
def get_task(task_id: str) -> Response:
    """One task's status."""
    return jsonify(task_json(_status(current_state(), _task_id(task_id))))


@api.delete("/tasks/<task_id>")
def cancel_task(task_id: str) -> Response:
    """Cancels a task; 409 when it is running and blocking, or already finished."""
    state = current_state()
    id = _task_id(task_id)
    try:
        cancelled = state.runner.cancel(id)
    except KeyError:
        raise unknown_task(id) from None
    status = _status(state, id)
    if cancelled or status["state"] == "cancelled":
        return jsonify(task_json(status))
    if status["done"]:
        detail = f"task {id} has already finished ({status['state']})"
    else:
        detail = f"task {id} is a blocking task that is already running; it cannot be stopped"
    raise Problem(409, detail, type=NOT_CANCELLABLE, state=status["state"])


@api.get("/tasks/<task_id>/timeline")
def get_timeline(task_id: str) -> Response:
    """A task's states with their times, its attempts with their errors, the tasks
    before and after it, and whether it can run again."""
    state = current_state()
    id = _task_id(task_id)
    try:
        timeline = state.runner.timeline(id)
    except KeyError:
        raise unknown_task(id) from None
    if timeline["again"]:
        timeline["again"] = _why_not_again(state, id) is None
    return jsonify(timeline)


def _why_not_again(state: WebState, id: int) -> Optional[str]:
    """Why task ``id`` cannot run again; None when it can.

    Raises:
        Problem: 404 for an unknown id.
    """
    status = _status(state, id)
    made = state.runner.recipe(id)
    if made is None or not is_recipe(made):
        return f"task {id} was not submitted over HTTP: it has no type and input to run again"
    if not status["done"]:
        return f"task {id} is {status['state']}; a task runs again once it has finished"
    if made["type"] not in state.task_types.names():
        return f"task {id} is of type {made['type']!r}, which this server no longer has"
    return None


def _given_name(status: dict[str, Any], made: Recipe) -> Optional[str]:
    """The name a task was submitted with; None when it took its class's name."""
    default = made["class"].rsplit(".", 1)[-1]
    return None if status["name"] == default else status["name"]


@api.post("/tasks/<task_id>/again")
def run_again(task_id: str) -> tuple[Response, int, dict[str, str]]:
    """Submits a new task of a finished task's type, input, wait and timeout (and
    name, if it was given one); 202 with the new task's status and Location."""
    state = current_state()
    id = _task_id(task_id)
    key = _idempotency_key()
    why = _why_not_again(state, id)
    if why is not None:
        raise Problem(409, why, type=CANNOT_RUN_AGAIN)
    made = state.runner.recipe(id)
    task_type = state.task_types.get(made["type"])
    try:
        task = task_type.build(made["input"], made["wait"])
    except Problem as problem:
        reasons = [p["reason"] for p in problem.extensions.get("invalid_params", ())]
        detail = "; ".join(reasons) or problem.detail
        raise Problem(409, f"task {id} cannot run again: {detail}", type=CANNOT_RUN_AGAIN) from None
    timeout = made.get("timeout")
    accepted = state.submit(
        task,
        timeout=timeout,
        name=_given_name(_status(state, id), made),
        recipe=recipe(made["type"], made["input"], made["wait"], task, timeout),
        key=key,
        type=made["type"],
    )
    location = url_for("taskrunner_api.get_task", task_id=accepted.status["id"], _external=True)
    headers = {"Location": location}
    if accepted.replayed:
        headers[REPLAYED] = "true"
    return jsonify(task_json(accepted.status)), 202, headers


@api.get("/task-types")
def list_task_types() -> Response:
    """The task types a client may submit."""
    return jsonify({"task_types": current_state().task_types.describe()})


@api.get("/meta")
def meta() -> Response:
    """The names a client reads tasks with: states, kinds and status keys, in order."""
    return jsonify({"states": list(STATES), "kinds": list(KINDS), "status_keys": list(STATUS_KEYS)})


@api.get("/stats")
def stats() -> Response:
    """Counts per state, workers, the poller's queue and polls per second."""
    state = current_state()
    runner_stats = state.runner.stats()
    return jsonify(
        {
            "counts": state.runner.counts(),
            **runner_stats,
            "polls_per_second": round(state.poll_rate.rate(runner_stats["polls"]), 3),
            "max_unfinished": state.settings.max_unfinished,
            "event_streams": state.streams.open,
            "closed": state.runner.closed,
        }
    )


HISTORY_WINDOWS = ("1m", "1h", "1d")


@api.get("/stats/history")
def stats_history() -> Response:
    """Tasks finished per second by final state, running and pending, over a window;
    runtime percentiles over the last minute, hour and day."""
    window = request.args.get("window", "1h")
    if window not in HISTORY_WINDOWS:
        raise invalid_params(
            {"window": "must be one of " + ", ".join(HISTORY_WINDOWS)}, where="query"
        )
    return jsonify(current_state().runner.history(window))


@api.get("/workers")
def list_workers() -> Response:
    """The cluster's live workers, each with its tasks, threads and last report's age;
    none without a cluster."""
    state = current_state()
    cluster = state.cluster()
    return jsonify(
        {
            "cluster": cluster is not None,
            "scheduler": cluster and cluster["scheduler"],
            "reachable": cluster and cluster["reachable"],
            "workers": state.runner.workers(),
        }
    )


@api.get("/limits")
def list_limits() -> Response:
    """Every limit, with the tasks that hold a slot of it and those waiting for one."""
    return jsonify({"limits": limit_entries(current_state().runner.limits())})


@api.put("/limits/<label>")
def put_limit(label: str) -> Response:
    """Sets a limit, or declares a new label; tasks it now lets through start at once."""
    runner = current_state().runner
    if not is_label(label):
        raise invalid_params({"label": f"must be 1 to {MAX_LABEL_CHARS} characters"}, where="path")
    body = read_json_object(request)
    reasons = {name: "is not a known field" for name in body if name != "limit"}
    limit = None
    try:
        limit = read_limit(body["limit"])
    except KeyError:
        reasons["limit"] = "is required"
    except ValueError as error:
        reasons["limit"] = str(error)
    if reasons or limit is None:
        raise invalid_params(reasons, where="body")
    runner.set_limit(label, limit)
    return jsonify(limit_entries({label: runner.limits()[label]})[0])


@api.get("/events")
def event_stream() -> Response:
    """State changes as server-sent events (see ``taskrunner.web.events``)."""
    state = current_state()
    if state.stopping.is_set():
        raise Problem(503, "the server is shutting down", type=SHUTTING_DOWN)
    if not state.streams.acquire():
        raise Problem(
            503,
            f"all {state.streams.limit} event streams are taken; retry later",
            type=TOO_MANY_STREAMS,
            headers={"Retry-After": "5"},
        )
    try:
        stream = events.open_stream(state)
    except BaseException:
        state.streams.release()
        raise
    # waitress (with request lookahead) can tell when the client has hung up.
    gone = request.environ.get("waitress.client_disconnected", lambda: False)
    response = Response(
        events.task_events(state, stream, gone),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(stream.close)
    response.call_on_close(state.streams.release)
    return response


@api.get("/access")
def access() -> Response:
    """What the request's token may do: read only, or change too; and its name."""
    settings = current_state().settings
    granted = g.access
    return jsonify(
        {
            "label": granted.label,
            "can_change": granted.can_change,
            "token_required": settings.token is not None,
        }
    )


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this server."""
    state = current_state()
    document = openapi_document(
        auth=state.settings.token is not None,
        task_types=state.task_types.names(),
        commands=serves_commands(state.task_types),
        read_token=state.settings.read_token is not None,
        server_url=request.host_url.rstrip("/"),
        protect_metrics=state.settings.protect_metrics,
    )
    return jsonify(document)
