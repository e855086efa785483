"""The core API: ``TaskRunner``, in the manner of ``concurrent.futures``."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Optional, Union

from taskrunner._core import Runner, TaskHandle
from taskrunner.cluster import DEFAULT_GRACE, DEFAULT_MAX_ATTEMPTS

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"

TaskRef = Union[int, TaskHandle]


class DoneAndNotDone(NamedTuple):
    done: set[int]
    not_done: set[int]


def _refs(tasks: Optional[Iterable[TaskRef]]) -> Optional[list[TaskRef]]:
    """``tasks`` checked: ids and handles (a handle keeps its task's record, so
    waiting on it works even after the task is forgotten)."""
    if tasks is None:
        return None
    refs: list[TaskRef] = []
    for task in tasks:
        if isinstance(task, TaskHandle):
            refs.append(task)
        elif isinstance(task, int) and not isinstance(task, bool):
            if not 0 <= task < 2**64:
                raise KeyError(f"no task with id {task}")
            refs.append(task)
        else:
            raise TypeError(f"expected a task id or TaskHandle, got {task!r}")
    return refs


class TaskRunner(Runner):
    """Runs task objects (``run()`` / ``get_output()``) without blocking the caller.

    Blocking tasks run on an elastic pool of Rust threads (at most
    ``max_workers``, default 256, each leaving after ``keep_alive`` idle
    seconds); polling tasks are polled by one Rust thread by the back-off
    ``poll`` policy, with all polled tasks together kept under
    ``max_poll_rate`` calls of ``get_output()`` per second.

    Args:
        max_workers: the most worker threads for blocking tasks.
        poll: the default ``PollPolicy`` of polling tasks.
        max_poll_rate: the poll budget, in ``get_output()`` calls per second.
        keep_alive: seconds an idle worker waits for work before it exits.
        retain_finished: how many finished records to keep (None: all); the
            oldest finished ones beyond it are forgotten.
        retain_seconds: how long to keep a finished record (None: forever).
        run_pending_at_exit: at interpreter exit, run queued tasks instead of
            cancelling them.
        cluster: run the tasks on a Dask cluster instead of in this process:
            a ``distributed.Client``, a scheduler address, or ``"local"`` (a
            ``LocalCluster`` of worker processes, closed at shutdown). Needs
            the ``[dask]`` extra.
        max_attempts: with a cluster, how many times a task runs at most when
            the workers running it are lost.
        cluster_grace: with a cluster, the seconds its scheduler may be out of
            reach before the unfinished tasks fail (submits are refused with
            ``ClusterUnreachable`` meanwhile).

    Raises:
        ValueError: for a parameter out of range.
        TypeError: for a ``cluster`` that is none of the above.
    """

    def __new__(
        cls,
        *args: Any,
        cluster: Any = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        cluster_grace: float = DEFAULT_GRACE,
        **kwargs: Any,
    ):
        # With a cluster, the tasks a journal recovers wait for it to run them.
        return super().__new__(cls, *args, _recover_elsewhere=cluster is not None, **kwargs)

    def __init__(
        self,
        *args: Any,
        cluster: Any = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        cluster_grace: float = DEFAULT_GRACE,
        **kwargs: Any,
    ):
        self._cluster = None
        if cluster is None:
            return
        from taskrunner.cluster import connect

        self._cluster = connect(self, cluster, max_attempts=max_attempts, grace=cluster_grace)
        # Shadows the core's methods on this instance alone, so that a local
        # runner's submit pays nothing for the cluster's existence.
        self.submit = self._cluster.submit  # type: ignore[method-assign]

    @property
    def cluster(self) -> Any:
        """The ``distributed.Client`` the tasks run through, or None for this process."""
        link = getattr(self, "_cluster", None)
        return None if link is None else link.client

    def workers(self) -> list[dict[str, Any]]:
        """With a cluster, its live workers: ``address``, ``tasks`` (this
        runner's, placed there), ``running``, ``threads`` (taskrunner's pool
        threads there), ``busy``, ``polling``, ``queued`` and ``heartbeat``
        (seconds since the worker last reported, None before its first
        report). Empty for a runner without a cluster."""
        link = getattr(self, "_cluster", None)
        return [] if link is None else link.workers()

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stops taking tasks; with ``wait``, returns once every task is done.

        A cluster given as a client or an address keeps running; a ``"local"``
        one this runner started is closed. Safe to call more than once.
        """
        link = getattr(self, "_cluster", None)
        if link is None:
            super().shutdown(wait, cancel_pending=cancel_pending)
            return
        with link.closing_lock:
            closer = link.closer
            if closer is None:
                super().shutdown(False, cancel_pending=cancel_pending)
                # The link brings the remote tasks' ends: it closes once they
                # are in, on a thread of its own; a second shutdown joins it
                # rather than shutting the engine down beside it.
                closer = link.closer = threading.Thread(
                    target=self._close_when_done,
                    args=(link,),
                    name="taskrunner-cluster-close",
                    daemon=True,
                )
                closer.start()
        if wait and closer is not threading.current_thread():
            closer.join()

    def pause(self) -> None:
        """Stops starting tasks until ``resume()``; running tasks go on and
        submits are still accepted. Does nothing when already paused.

        Raises:
            NotImplementedError: with a cluster, whose workers start the tasks.
            RuntimeError: after shutdown.
        """
        if getattr(self, "_cluster", None) is not None:
            raise NotImplementedError(
                "pause() does not work with a cluster yet: its workers start the tasks"
            )
        super().pause()

    def resume(self) -> None:
        """Starts at once what waited while paused (priority, then submit order).

        Raises:
            NotImplementedError: with a cluster (see ``pause``).
        """
        if getattr(self, "_cluster", None) is not None:
            raise NotImplementedError(
                "resume() does not work with a cluster yet: its workers start the tasks"
            )
        super().resume()

    def _close_when_done(self, link: Any) -> None:
        super().shutdown(True)
        link.close()

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown(wait=True)

    def wait(
        self,
        ids: Optional[Iterable[TaskRef]] = None,
        timeout: Optional[float] = None,
        return_when: str = ALL_COMPLETED,
    ) -> DoneAndNotDone:
        """Waits for tasks (all tasks so far when ``ids`` is None).

        Args:
            ids: task ids or handles.
            timeout: the most seconds to wait; None waits as long as needed.
            return_when: ``FIRST_COMPLETED``, ``FIRST_EXCEPTION`` or ``ALL_COMPLETED``.

        Returns:
            ``(done, not_done)``: two sets of ids.

        Raises:
            KeyError: for an unknown id.
        """
        return DoneAndNotDone(*self._wait(_refs(ids), timeout, return_when))

    def as_completed(
        self, ids: Optional[Iterable[TaskRef]] = None, timeout: Optional[float] = None
    ) -> Iterator[int]:
        """Yields task ids as their tasks finish (those already done first).

        Raises:
            TimeoutError: if ``timeout`` seconds pass before all are done.
            KeyError: for an unknown id.
        """
        return self._completions(_refs(ids), timeout)

    def __repr__(self) -> str:
        counts = {state: n for state, n in self.counts().items() if n}
        return f"<TaskRunner max_workers={self.max_workers} closed={self.closed} tasks={counts}>"
