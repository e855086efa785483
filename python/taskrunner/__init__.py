"""taskrunner: launch long-running tasks without blocking, and see how each one is doing."""

from __future__ import annotations

import atexit
import os
import sys
from concurrent.futures import CancelledError

from taskrunner import _core, tasks
from taskrunner._core import (
    JournalError,
    JournalView,
    PollPolicy,
    Rate,
    Retry,
    TaskHandle,
    TaskLost,
    TaskTimeoutError,
    register_kind,
)
from taskrunner.cluster import ClusterUnreachable
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
from taskrunner.status import Attempt, ErrorInfo, RunnerStats, TaskStatus, Timeline, TimelineEvent

__version__: str = _core.__version__
STATES: tuple[str, ...] = _core.STATES
KINDS: tuple[str, ...] = _core.KINDS
STATUS_KEYS: tuple[str, ...] = _core.STATUS_KEYS
STATS_KEYS: tuple[str, ...] = _core.STATS_KEYS
FINAL_STATES = frozenset(STATES[2:])

register_kind(FakeTaskBlocking, "blocking")
register_kind(FakeTaskPolling, "polling")
register_kind(tasks.SubprocessTask, "polling")
register_kind(tasks.FutureTask, "polling")
register_kind(tasks.CallableTask, "blocking")


def _stop_runners_at_exit() -> None:
    """Stops every runner and joins its threads, saying what a long wait is for.

    atexit runs while the interpreter is intact: every Rust thread is joined
    here, so that none touches Python while it finalizes. Running blocking
    tasks cannot be interrupted, so they are waited for; after a second of it
    a line on stderr says so, and Ctrl-C quits at once with status 130.
    """
    import signal

    try:
        _core._close_all()
        if _core._join_all(1.0):
            return
        # Count again: some may have ended during that second (closing twice is harmless).
        running = _core._close_all()
        if running:
            tasks = "task" if running == 1 else "tasks"
            hint = ""
            # Only promise what Ctrl-C will do: a program may have set its own handler.
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                # After an uncaught KeyboardInterrupt, Ctrl-C was pressed once already.
                interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
                hint = f" (Ctrl-C{' again' if interrupted else ''} to quit now)"
            print(
                f"taskrunner: waiting for {running} running {tasks}{hint}",
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


# atexit runs last in, first out: this runs before the hook taskrunner.tasks
# registered at its import, which finishes off what the runners' cancels began.
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
    "STATS_KEYS",
    "STATUS_KEYS",
    "Attempt",
    "CancelledError",
    "ClusterUnreachable",
    "DoneAndNotDone",
    "ErrorInfo",
    "Executor",
    "JournalError",
    "JournalView",
    "PollPolicy",
    "Rate",
    "Retry",
    "RunnerStats",
    "TaskHandle",
    "TaskHandler",
    "TaskLost",
    "TaskRunner",
    "TaskStatus",
    "TaskTimeoutError",
    "Timeline",
    "TimelineEvent",
    "is_task_polling",
    "register_kind",
    "tasks",
]
