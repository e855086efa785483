"""Reading and checking the body of ``POST /api/tasks``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from flask import Request

from taskrunner.web.problems import INVALID_BODY, Problem, invalid_params

FIELDS = ("type", "input", "wait", "timeout", "name")
REQUIRED = ("type", "input")
MAX_NAME_CHARS = 200
# Python's own bound on int <-> text conversion (3.11 and later): a longer
# number could not even be sent back.
MAX_INT_DIGITS = 4300
MAX_WAIT_SECONDS = 86_400.0
# A year: far beyond any task kept in memory, and far below what the
# runner's clock can add without overflowing.
MAX_TIMEOUT_SECONDS = 365 * 86_400.0

IDEMPOTENCY_KEY = "Idempotency-Key"
# Set on the answer to a repeat: the task is the one the key first made.
REPLAYED = "Idempotent-Replayed"
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Submission:
    """A checked request to start a task."""

    type: str
    input: Any
    wait: Optional[float] = None
    timeout: Optional[float] = None
    name: Optional[str] = None


def is_idempotency_key(value: str) -> bool:
    """1 to 255 printable ASCII characters (space included), as sent."""
    return 1 <= len(value) <= MAX_KEY_CHARS and all(" " <= c <= "~" for c in value)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e309 would otherwise become inf
        raise ValueError(f"the number {text} is too large")
    return number


def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        Problem: 415 for a body declared as something other than JSON; 400 for
            an empty body, bytes that are not UTF-8, bad JSON (NaN and Infinity
            included), a number beyond a float or of over 4300 digits, or JSON
            that is not an object. (Werkzeug raises 413 for a body over
            ``MAX_CONTENT_LENGTH``.)
    """
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Problem(415, f"send the body as application/json, not {mimetype}")
    data = request.get_data(cache=False)
    if not data.strip():
        raise Problem(400, "the body is empty; send a JSON object", type=INVALID_BODY)
    try:
        # Strict UTF-8: json.loads would take bytes in UTF-16 or 32, and
        # encoded surrogates, which are not UTF-8.
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Problem(400, f"the body is not UTF-8: {error}", type=INVALID_BODY) from None
    try:
        body = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except (ValueError, RecursionError) as error:
        raise Problem(400, f"the body is not valid JSON: {error}", type=INVALID_BODY) from None
    if not isinstance(body, dict):
        raise Problem(
            400, f"the body must be a JSON object, not {type(body).__name__}", type=INVALID_BODY
        )
    return body


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_wait(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not _is_number(value) or not 0 <= value <= MAX_WAIT_SECONDS:
        return f"must be null or a number of seconds from 0 to {MAX_WAIT_SECONDS:g}"
    return None


def _check_timeout(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not _is_number(value) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        return f"must be null or a number of seconds > 0 and at most {MAX_TIMEOUT_SECONDS:g}"
    return None


def _check_name(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_CHARS:
        return f"must be null or a string of 1 to {MAX_NAME_CHARS} characters"
    return None


def _check_type(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value:
        return "must be the name of a task type"
    return None


CHECKS = {"type": _check_type, "wait": _check_wait, "timeout": _check_timeout, "name": _check_name}


def parse_submission(body: dict[str, Any]) -> Submission:
    """Checks every field of a submission at once.

    Raises:
        Problem: 400 naming each missing, unknown or invalid field.
    """
    reasons = {name: "is required" for name in REQUIRED if name not in body}
    reasons.update({name: "is not a known field" for name in body if name not in FIELDS})
    for name, check in CHECKS.items():
        if name in body and (reason := check(body[name])) is not None:
            reasons[name] = reason
    if reasons:
        raise invalid_params(reasons, where="body")
    return Submission(**{name: body[name] for name in FIELDS if name in body})
