"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the HTTP API sends is a JSON object with ``type``, ``title``,
``status`` and ``detail``. Plain HTTP errors use the type ``about:blank``
(the title is then the status's reason phrase); errors with a meaning of
their own have a relative type URI under ``/problems/`` that a client can
branch on, documented in the web docs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Optional

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

PROBLEM_MIMETYPE = "application/problem+json"

INVALID_BODY = "/problems/invalid-body"
INVALID_PARAMS = "/problems/invalid-params"
UNKNOWN_TASK = "/problems/unknown-task"
UNKNOWN_TASK_TYPE = "/problems/unknown-task-type"
NOT_CANCELLABLE = "/problems/not-cancellable"
CANNOT_RUN_AGAIN = "/problems/cannot-run-again"
TOO_MANY_UNFINISHED = "/problems/too-many-unfinished"
TOO_MANY_STREAMS = "/problems/too-many-event-streams"
SHUTTING_DOWN = "/problems/shutting-down"
JOURNAL_DEGRADED = "/problems/journal-degraded"
NOT_RECORDED = "/problems/not-recorded"
CLUSTER_UNREACHABLE = "/problems/cluster-unreachable"
COMMAND_NOT_ALLOWED = "/problems/command-not-allowed"
READ_ONLY = "/problems/read-only-token"

TITLES = {
    INVALID_BODY: "The request body is not a usable JSON object",
    INVALID_PARAMS: "Some parameters are invalid",
    UNKNOWN_TASK: "No such task",
    UNKNOWN_TASK_TYPE: "No such task type",
    NOT_CANCELLABLE: "The task cannot be cancelled",
    CANNOT_RUN_AGAIN: "The task cannot be run again",
    TOO_MANY_UNFINISHED: "Too many unfinished tasks",
    TOO_MANY_STREAMS: "Too many event streams",
    SHUTTING_DOWN: "The server is shutting down",
    JOURNAL_DEGRADED: "The journal cannot record tasks",
    NOT_RECORDED: "The task was not recorded in time",
    CLUSTER_UNREACHABLE: "The cluster's scheduler is out of reach",
    COMMAND_NOT_ALLOWED: "The program is not on the server's allow-list",
    READ_ONLY: "The token may only read",
}

logger = logging.getLogger("taskrunner.web")


class Problem(Exception):
    """An error to send as problem details; raise it from a view.

    Args:
        status: the HTTP status code.
        detail: a sentence for a person, about this occurrence.
        type: the problem type URI; ``about:blank`` for a plain HTTP error.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
        extensions: extra members of the body (``invalid_params``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "about:blank",
        headers: Optional[dict[str, str]] = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def title(self) -> str:
        return TITLES.get(self.type) or HTTPStatus(self.status).phrase

    def body(self) -> dict[str, Any]:
        """The problem details object."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }

    def to_response(self) -> Response:
        """The problem as a ``Response`` with the problem+json media type."""
        response = Response(json.dumps(self.body()), status=self.status, mimetype=PROBLEM_MIMETYPE)
        response.headers.update(self.headers)
        return response


def unknown_task(id: object) -> Problem:
    """The 404 for an id (or the text in its place) that names no task."""
    return Problem(404, f"no task with id {id!r}", type=UNKNOWN_TASK)


def invalid_params(reasons: dict[str, str], *, where: str = "request") -> Problem:
    """A 400 naming each bad parameter and what is wrong with it."""
    names = ", ".join(sorted(reasons))
    return Problem(
        400,
        f"invalid {where} parameter(s): {names}",
        type=INVALID_PARAMS,
        invalid_params=[{"name": name, "reason": reason} for name, reason in reasons.items()],
    )


def _from_http_exception(error: HTTPException) -> Response:
    # Keep the headers Werkzeug sets (Allow on a 405), not its HTML body.
    headers = {
        key: value
        for key, value in error.get_headers()
        if key.lower() not in ("content-type", "content-length")
    }
    status = error.code or 500
    detail = error.description or HTTPStatus(status).phrase
    return Problem(status, detail, headers=headers).to_response()


def _from_unexpected(error: Exception) -> Response:
    logger.exception("unhandled error while serving a request", exc_info=error)
    return Problem(500, "the server failed to handle the request; see its log").to_response()


def register_problem_handlers(app: Flask) -> None:
    """Makes every error of ``app`` (raised ``Problem``, HTTP error, crash) problem+json."""
    app.register_error_handler(Problem, lambda problem: problem.to_response())
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(Exception, _from_unexpected)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
NOT_FAILURES = (KeyboardInterrupt, SystemExit, GeneratorExit)


def contain_base_exceptions(wsgi_app: WSGIApp) -> WSGIApp:
    """Wraps a WSGI app so that a ``BaseException`` from a view is a 500 too.

    Flask turns only ``Exception`` into an error response. A panic in the
    Rust core reaches Python as pyo3's ``PanicException``, a
    ``BaseException``; past Flask, waitress logs it and leaves the client
    waiting for an answer that never comes.
    """

    def contained(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return wsgi_app(environ, start_response)
        except NOT_FAILURES:
            raise
        except BaseException as error:
            logger.error("unhandled error while serving a request", exc_info=error)
            problem = Problem(500, "the server failed to handle the request; see its log")
            return problem.to_response()(environ, start_response)

    return contained
