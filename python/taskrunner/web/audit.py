"""The audit trail: every change made through the API, with the name of the
token that made it (never the token itself). Logged, and with a journal,
written to it, so that it outlives the process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Optional

from flask import Blueprint, Response, g, request

from taskrunner import JournalError
from taskrunner.web.auth import ANONYMOUS, READING
from taskrunner.web.state import current_state

audit_log = logging.getLogger("taskrunner.web.audit")


def _task_ids(response: Response) -> Iterator[Optional[int]]:
    """The tasks a change touched: the one its answer names (a new task's, for a
    submit or a run again), else those it cancelled, else the path's, else none."""
    body = response.get_json(silent=True) if response.is_json else None
    in_path = (request.view_args or {}).get("task_id")
    if isinstance(body, dict) and isinstance(body.get("id"), int):
        yield body["id"]
    elif isinstance(body, dict) and isinstance(body.get("cancelled"), list):
        yield from body["cancelled"]  # several at once
    else:
        yield None if in_path is None else int(in_path)


def _record(response: Response) -> Response:
    if request.method in READING or not 200 <= response.status_code < 300:
        return response
    access = g.get("access")
    label = access.label if access is not None else ANONYMOUS
    route = f"{request.method} {request.path}"
    runner = current_state().runner
    for task_id in _task_ids(response):
        audit_log.info("%s task=%s token=%s", route, task_id, label)
        try:
            runner._audit(route, task_id, label)
        except JournalError as error:  # the change is made: say so, and go on
            audit_log.warning("not written to the journal: %s task=%s: %s", route, task_id, error)
    return response


def audited(blueprint: Blueprint) -> None:
    """Records every successful change made through ``blueprint``'s views."""
    blueprint.after_request(_record)
