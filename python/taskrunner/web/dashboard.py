"""``GET /``: the live dashboard, plain HTML, CSS and JavaScript shipped in the package."""

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
