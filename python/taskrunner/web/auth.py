"""Bearer tokens, for when the server's owner sets ``TASKRUNNER_TOKEN``: checking one,
and guarding the views of a blueprint with it."""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import Optional

from flask import Blueprint, Response, request

from taskrunner.web.problems import Problem
from taskrunner.web.state import current_state


def check_bearer(authorization: Optional[str], token: Optional[str]) -> None:
    """Passes when no token is set, or ``authorization`` is ``Bearer <token>``.

    Raises:
        Problem: 401, with a ``WWW-Authenticate`` challenge, otherwise.
    """
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return
    error = ', error="invalid_token"' if authorization else ""
    raise Problem(
        401,
        "this server needs an Authorization: Bearer <token> header"
        if not authorization
        else "the bearer token is wrong",
        headers={"WWW-Authenticate": f'Bearer realm="taskrunner"{error}'},
    )


def _never_cache(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def guard(blueprint: Blueprint, public: Collection[str] = ()) -> None:
    """Every view of ``blueprint`` needs the token (but the ``public`` ones) and is never cached.

    Args:
        blueprint: the blueprint to guard.
        public: names of its view functions that need no token.
    """
    public_endpoints = {f"{blueprint.name}.{name}" for name in public}

    @blueprint.before_request
    def _authenticate() -> None:
        if request.endpoint not in public_endpoints:
            check_bearer(request.headers.get("Authorization"), current_state().settings.token)

    blueprint.after_request(_never_cache)
