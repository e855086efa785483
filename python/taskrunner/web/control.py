"""Operations on the runner as a whole: pause and resume starting tasks, and
cancel many tasks at once (``/api/pause``, ``/api/resume``, ``/api/tasks/cancel``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from taskrunner.web.audit import audited
from taskrunner.web.auth import guard
from taskrunner.web.problems import SHUTTING_DOWN, Problem, invalid_params
from taskrunner.web.state import current_state
from taskrunner.web.submission import read_json_object

control = Blueprint("taskrunner_control", __name__, url_prefix="/api")
guard(control)
audited(control)

MAX_CANCEL_IDS = 1000
MAX_ID = 2**64 - 1


def _paused() -> Response:
    return jsonify({"paused": current_state().runner.paused})


@control.post("/pause")
def pause() -> Response:
    """Stops starting tasks; running ones go on, submits are accepted. Idempotent."""
    try:
        current_state().runner.pause()
    except NotImplementedError as error:
        raise Problem(501, str(error)) from None
    except RuntimeError:
        raise Problem(503, "the task runner is shut down", type=SHUTTING_DOWN) from None
    return _paused()


@control.post("/resume")
def resume() -> Response:
    """Starts at once what waited while paused. Idempotent."""
    try:
        current_state().runner.resume()
    except NotImplementedError as error:
        raise Problem(501, str(error)) from None
    return _paused()


def _cancel_ids(body: dict[str, Any]) -> list[int]:
    """The ids of a bulk cancel, each once, in the order given.

    Raises:
        Problem: 400 naming what is wrong with the body.
    """
    reasons = {name: "is not a known field" for name in body if name != "ids"}
    ids = body.get("ids")
    if "ids" not in body:
        reasons["ids"] = "is required"
    elif not isinstance(ids, list):
        reasons["ids"] = "must be a list of task ids"
    elif not 1 <= len(ids) <= MAX_CANCEL_IDS:
        reasons["ids"] = f"must hold 1 to {MAX_CANCEL_IDS} task ids, got {len(ids)}"
    elif not all(type(id) is int and 1 <= id <= MAX_ID for id in ids):
        reasons["ids"] = "must hold task ids: whole numbers from 1"
    if reasons:
        raise invalid_params(reasons, where="body")
    return list(dict.fromkeys(ids))


@control.post("/tasks/cancel")
def cancel_tasks() -> Response:
    """Cancels several tasks; says which were cancelled and why the others were not."""
    runner = current_state().runner
    cancelled: list[int] = []
    not_cancelled: list[dict[str, Any]] = []
    for id in _cancel_ids(read_json_object(request)):
        try:
            if runner.cancel(id):
                cancelled.append(id)
                continue
            done = runner.status(id)["done"]
        except KeyError:
            not_cancelled.append({"id": id, "reason": "unknown"})
            continue
        not_cancelled.append({"id": id, "reason": "finished" if done else "running"})
    return jsonify({"cancelled": cancelled, "not_cancelled": not_cancelled})
