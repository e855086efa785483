"""Reading and checking the body of ``POST /api/tasks``."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from flask import Request

from taskrunner import Retry
from taskrunner.web.problems import INVALID_BODY, Problem, invalid_params

# The scheduling options of TaskRunner.submit a client may send.
SCHEDULING = ("retries", "delay", "not_before", "priority", "after", "limit")
FIELDS = ("type", "input", "wait", "timeout", "name", *SCHEDULING)
REQUIRED = ("type", "input")
MAX_NAME_CHARS = 200
MAX_LABEL_CHARS = 200
# Python's own bound on int <-> text conversion (3.11 and later): a longer
# number could not even be sent back.
MAX_INT_DIGITS = 4300
MAX_WAIT_SECONDS = 86_400.0
# A year: far beyond any task kept in memory, and far below what the
# runner's clock can add without overflowing.
MAX_TIMEOUT_SECONDS = 365 * 86_400.0
# The core's bounds: a start at most a year ahead, a 32-bit priority, an
# unsigned 32-bit count of attempts, back-offs of at most a day.
MAX_DELAY_SECONDS = 365 * 86_400.0
MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1
MAX_ATTEMPTS = 2**32 - 1
MAX_BACKOFF_SECONDS = 86_400.0
MAX_TASK_ID = 2**64 - 1
RETRY_FIELDS = ("attempts", "backoff", "max_backoff", "jitter")

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
    retries: Union[int, Retry, None] = None
    delay: Optional[float] = None
    not_before: Optional[float] = None
    priority: int = 0
    after: list[int] = field(default_factory=list)
    limit: Optional[str] = None

    def scheduling(self) -> dict[str, Any]:
        """The scheduling options given, as keyword arguments of ``TaskRunner.submit``."""
        options = {
            "retries": self.retries,
            "delay": self.delay,
            "not_before": self.not_before,
            "priority": self.priority or None,
            "after": self.after or None,
            "limit": self.limit,
        }
        return {name: value for name, value in options.items() if value is not None}


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


def whole_number(value: Any, low: int, high: int) -> Optional[int]:
    """``value`` as an int in [low, high] (2.0 counts as 2, as in JSON Schema), else None."""
    if not _is_number(value) or (isinstance(value, float) and not value.is_integer()):
        return None
    number = int(value)
    return number if low <= number <= high else None


def _check_seconds(value: Any, high: float) -> bool:
    return _is_number(value) and 0 <= value <= high


def _unknown_retry_field(name: str) -> str:
    if name == "on":
        # Exception classes cannot come from a client: over HTTP, any Exception is retried.
        return "on cannot be sent over HTTP: every Exception is retried"
    return f"{name} is not a field of a retry policy"


def _check_retry(value: dict[str, Any]) -> Optional[str]:
    problems = [_unknown_retry_field(name) for name in value if name not in RETRY_FIELDS]
    if whole_number(value.get("attempts"), 1, MAX_ATTEMPTS) is None:
        problems.append(f"attempts must be a whole number from 1 to {MAX_ATTEMPTS} (every run)")
    for name in ("backoff", "max_backoff"):
        if name in value and not _check_seconds(value[name], MAX_BACKOFF_SECONDS):
            problems.append(f"{name} must be seconds from 0 to {MAX_BACKOFF_SECONDS:g}")
    if "jitter" in value and not isinstance(value["jitter"], bool):
        problems.append("jitter must be true or false")
    if not problems:
        try:
            _retry(value)
        except ValueError as error:  # max_backoff below backoff: the core says so
            problems.append(str(error))
    return "; ".join(problems) or None


def _check_retries(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, dict):
        return _check_retry(value)
    if whole_number(value, 0, MAX_ATTEMPTS - 1) is None:
        return (
            f"must be null, a number of retries from 0 to {MAX_ATTEMPTS - 1}, or an object "
            '{"attempts", "backoff", "max_backoff", "jitter"}'
        )
    return None


def _check_delay(value: Any) -> Optional[str]:
    if value is None or _check_seconds(value, MAX_DELAY_SECONDS):
        return None
    return f"must be null or a number of seconds from 0 to {MAX_DELAY_SECONDS:g}"


def _check_not_before(value: Any) -> Optional[str]:
    if value is None or _check_seconds(value, time.time() + MAX_DELAY_SECONDS):
        return None
    return "must be null or a time in Unix seconds, >= 0 and at most a year from now"


def _check_priority(value: Any) -> Optional[str]:
    if value is None or whole_number(value, MIN_PRIORITY, MAX_PRIORITY) is not None:
        return None
    return f"must be null or a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}"


def _check_after(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, list) or any(whole_number(id, 1, MAX_TASK_ID) is None for id in value):
        return "must be null or a list of task ids"
    return None


def is_label(value: Any) -> bool:
    """A limit's label: 1 to 200 characters."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_LABEL_CHARS


def _check_limit(value: Any) -> Optional[str]:
    if value is None or is_label(value):
        return None
    return f"must be null or the label of a limit (1 to {MAX_LABEL_CHARS} characters)"


CHECKS = {
    "type": _check_type,
    "wait": _check_wait,
    "timeout": _check_timeout,
    "name": _check_name,
    "retries": _check_retries,
    "delay": _check_delay,
    "not_before": _check_not_before,
    "priority": _check_priority,
    "after": _check_after,
    "limit": _check_limit,
}


def _retry(value: dict[str, Any]) -> Retry:
    options = {name: value[name] for name in ("backoff", "max_backoff", "jitter") if name in value}
    return Retry(int(value["attempts"]), **options)


def _given(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a checked body, null ones left out, in the types ``submit`` takes."""
    # A null input is an input like any other; a null option is no option.
    given = {
        name: body[name]
        for name in FIELDS
        if name in body and (name == "input" or body[name] is not None)
    }
    retries = given.get("retries")
    if isinstance(retries, dict):
        given["retries"] = _retry(retries)
    elif retries is not None:
        given["retries"] = int(retries)
    if "priority" in given:
        given["priority"] = int(given["priority"])
    if "after" in given:
        given["after"] = [int(id) for id in given["after"]]
    return given


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
    if body.get("delay") is not None and body.get("not_before") is not None:
        reasons.setdefault("not_before", "give delay or not_before, not both")
    if reasons:
        raise invalid_params(reasons, where="body")
    return Submission(**_given(body))
