"""The HTTP API and live dashboard: ``create_app()``, served by ``python -m taskrunner serve``."""

from taskrunner.web.app import create_app
from taskrunner.web.commands import command_task_type
from taskrunner.web.tasktypes import FAKE_TASK_TYPES, TaskType, default_task_types

__all__ = [
    "FAKE_TASK_TYPES",
    "TaskType",
    "command_task_type",
    "create_app",
    "default_task_types",
]
