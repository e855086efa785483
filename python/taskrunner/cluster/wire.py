"""What travels between a runner and its cluster workers, and how it is packed.

Tasks, results and exceptions travel as cloudpickle bytes; everything around
them is plain lists of ints, strings and bytes, so that a batch of updates is
a msgpack-able Dask event.
"""

from __future__ import annotations

import functools
import pickle
import sys
import traceback
from typing import Any, Optional

import cloudpickle
from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES as _BY_VALUE

# A submission: [id, attempt, task (Packed bytes, or (group, index) in the
# batch's groups of plain tasks), kind or None, name, poll policy as
# (min_interval, max_interval, ratio, errors) or None]. A batch: {"submissions": [...],
# "groups": [pickled list of plain tasks of one class, ...]}.
# A start: [id, attempt, kind or None, worker address].
# An end: [id, attempt, kind or None, state, result (PLAIN, Packed) or None, error or None,
# polls],
# the error [type, message, traceback, exception bytes or None].
Submission = list
Start = list
End = list


# Results of these types travel as they are, inside their batch's pickle:
# any Python can read them back.
PLAIN = frozenset({int, float, str, bool, type(None)})


class Packed(bytes):
    """A task or result pickled on its own, so that one the other side cannot
    unpickle fails its task alone, not the whole batch."""


class RemoteTaskError(RuntimeError):
    """A task's exception that could not be brought back from its worker as itself."""


def pack_task(task: Any) -> Any:
    """A task ready for the trip to a worker: its bytes (`Packed`), or the
    task itself when it is plain (see `is_plain`), to be pickled with the
    other tasks of its class in its batch (`pack_tasks`).

    Raises:
        TypeError: when the task cannot be pickled, saying why.
    """
    if _plain.get(type(task)) and is_plain(task):
        return task
    try:
        data = pack_value(task)
    except Exception as exc:
        raise TypeError(
            f"a task for a cluster must be picklable (cloudpickle), and this "
            f"{type(task).__qualname__} is not: {type(exc).__name__}: {exc}"
        ) from exc
    if type(task) not in _plain:
        _plain[type(task)] = _plain_class(type(task))
    return Packed(data)


# Pickling one task at a time costs the C pickler an import of its class's
# module each time (most of its 5 us); a batch's tasks of one class pickle in
# one call, the class named once. A task is pickled so late only when it
# cannot fail: its class is importable and pickles the default way, and its
# attributes are values of these types.
PRIMITIVE = frozenset({int, float, complex, str, bytes, bool, type(None)})
_plain: dict[type, bool] = {}  # class -> whether its instances can be plain
_DEFAULT_GETSTATE = getattr(object, "__getstate__", None)


def is_plain(task: Any) -> bool:
    state = getattr(task, "__dict__", None)
    return (
        state is not None
        and not _BY_VALUE
        and all(type(value) in PRIMITIVE for value in state.values())
    )


def _plain_class(cls: type) -> bool:
    module = sys.modules.get(cls.__module__ or "")
    try:
        named = functools.reduce(getattr, cls.__qualname__.split("."), module)
    except AttributeError:
        return False
    return (
        module is not None
        and cls.__module__ != "__main__"
        and "<locals>" not in cls.__qualname__
        and named is cls
        and cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and getattr(cls, "__getstate__", None) in (None, _DEFAULT_GETSTATE)
        and not any("__slots__" in vars(base) for base in cls.__mro__)
    )


def pack_tasks(submissions: list[list]) -> tuple[list[list], list[bytes]]:
    """A batch's plain tasks pickled by class: each submission's task becomes
    its place ``(group, index)`` in the returned groups."""
    groups: dict[type, list] = {}
    places: dict[type, int] = {}
    for submission in submissions:
        task = submission[2]
        if not isinstance(task, Packed):
            group = groups.setdefault(type(task), [])
            place = places.setdefault(type(task), len(places))
            submission[2] = (place, len(group))
            group.append(task)
    packed = [pickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL) for group in groups.values()]
    return submissions, packed


def unpack_tasks(groups: list[bytes]) -> list[Any]:
    """Each group's tasks, or the exception that unpickling it raised."""
    unpacked: list[Any] = []
    for data in groups:
        try:
            unpacked.append(pickle.loads(data))
        except Exception as exc:
            unpacked.append(exc)
    return unpacked


def task_of(data: Any, groups: list[Any]) -> Any:
    """A submission's task: unpickled, or from its group; raises what failed."""
    if isinstance(data, Packed):
        return unpack(data)
    group = groups[data[0]]
    if isinstance(group, BaseException):
        raise group
    return group[data[1]]


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
