"""taskrunner: launch long-running tasks without blocking, and see how each one is doing."""

from __future__ import annotations

import atexit
import os
from concurrent.futures import CancelledError

from taskrunner import _core
from taskrunner._core import PollPolicy, TaskHandle, TaskTimeoutError, register_kind
from taskrunner.executor import Executor
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling
from taskrunner.handler import TaskHandler, is_task_polling
from taskrunner.runner import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    DoneAndNotDone,
    TaskRunner,
)

STATES = ("pending", "running", "succeeded", "failed", "cancelled", "timed_out")
FINAL_STATES = frozenset(STATES[2:])

register_kind(FakeTaskBlocking, "blocking")
register_kind(FakeTaskPolling, "polling")

# atexit runs while the interpreter is intact: stop and join every Rust thread
# there, so that none touches Python while it finalizes.
atexit.register(_core._shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_core._after_fork_in_child)

__all__ = [
    "ALL_COMPLETED",
    "FINAL_STATES",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "STATES",
    "CancelledError",
    "DoneAndNotDone",
    "Executor",
    "PollPolicy",
    "TaskHandle",
    "TaskHandler",
    "TaskRunner",
    "TaskTimeoutError",
    "is_task_polling",
    "register_kind",
]
