"""``GET /``: the live dashboard, and ``GET /tasks/<id>``: a task's own page; plain HTML,
CSS and JavaScript shipped in the package."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"

dashboard = Blueprint(
    "taskrunner_dashboard", __name__, static_folder=STATIC, static_url_path="/static"
)

# The page loads nothing from elsewhere and runs no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dashboard.after_request
def _lock_down(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@dashboard.get("/")
def index() -> Response:
    """The dashboard page."""
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@dashboard.get("/tasks/<task_id>")
def task_page(task_id: str) -> Response:
    """A task's own page: the same HTML for every id, whose script reads the id
    from the path and says so when there is no such task.

    It answers 200 whatever the id: the page needs no token (the API behind it
    does), so its status must not tell who has none which tasks exist.
    """
    response = send_from_directory(STATIC, "task.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response
