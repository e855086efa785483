"""JSON out of the API: a task's result travels as-is when JSON can hold it,
and text that UTF-8 cannot hold travels escaped."""

from __future__ import annotations

import json
import re
from typing import Any

from flask.json.provider import DefaultJSONProvider

MAX_REPR_CHARS = 10_000
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, readable (keys in order, text unescaped) and always UTF-8 safe.

    A lone surrogate (``"\\ud800"`` in a client's JSON, or a file name a task
    decoded with ``surrogateescape``) is a ``str`` in Python but has no UTF-8
    form: left raw, encoding the response would fail after the work was done.
    It can only appear inside a JSON string, where its ``\\u`` escape means
    the same, so it is sent escaped.
    """

    sort_keys = False  # keep the status dict in its documented order
    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return LONE_SURROGATE.sub(_escape, super().dumps(obj, **kwargs))


def _fits_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as error:  # a broken __repr__ must not break the API
        return f"<{type(value).__name__} object; repr failed: {error!r}>"
    if len(text) > MAX_REPR_CHARS:
        return text[:MAX_REPR_CHARS] + "…"
    return text


def task_json(status: dict[str, Any]) -> dict[str, Any]:
    """The status dict made JSON-safe, with ``result_is_repr`` added.

    A result that JSON cannot hold (an arbitrary object, NaN, a set) is sent
    as its ``repr()`` string and ``result_is_repr`` is true, so a client can
    tell it from a result that really is a string.
    """
    body: dict[str, Any] = {}
    for key, value in status.items():
        body[key] = value
        if key == "result":
            body["result_is_repr"] = not _fits_json(value)
            if body["result_is_repr"]:
                body["result"] = _safe_repr(value)
    return body
