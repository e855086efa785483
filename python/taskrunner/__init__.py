"""taskrunner: launch long-running tasks without blocking, and see how each one is doing."""

from __future__ import annotations

import atexit
import os
import sys
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

STATES: tuple[str, ...] = _core.STATES
KINDS: tuple[str, ...] = _core.KINDS
STATUS_KEYS: tuple[str, ...] = _core.STATUS_KEYS
FINAL_STATES = frozenset(STATES[2:])

register_kind(FakeTaskBlocking, "blocking")
register_kind(FakeTaskPolling, "polling")


def _stop_runners_at_exit() -> None:
    """Stops every runner and joins its threads, saying what a long wait is for.

    atexit runs while the interpreter is intact: every Rust thread is joined
    here, so that none touches Python while it finalizes. Running blocking
    tasks cannot be interrupted, so they are waited for; Ctrl-C quits at once.
    """
    try:
        running = _core._close_all()
        if _core._join_all(1.0):
            return
        tasks = "task" if running == 1 else "tasks"
        print(
            f"taskrunner: waiting for {running} running {tasks} (Ctrl-C again to quit now)",
            file=sys.stderr,
            flush=True,
        )
        _core._join_all()
    except KeyboardInterrupt:
        # Finalizing with our threads still inside Python would crash: leave now.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(130)


atexit.register(_stop_runners_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_core._after_fork_in_child)

__all__ = [
    "ALL_COMPLETED",
    "FINAL_STATES",
    "KINDS",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "STATES",
    "STATUS_KEYS",
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
