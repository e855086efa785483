"""Drop-in for the original challenge's ``task_handler.py``.

Code written against the original ``TaskHandler`` keeps working when it takes
``TaskHandler`` from taskrunner: ids are ints, ``get_task_status`` is True
while the task is still running, and ``get_task_result`` is the result, or
None while the task is not done.
"""

from __future__ import annotations

from typing import Any, Optional

from taskrunner._core import registered_kind
from taskrunner.runner import TaskRunner


def is_task_polling(task: Any) -> bool:
    """True for a polling task, False for a blocking one.

    Known classes (the fake tasks, and classes given to
    ``taskrunner.register_kind``) are told apart by ``isinstance``; like the
    original, anything else raises.

    Raises:
        TypeError: when the task's kind is not known.
    """
    kind = registered_kind(task)
    if kind is None:
        raise TypeError(
            f"task type unknown: {type(task).__name__} "
            "(declare it with taskrunner.register_kind, or let the runner classify it)"
        )
    return kind == "polling"


class TaskHandler:
    """Our task handling object, now backed by a ``TaskRunner``."""

    def __init__(self, runner: Optional[TaskRunner] = None) -> None:
        self.runner = runner if runner is not None else TaskRunner()
        if type(self).get_task_status is TaskHandler.get_task_status:
            # Code written for the original loops over get_task_status for
            # every pending task: bound straight to the core, a check is one
            # Rust call, not a Python call around it. (A subclass that
            # overrides the method keeps its own.)
            self.get_task_status = self.runner.unfinished  # type: ignore[method-assign]

    def register_task(self, task: Any) -> int:
        """Starts a task at once; returns an id to track its status."""
        return self.runner.submit(task).id

    def get_task_status(self, task_id: int) -> bool:
        """True while the task is still running (or waiting to run).

        Raises:
            KeyError: for an unknown id.
        """
        return self.runner.unfinished(task_id)

    def get_task_result(self, task_id: int) -> Any:
        """The task's result, or None while it is not done (or did not succeed)."""
        return self.runner.status(task_id)["result"]
