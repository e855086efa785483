"""A task's status dict as JSON: the result travels as-is when JSON can hold it."""

from __future__ import annotations

import json
from typing import Any

MAX_REPR_CHARS = 10_000


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
