"""Bearer-token checking, for when the server's owner sets ``TASKRUNNER_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Optional

from taskrunner.web.problems import Problem


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
