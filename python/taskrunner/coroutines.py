"""The event loop behind tasks whose ``run()`` is a coroutine function.

A task written with ``async def run()`` holds no thread while it works: the
core hands its coroutine to ``start``, and one event-loop thread, shared by
every such task of every runner, runs it. 10,000 of them cost one thread.
When the coroutine is done, the task's output is ``get_output()`` if that is
not None (awaited, if ``get_output`` is a coroutine function too), else what
the coroutine returned; an exception the coroutine raised fails the task.
Cancelling the task (or its timeout) cancels the coroutine.

A ``get_output()`` that is a coroutine function on a task whose ``run()`` is
plain is awaited on the same loop each time the task is polled (``resolve``);
the poller waits for it, as it waits for a plain ``get_output()``.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Optional

__all__ = ["resolve", "start"]

_lock = threading.Lock()
_loop: Optional[asyncio.AbstractEventLoop] = None
_thread: Optional[threading.Thread] = None
_pid = 0


def _running_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use (and again in a forked child)."""
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="taskrunner-asyncio", daemon=True
            )
            thread.start()
            if _loop is None:
                atexit.register(_stop)
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def _stop() -> None:
    """At exit: cancel what still runs, then stop and close the loop."""
    with _lock:
        loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return
    loop.call_soon_threadsafe(_cancel_all_and_stop, loop)
    thread.join(5)
    if not thread.is_alive():
        loop.close()


def _cancel_all_and_stop(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.call_soon(loop.stop)


class Running:
    """One task's coroutine on the loop. Releasing it cancels the coroutine.

    The core keeps it while the task runs and lets go of it when the task
    ends; if that happened first (a cancel, a timeout), the coroutine is
    cancelled there and then.
    """

    def __init__(self, future: Future[Any]) -> None:
        self._future = future

    def __del__(self) -> None:
        if not self._future.done():
            self._future.cancel()


def start(
    coroutine: Coroutine[Any, Any, Any],
    task: Any,
    finish: Callable[[Optional[BaseException], Any], None],
) -> Running:
    """Runs a task's coroutine on the shared loop; ``finish(error, value)`` ends the task.

    Args:
        coroutine: what the task's ``run()`` returned.
        task: the task, whose ``get_output()`` gives the output once the coroutine is done.
        finish: the core's callback, called on the loop thread with
            ``(None, output)`` or ``(exception, None)``.

    Returns:
        What stands for the running coroutine: releasing it cancels the coroutine.
    """
    future = asyncio.run_coroutine_threadsafe(_drive(coroutine, task), _running_loop())
    future.add_done_callback(functools.partial(_finished, finish))
    return Running(future)


async def _drive(
    coroutine: Coroutine[Any, Any, Any], task: Any
) -> tuple[Optional[BaseException], Any]:
    """``(None, output)``, or ``(exception, None)``: returned, not raised, since
    the future of ``run_coroutine_threadsafe`` would turn a raised
    ``concurrent.futures.CancelledError`` into an ``asyncio`` one."""
    try:
        returned = await coroutine
        output = task.get_output()
        if asyncio.iscoroutine(output):
            output = await output
    except Exception as error:
        return error, None
    return None, returned if output is None else output


def _finished(finish: Callable[[Optional[BaseException], Any], None], future: Future[Any]) -> None:
    if future.cancelled():
        return  # the task ended first (cancelled, timed out): nothing to tell
    error = future.exception()
    finish(*((error, None) if error is not None else future.result()))


def resolve(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Runs a coroutine (an ``async def get_output()``'s) on the shared loop; waits for its value.

    Raises:
        RuntimeError: on the loop's own thread, which cannot wait for itself.
        Any exception the coroutine raises.
    """
    loop = _running_loop()
    if threading.current_thread() is _thread:
        coroutine.close()
        raise RuntimeError("an async get_output() cannot be awaited from the event-loop thread")
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
