"""taskrunner for asyncio: awaitable task handles, and a runner whose waits are coroutines.

Nothing here blocks the event loop: a task's done callback (on a runner
thread) hands the outcome to the loop with ``loop.call_soon_threadsafe``.

- ``await handle`` (``taskrunner.futures.await_handle``, kept here by name)
  waits for the task as ``await asyncio.wrap_future(handle.future())`` would.
- ``AsyncRunner`` wraps a ``TaskRunner``: ``await result(...)``, ``await
  wait(...)``, ``async for ... in as_completed(...)``, ``await shutdown()``.
  These mirror the runner's methods, task ids included, and never cancel a
  task: a wait that times out raises ``TimeoutError`` and leaves it running.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable
from typing import Any, Optional, Union

from taskrunner._core import TaskHandle
from taskrunner.futures import _call_soon_threadsafe, await_handle
from taskrunner.runner import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    DoneAndNotDone,
    TaskRunner,
)

__all__ = ["AsyncRunner", "as_completed", "await_handle"]

TaskRef = Union[int, TaskHandle]
_RETURN_CONDITIONS = (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED)


class _Completions:
    """Handles, delivered on the event loop in the order their tasks finish.

    A done callback stays on each task until it finishes, even if nobody
    listens any more; it then only finds a loop with nothing to do.
    """

    def __init__(self, handles: Iterable[TaskHandle]) -> None:
        self._loop = asyncio.get_running_loop()
        self._finished: collections.deque[TaskHandle] = collections.deque()
        self._wakeup: Optional[asyncio.Future[None]] = None
        self.unfinished = 0
        for handle in handles:
            self.unfinished += 1
            handle.add_done_callback(self._arrive_soon)

    def _arrive_soon(self, handle: TaskHandle) -> None:
        _call_soon_threadsafe(self._loop, self._arrive, handle)

    def _arrive(self, handle: TaskHandle) -> None:
        self._finished.append(handle)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def next(self, deadline: Optional[float]) -> Optional[TaskHandle]:
        """The next finished handle, or None once ``deadline`` (loop time) has passed."""
        while not self._finished:
            timeout = None if deadline is None else deadline - self._loop.time()
            if timeout is not None and timeout <= 0:
                return None
            self._wakeup = self._loop.create_future()
            try:
                await asyncio.wait_for(self._wakeup, timeout)
            except asyncio.TimeoutError:
                return None
        self.unfinished -= 1
        return self._finished.popleft()


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    return asyncio.get_running_loop().time() + timeout


def _unique(handles: Iterable[TaskHandle]) -> list[TaskHandle]:
    return list(dict.fromkeys(handles))


async def as_completed(
    handles: Iterable[TaskHandle], timeout: Optional[float] = None
) -> AsyncIterator[TaskHandle]:
    """Yields handles as their tasks finish (those already done first); tasks may
    come from different runners.

    Args:
        handles: handles from ``TaskRunner.submit``; duplicates are yielded once.
        timeout: the most seconds to wait for all of them; None waits as long as needed.

    Returns:
        An async iterator of the handles, for ``async for``.

    Raises:
        TimeoutError: if ``timeout`` seconds pass before every task is done.
    """
    handles = _unique(handles)
    deadline = _deadline(timeout)
    pending = []
    for handle in handles:
        if handle.done():
            yield handle
        else:
            pending.append(handle)
    completions = _Completions(pending)
    while completions.unfinished:
        finished = await completions.next(deadline)
        if finished is None:
            left = completions.unfinished
            raise TimeoutError(f"{left} (of {len(handles)}) tasks unfinished")
        yield finished


class AsyncRunner:
    """A ``TaskRunner`` for asyncio code: every wait is a coroutine, never a block.

    Submitting, cancelling and reading a status never block, so they stay
    plain methods; ``runner`` gives the wrapped ``TaskRunner`` for the rest
    (``tasks()``, ``counts()``, ``stats()``...).

    Args:
        runner: the runner to wrap; by default a new one, built from ``options``.
        options: ``TaskRunner`` arguments (``max_workers``, ``poll``...) for a new runner.

    Raises:
        TypeError: if both ``runner`` and ``options`` are given.
    """

    def __init__(self, runner: Optional[TaskRunner] = None, **options: Any) -> None:
        if runner is not None and options:
            raise TypeError("pass a runner or options for a new one, not both")
        self._runner = runner if runner is not None else TaskRunner(**options)

    @property
    def runner(self) -> TaskRunner:
        """The wrapped ``TaskRunner``."""
        return self._runner

    def submit(self, task: Any, **options: Any) -> TaskHandle:
        """Starts a task without waiting for it, as ``TaskRunner.submit`` does.

        Returns:
            The task's handle; ``await`` it for the result.
        """
        return self._runner.submit(task, **options)

    def status(self, task: TaskRef) -> dict[str, Any]:
        """The status dict of a task (by id or handle).

        Raises:
            KeyError: for an unknown id.
        """
        return self._handle(task).status()

    def cancel(self, task: TaskRef) -> bool:
        """Cancels a pending task or a running polling task.

        Returns:
            True if the task is now cancelled.

        Raises:
            KeyError: for an unknown id.
        """
        return self._handle(task).cancel()

    async def result(self, task: TaskRef, timeout: Optional[float] = None) -> Any:
        """Waits for a task and returns its result, as ``TaskRunner.result`` does.

        Args:
            task: a task id or handle.
            timeout: the most seconds to wait; None waits as long as needed.

        Returns:
            The task's result.

        Raises:
            TimeoutError: if ``timeout`` seconds pass first (the task is left alone).
            concurrent.futures.CancelledError: if the task was cancelled.
            TaskTimeoutError: if the task timed out; any exception the task raised.
            KeyError: for an unknown id.
        """
        handle = self._handle(task)
        await self._until_done(handle, timeout)
        return handle.result()

    async def exception(
        self, task: TaskRef, timeout: Optional[float] = None
    ) -> Optional[BaseException]:
        """Waits for a task and returns the exception it failed with, or None.

        Raises:
            TimeoutError: if ``timeout`` seconds pass first (the task is left alone).
            concurrent.futures.CancelledError: if the task was cancelled.
            TaskTimeoutError: if the task timed out.
            KeyError: for an unknown id.
        """
        handle = self._handle(task)
        await self._until_done(handle, timeout)
        return handle.exception()

    async def wait(
        self,
        tasks: Optional[Iterable[TaskRef]] = None,
        timeout: Optional[float] = None,
        return_when: str = ALL_COMPLETED,
    ) -> DoneAndNotDone:
        """Waits for tasks (all tasks so far when ``tasks`` is None), as ``TaskRunner.wait``.

        Args:
            tasks: task ids or handles.
            timeout: the most seconds to wait; None waits as long as needed.
            return_when: ``FIRST_COMPLETED``, ``FIRST_EXCEPTION`` or ``ALL_COMPLETED``.

        Returns:
            ``(done, not_done)``: two sets of ids.

        Raises:
            ValueError: for an unknown ``return_when``.
            KeyError: for an unknown id.
        """
        if return_when not in _RETURN_CONDITIONS:
            raise ValueError(f"Invalid return condition: {return_when!r}")
        handles = self._handles(tasks)
        done = {h for h in handles if h.done()}
        pending = [h for h in handles if h not in done]
        completions = _Completions(pending)
        deadline = _deadline(timeout)
        while not _satisfied(return_when, done, completions.unfinished):
            handle = await completions.next(deadline)
            if handle is None:
                break
            done.add(handle)
        return DoneAndNotDone({h.id for h in done}, {h.id for h in handles if h not in done})

    def as_completed(
        self, tasks: Optional[Iterable[TaskRef]] = None, timeout: Optional[float] = None
    ) -> AsyncIterator[int]:
        """Yields task ids as their tasks finish (those already done first), for ``async for``.

        Args:
            tasks: task ids or handles; all tasks so far when None.
            timeout: the most seconds to wait for all of them; None waits as long as needed.

        Returns:
            An async iterator of task ids.

        Raises:
            TimeoutError: if ``timeout`` seconds pass before every task is done.
            KeyError: for an unknown id.
        """
        return self._ids_as_completed(self._handles(tasks), timeout)

    async def _ids_as_completed(
        self, handles: list[TaskHandle], timeout: Optional[float]
    ) -> AsyncIterator[int]:
        async for handle in as_completed(handles, timeout):
            yield handle.id

    async def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stops taking tasks; with ``wait``, returns once every task is done and
        every runner thread has exited. Safe to call more than once.

        Args:
            wait: wait (without blocking the loop) for the tasks and threads.
            cancel_pending: cancel the tasks that have not started.
        """
        self._runner.shutdown(wait=False, cancel_pending=cancel_pending)
        if wait:
            # Joining threads blocks: do it on a helper thread, not on the loop.
            await asyncio.get_running_loop().run_in_executor(None, self._runner.shutdown)

    async def __aenter__(self) -> AsyncRunner:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<AsyncRunner of {self._runner!r}>"

    def _handle(self, task: TaskRef) -> TaskHandle:
        if isinstance(task, TaskHandle):
            return task
        if isinstance(task, int) and not isinstance(task, bool):
            return self._runner.handle(task)
        raise TypeError(f"expected a task id or TaskHandle, got {task!r}")

    def _handles(self, tasks: Optional[Iterable[TaskRef]]) -> list[TaskHandle]:
        if tasks is None:
            return [self._runner.handle(i) for i in reversed(self._runner.ids())]
        return _unique(self._handle(task) for task in tasks)

    async def _until_done(self, handle: TaskHandle, timeout: Optional[float]) -> None:
        """Waits for the task to be final without ever cancelling it."""
        if handle.done():
            return
        completions = _Completions([handle])
        if await completions.next(_deadline(timeout)) is None:
            raise TimeoutError(f"task {handle.id} is not done yet")


def _satisfied(return_when: str, done: set[TaskHandle], unfinished: int) -> bool:
    if unfinished == 0:
        return True
    if return_when == FIRST_COMPLETED:
        return bool(done)
    if return_when == FIRST_EXCEPTION:
        return any(h.state in ("failed", "timed_out") for h in done)
    return False
