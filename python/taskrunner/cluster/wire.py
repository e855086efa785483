"""What travels between a runner and its cluster workers, and how it is packed.

Tasks, results and exceptions travel as cloudpickle bytes; everything around
them is plain lists of ints, strings and bytes, so that a batch of updates is
a msgpack-able Dask event.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any, Optional

import cloudpickle
from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES as _BY_VALUE

# A submission: [id, attempt, task bytes, kind or None, name,
# poll policy as (min_interval, max_interval, ratio) or None].
# A start: [id, attempt, kind or None, worker address].
# An end: [id, attempt, kind or None, state, result (PLAIN, Packed) or None, error or None],
# the error [type, message, traceback, exception bytes or None].
Submission = list
Start = list
End = list


# Results of these types travel as they are, inside their batch's pickle:
# any Python can read them back.
PLAIN = frozenset({int, float, str, bool, type(None)})


class Packed(bytes):
    """A result pickled on its own, so that one the client cannot unpickle
    fails its task alone, not the whole batch."""


class RemoteTaskError(RuntimeError):
    """A task's exception that could not be brought back from its worker as itself."""


def pack_task(task: Any) -> bytes:
    """A task's bytes for the trip to a worker.

    Raises:
        TypeError: when the task cannot be pickled, saying why.
    """
    try:
        return pack_value(task)
    except Exception as exc:
        raise TypeError(
            f"a task for a cluster must be picklable (cloudpickle), and this "
            f"{type(task).__qualname__} is not: {type(exc).__name__}: {exc}"
        ) from exc


def unpack(data: bytes) -> Any:
    return cloudpickle.loads(data)


def pack_value(value: Any) -> bytes:
    """A task, result or exception as bytes; raises what pickling raised."""
    # The C pickler is four times faster, and makes the same bytes as
    # cloudpickle for objects of importable classes. It names everything by
    # reference, so its bytes are kept only when nothing refers to __main__
    # (which the other side may not have) and no module was registered with
    # cloudpickle to travel by value; anything else goes through cloudpickle.
    if not _BY_VALUE:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            pass
        else:
            if b"__main__" not in data:
                return data
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def pack_error(exc: BaseException, trace: Optional[str] = None) -> list:
    """An exception as [type, message, traceback, exception bytes or None]."""
    if trace is None:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data: Optional[bytes] = pack_value(exc)
    except Exception:
        data = None
    return [type(exc).__qualname__, str(exc), trace, data]


def unpack_error(error: list, worker: str) -> tuple[str, str, str, BaseException]:
    """The error tuple `Runner._finished_elsewhere` takes, from its packed form.

    The exception is the task's own where it can be unpickled here, else a
    `RemoteTaskError` naming it; either way it carries the remote traceback
    as a note, so that ``result()`` shows where the task failed.
    """
    type_name, message, trace, data = error
    exc: Optional[BaseException] = None
    if data is not None:
        try:
            exc = unpack(data)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteTaskError(f"{type_name}: {message}")
    if hasattr(exc, "add_note"):
        exc.add_note(f"Raised on cluster worker {worker}:\n{trace}")
    return type_name, message, trace, exc
