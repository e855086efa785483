"""The HTTP API and live dashboard: ``create_app()``, served by ``python -m taskrunner serve``."""

from taskrunner.web.app import create_app
from taskrunner.web.tasktypes import default_task_types

__all__ = ["create_app", "default_task_types"]
