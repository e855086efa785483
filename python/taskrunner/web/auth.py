"""Who may do what: the bearer tokens of ``TASKRUNNER_TOKEN`` (everything) and
``TASKRUNNER_READ_TOKEN`` (reading only), checked on every guarded view.

A request is a change unless its method is GET, HEAD or OPTIONS; the API has
no GET that changes anything, and a test holds every other operation of the
OpenAPI document to a 403 for the read token.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import NamedTuple, Optional

from flask import Blueprint, Response, g, request

from taskrunner.web.problems import READ_ONLY, Problem
from taskrunner.web.settings import Settings
from taskrunner.web.state import current_state

READING = frozenset({"GET", "HEAD", "OPTIONS"})
# The audit's name for requests on a server with no token.
ANONYMOUS = "anonymous"


class Access(NamedTuple):
    """What a request's credentials allow, and the name the audit log gives them."""

    label: str
    can_change: bool


def access_of(authorization: Optional[str], settings: Settings) -> Access:
    """The access that an ``Authorization`` header gives on a server with ``settings``.

    Raises:
        Problem: 401, with a ``WWW-Authenticate`` challenge, when a token is
            set and the header carries neither.
    """
    if settings.token is None:
        return Access(ANONYMOUS, True)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        given_bytes = given.strip().encode()
        # Both compared every time, so that timing tells nothing of which is near.
        full = hmac.compare_digest(given_bytes, settings.token.encode())
        read = settings.read_token is not None and hmac.compare_digest(
            given_bytes, settings.read_token.encode()
        )
        if full:
            return Access(settings.token_label, True)
        if read:
            return Access(settings.read_token_label, False)
    error = ', error="invalid_token"' if authorization else ""
    raise Problem(
        401,
        "this server needs an Authorization: Bearer <token> header"
        if not authorization
        else "the bearer token is wrong",
        headers={"WWW-Authenticate": f'Bearer realm="taskrunner"{error}'},
    )


def check_bearer(authorization: Optional[str], settings: Settings) -> Access:
    """The request's access, refused when it asks for a change its token may not make.

    Raises:
        Problem: 401 without a valid token (when one is set); 403 for a
            change asked with the read token.
    """
    access = access_of(authorization, settings)
    if not access.can_change and request.method not in READING:
        raise Problem(
            403,
            f"the token {access.label!r} may only read; this {request.method} changes "
            "something and needs the server's full token",
            type=READ_ONLY,
        )
    return access


def _never_cache(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def guard(
    blueprint: Blueprint, public: Collection[str] = (), metrics: Collection[str] = ()
) -> None:
    """Every view of ``blueprint`` needs a token when one is set, and is never cached.

    The access a request had is ``flask.g.access`` afterwards, for the audit.

    Args:
        blueprint: the blueprint to guard.
        public: names of its view functions that need no token.
        metrics: names of its view functions that need a token only with
            ``TASKRUNNER_PROTECT_METRICS``.
    """
    public_endpoints = {f"{blueprint.name}.{name}" for name in public}
    metrics_endpoints = {f"{blueprint.name}.{name}" for name in metrics}

    @blueprint.before_request
    def _authenticate() -> None:
        settings = current_state().settings
        open_view = request.endpoint in public_endpoints or (
            request.endpoint in metrics_endpoints and not settings.protect_metrics
        )
        if not open_view:
            g.access = check_bearer(request.headers.get("Authorization"), settings)

    blueprint.after_request(_never_cache)
