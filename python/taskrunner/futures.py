"""Standard futures for task handles: what ``handle.future()`` and ``await handle`` return.

- ``future_of(handle)`` (also ``handle.future()``) links a task of a
  ``TaskRunner`` to a standard ``concurrent.futures.Future``.
- ``await_handle(handle)`` is what ``await handle`` runs. It behaves like
  ``await asyncio.wrap_future(handle.future())``: it gives the task's result
  or raises its exception; a cancelled task cancels the awaiting coroutine;
  and cancelling the awaiting coroutine (``asyncio.wait_for`` timing out, say)
  cancels the task if it can be (pending, or running and polling). A running
  blocking task runs on; ``asyncio.shield(handle)`` leaves the task alone.

This module depends on the core alone, so that the core's handle can use it
and the executor and asyncio faces can build on it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Generator
from concurrent.futures import Future, InvalidStateError
from typing import Any

from taskrunner._core import TaskHandle

__all__ = ["await_handle", "future_of"]


def _set_exception_unless_done(future: Future[Any], exception: BaseException) -> None:
    try:
        future.set_exception(exception)
    except InvalidStateError:
        pass  # cancelled (or settled) meanwhile: that outcome stands


class _TaskFuture(Future[Any]):
    """A Future that follows one task of a TaskRunner."""

    def __init__(self, handle: TaskHandle) -> None:
        super().__init__()
        self._handle = handle

    def cancel(self) -> bool:
        """Cancels the task if it can be: pending, or a running polling task.

        Returns:
            True if the task (and so this future) is cancelled.
        """
        if self.done():
            return self.cancelled()
        if not self._handle.cancel():
            return False
        return super().cancel()

    def running(self) -> bool:
        """True while the task is running."""
        return not self.done() and self._handle.running()

    def _settle(self, handle: TaskHandle) -> None:
        """The task's done callback: gives this future the task's outcome."""
        if handle.cancelled():
            if Future.cancel(self):
                self.set_running_or_notify_cancel()
            return
        try:
            result = handle.result()
        except BaseException as exc:
            _set_exception_unless_done(self, exc)
        else:
            try:
                self.set_result(result)
            except InvalidStateError:
                pass


def future_of(handle: TaskHandle) -> Future[Any]:
    """A ``concurrent.futures.Future`` that settles with the task of ``handle``.

    It works with ``concurrent.futures.wait`` and ``as_completed``. Each call
    returns a new Future.

    Args:
        handle: a handle from ``TaskRunner.submit``.

    Returns:
        A Future with the task's result, or its exception (``TaskTimeoutError``
        if it timed out); cancelled if the task is. ``cancel()`` cancels the
        task when it can be cancelled (pending, or running and polling) and
        returns False otherwise; ``running()`` tells whether the task runs.

    Raises:
        TypeError: if ``handle`` is not a TaskHandle.
    """
    if not isinstance(handle, TaskHandle):
        raise TypeError(f"expected a TaskHandle, got {type(handle).__name__}")
    future = _TaskFuture(handle)
    handle.add_done_callback(future._settle)
    return future


def _call_soon_threadsafe(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any
) -> None:
    """Schedules ``callback`` on ``loop`` from any thread; nothing happens if the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody is left to tell


def await_handle(handle: TaskHandle) -> Generator[Any, None, Any]:
    """What ``await handle`` runs: waits for the task without blocking the event loop.

    Args:
        handle: a handle from ``TaskRunner.submit``.

    Returns:
        The iterator ``__await__`` must return; awaiting gives the task's result.

    Raises:
        RuntimeError: outside a running event loop.
        asyncio.CancelledError: when the task is cancelled.
        TaskTimeoutError: when the task timed out; any exception the task raised.
    """
    loop = asyncio.get_running_loop()
    outcome = loop.create_future()
    outcome.add_done_callback(functools.partial(_cancel_task_if_abandoned, handle))
    handle.add_done_callback(functools.partial(_deliver_soon, loop, outcome))
    return outcome.__await__()


def _cancel_task_if_abandoned(handle: TaskHandle, outcome: asyncio.Future[Any]) -> None:
    # As asyncio.wrap_future does: a cancelled awaiter cancels the work if it
    # still can be; a running blocking task cannot, and just runs on.
    if outcome.cancelled():
        handle.cancel()


def _deliver_soon(
    loop: asyncio.AbstractEventLoop, outcome: asyncio.Future[Any], handle: TaskHandle
) -> None:
    _call_soon_threadsafe(loop, _deliver, outcome, handle)


def _deliver(outcome: asyncio.Future[Any], handle: TaskHandle) -> None:
    """On the loop: gives the asyncio future the task's outcome."""
    if outcome.done():
        return  # the awaiter was cancelled meanwhile
    if handle.cancelled():
        outcome.cancel()
        return
    try:
        result = handle.result()
    except StopIteration as exc:
        # A future refuses StopIteration (it would end the awaiting generator
        # silently); asyncio turns one raised by a coroutine into RuntimeError too.
        error = RuntimeError("the task raised StopIteration")
        error.__cause__ = exc
        outcome.set_exception(error)
    except BaseException as exc:
        outcome.set_exception(exc)
    else:
        outcome.set_result(result)
