"""Limits over HTTP: their JSON form, checking one a client sends, and the
``LABEL=N`` / ``LABEL=COUNT/PER`` text of the server's ``limits`` setting."""

from __future__ import annotations

import re
from typing import Any, Union

from taskrunner import Rate
from taskrunner.web.submission import is_label, whole_number

Limit = Union[int, Rate]

# The core keeps a concurrency limit and a rate's count in a signed 64-bit int.
MAX_LIMIT = 2**63 - 1
# The core's longest rate window: a day.
MAX_PER_SECONDS = 86_400.0
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
SETTING_FORM = "LABEL=N or LABEL=COUNT/PER (gpu=2, api=100/1s, mail=10/5m)"
_PER = re.compile(r"^(\d+)/(\d*\.?\d*)([smh])$")


def limit_json(limit: Limit) -> Union[int, dict[str, Any]]:
    """A concurrency limit as its number, a ``Rate`` as ``{"count", "per"}``."""
    if isinstance(limit, Rate):
        return {"count": limit.count, "per": limit.per}
    return limit


def limit_text(limit: Limit) -> str:
    """A limit as the setting writes it: ``2``, or ``100/1s`` for a ``Rate``."""
    if isinstance(limit, Rate):
        return f"{limit.count}/{limit.per:g}s"
    return str(limit)


def limit_entries(limits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``runner.limits()`` as a list of ``{"label", "limit", "running", "waiting"}``, by label."""
    return [
        {
            "label": label,
            "limit": limit_json(entry["limit"]),
            "running": entry["running"],
            "waiting": entry["waiting"],
        }
        for label, entry in sorted(limits.items())
    ]


def read_limit(value: Any) -> Limit:
    """A limit a client sent: a whole number of tasks at once, or ``{"count", "per"}``.

    Raises:
        ValueError: saying what a limit must be.
    """
    if isinstance(value, dict):
        count = whole_number(value.get("count"), 1, MAX_LIMIT)
        per = value.get("per")
        fine = (
            set(value) == {"count", "per"}
            and count is not None
            and isinstance(per, (int, float))
            and not isinstance(per, bool)
            and 0 < per <= MAX_PER_SECONDS
        )
        if not fine:
            raise ValueError(
                f'a rate must be {{"count": 1 to {MAX_LIMIT}, '
                f'"per": seconds > 0 and at most {MAX_PER_SECONDS:g}}}'
            )
        return Rate(count, per=float(per))
    number = whole_number(value, 0, MAX_LIMIT)
    if number is None:
        raise ValueError(
            f"must be a whole number of tasks at once (0 to {MAX_LIMIT}; 0 holds them all), "
            'or a rate {"count", "per"}'
        )
    return number


def _setting_limit(text: str) -> Limit:
    if text.isascii() and text.isdigit():
        return read_limit(int(text))
    match = _PER.match(text)
    if match is None or match[2] in (".",):
        raise ValueError
    count, per, unit = int(match[1]), float(match[2] or 1), UNIT_SECONDS[match[3]]
    return read_limit({"count": count, "per": per * unit})


def parse_limits(text: str) -> dict[str, Limit]:
    """The limits of the ``limits`` setting: ``LABEL=LIMIT`` items, separated by commas
    or whitespace; a later item for a label wins.

    Raises:
        ValueError: naming the first item that is not ``LABEL=N`` or ``LABEL=COUNT/PER``.
    """
    limits: dict[str, Limit] = {}
    for item in text.replace(",", " ").split():
        label, equals, value = item.partition("=")
        try:
            if not equals or not is_label(label):
                raise ValueError
            limits[label] = _setting_limit(value)
        except ValueError:
            raise ValueError(f"the limit {item!r} is not {SETTING_FORM}") from None
    return limits
