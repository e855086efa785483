"""taskrunner as a ``concurrent.futures`` executor.

``Executor`` runs plain callables on the Rust elastic pool and keeps the
documented behaviour of ``ThreadPoolExecutor``, so that one can replace the
other. ``future_of`` (from ``taskrunner.futures``) is kept here by name.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import _base as futures_base
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, Optional, Union

from taskrunner._core import TaskHandle, register_kind
from taskrunner.futures import _set_exception_unless_done, future_of
from taskrunner.runner import TaskRunner

__all__ = ["BrokenThreadPool", "Executor", "future_of"]

# The same logger and message as ThreadPoolExecutor, so existing log filters still match.
_LOGGER = futures_base.LOGGER
_BROKEN_MESSAGE = "A thread initializer failed, the thread pool is not usable anymore"

# The start of the core's error when no worker thread can be started.
_NO_THREAD_MESSAGE = "cannot start a worker thread"

_interpreter_exiting = False
_live_executors: weakref.WeakSet[Executor] = weakref.WeakSet()


def _default_max_workers() -> int:
    """ThreadPoolExecutor's default: the usable CPUs plus 4, at most 32."""
    cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
    return min(32, (cpu_count() or 1) + 4)


class _ThreadState(threading.local):
    """What one worker thread has done for its executor: named itself, run the initializer."""

    prepared = False


class _WorkerContext:
    """The state a work item needs on a worker thread.

    It holds no reference to the executor, so that an executor dropped without
    ``shutdown()`` can be collected while its queued calls still run, as a
    ``ThreadPoolExecutor`` can.
    """

    def __init__(
        self,
        runner: TaskRunner,
        name_prefix: str,
        initializer: Optional[Callable[..., object]],
        initargs: tuple[Any, ...],
    ) -> None:
        self.runner_ref = weakref.ref(runner)
        self.name_prefix = name_prefix
        self.initializer = initializer
        self.initargs = initargs
        # Work items not yet claimed by a worker, in submit order. Whoever pops an
        # item first (its worker, or a shutdown/broken sweep) settles its future.
        self.queued: dict[_WorkItem, bool] = {}
        # A worker thread keeps its Python thread state for life, so this is
        # per worker thread, as ThreadPoolExecutor's per-thread setup is.
        self.thread_state = _ThreadState()
        self.broken: Optional[str] = None
        self._thread_numbers = itertools.count().__next__

    def prepare_thread(self) -> bool:
        """Names the current worker thread and runs the initializer in it, once per thread.

        Returns:
            False if the pool is broken: the initializer failed, here or on another thread.
        """
        self.thread_state.prepared = True
        threading.current_thread().name = f"{self.name_prefix}_{self._thread_numbers()}"
        if self.initializer is not None and self.broken is None:
            try:
                self.initializer(*self.initargs)
            except BaseException:
                _LOGGER.critical("Exception in initializer:", exc_info=True)
                self.break_pool()
        return self.broken is None

    def break_pool(self) -> None:
        """Refuses new work and fails every queued call with BrokenThreadPool."""
        self.broken = _BROKEN_MESSAGE
        runner = self.runner_ref()
        if runner is not None:
            runner.shutdown(wait=False, cancel_pending=True)
        self.fail_queued(BrokenThreadPool, _BROKEN_MESSAGE)

    def fail_queued(self, error_type: type[BaseException], message: str) -> None:
        """Fails every queued call with ``error_type(message)``; no worker will run them."""
        for future in self.claim_queued():
            _set_exception_unless_done(future, error_type(message))

    def cancel_queued(self) -> list[Future[Any]]:
        """Takes away the queued calls that no worker has taken yet, in submit order.

        The core decides which: a call's task is cancelled only while it waits
        in the queue, never once a worker has taken it (even if that worker has
        not yet got to the call in Python), so that a taken call runs, as one
        ``ThreadPoolExecutor`` has taken off its queue does.

        Returns:
            The futures of the calls taken away; no worker will touch them.
        """
        taken = []
        for item in list(self.queued):
            handle = item.handle  # None while its submit() has yet to return: left to run
            if handle is not None and handle.cancel() and self.queued.pop(item, None) is not None:
                taken.append(item.future)
        return taken

    def claim_queued(self) -> list[Future[Any]]:
        """Takes every queued item away from the workers, in submit order.

        Returns:
            The futures of the items taken; no worker will touch them.
        """
        claimed = []
        for item in list(self.queued):
            if self.queued.pop(item, None) is not None:
                claimed.append(item.future)
        return claimed


class _WorkItem:
    """One call, run as a blocking task: ThreadPoolExecutor's _WorkItem, for the Rust pool."""

    __slots__ = ("future", "fn", "args", "kwargs", "context", "handle")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: _WorkerContext,
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.context = context
        # The core's handle of this call's task, once submitted. The cycle it
        # makes (the task's record holds this item) ends when the task does:
        # the core lets go of a task object once the task is final.
        self.handle: Optional[TaskHandle] = None

    def run(self) -> None:
        context = self.context
        if context.queued.pop(self, None) is None:
            return  # a shutdown or a broken pool has already settled the future
        future = self.future
        if not context.thread_state.prepared and not context.prepare_thread():
            _set_exception_unless_done(future, BrokenThreadPool(_BROKEN_MESSAGE))
            return
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            # Break a reference cycle with the exception 'exc'
            del self, context, future
        else:
            future.set_result(result)

    def get_output(self) -> None:
        return None


# Classified by type in the core: no kind argument to parse on every submit.
register_kind(_WorkItem, "blocking")


class Executor(futures_base.Executor):
    """A ``concurrent.futures.Executor`` that runs calls on taskrunner's Rust thread pool.

    A drop-in for ``ThreadPoolExecutor``: the same arguments, the same
    ``Future`` objects and the same behaviour (cancel only while pending,
    callbacks on the worker thread, ``shutdown`` semantics, queued calls still
    run at interpreter exit, ``BrokenThreadPool`` after an initializer fails).
    Workers start as calls arrive, up to ``max_workers``, and leave after
    ``keep_alive`` idle seconds.

    Args:
        max_workers: the most threads running calls at once; by default
            ``min(32, CPUs + 4)``, as for ``ThreadPoolExecutor``.
        thread_name_prefix: worker threads are named ``f"{prefix}_{n}"``.
        initializer: called with ``initargs`` in each worker thread before its first call.
        initargs: the arguments of ``initializer``.
        keep_alive: seconds an idle worker thread waits for work before it exits.

    Raises:
        ValueError: if ``max_workers`` is not greater than 0.
        TypeError: if ``initializer`` is not callable.
    """

    # Used to assign unique thread names when thread_name_prefix is not supplied.
    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: Optional[int] = None,
        thread_name_prefix: str = "",
        initializer: Optional[Callable[..., object]] = None,
        initargs: tuple[Any, ...] = (),
        *,
        keep_alive: float = 10.0,
    ) -> None:
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"TaskRunnerExecutor-{self._counter()}"
        # Queued calls run at interpreter exit, as ThreadPoolExecutor's do. A
        # fractional cap rounds up, as it does for ThreadPoolExecutor. The futures
        # carry the outcomes, so the runner keeps no record of a finished call.
        # A submit hands its call to a worker before it returns, as
        # ThreadPoolExecutor's waits for a new thread to start.
        self._runner = TaskRunner(
            math.ceil(max_workers),
            keep_alive=keep_alive,
            retain_finished=0,
            run_pending_at_exit=True,
            handoff=True,
        )
        self._submit_task = self._runner.submit
        self._context = _WorkerContext(
            self._runner, self._thread_name_prefix, initializer, tuple(initargs)
        )
        self._shutdown = False
        _live_executors.add(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedules ``fn(*args, **kwargs)`` and returns a Future of its result.

        Args:
            fn: the callable to run on a worker thread.
            args: its positional arguments.
            kwargs: its keyword arguments.

        Returns:
            A ``concurrent.futures.Future`` that settles with the call's result or exception.

        Raises:
            RuntimeError: after ``shutdown()``, once the interpreter is exiting, or
                when no worker thread can be started (the call will not run).
            BrokenThreadPool: after a worker's initializer failed.
        """
        context = self._context
        if self._shutdown or context.broken or _interpreter_exiting:
            self._check_open()
        future: Future[Any] = Future()
        item = _WorkItem(future, fn, args, kwargs, context)
        context.queued[item] = True
        try:
            item.handle = self._submit_task(item)
        except RuntimeError as error:
            # The caller is told the call failed: make sure it never runs.
            context.queued.pop(item, None)
            if str(error).startswith(_NO_THREAD_MESSAGE):
                self._fail_orphans(str(error))
            else:
                self._check_open()  # closed under us by a shutdown, a broken pool, or exit
            raise
        return future

    @property
    def _broken(self) -> Union[bool, str]:
        """``ThreadPoolExecutor._broken``, which code (CPython's tests among it) reads.

        Returns:
            False, or the reason the pool broke once an initializer failed.
        """
        return self._context.broken or False

    def _fail_orphans(self, message: str) -> None:
        # With no worker left, the core has failed the queued tasks, and no
        # worker will ever run their items: fail their futures the same way. A
        # call submitted meanwhile by another thread may be failed with them,
        # rightly enough: no thread could be started for it a moment ago.
        if self._runner.stats()["workers"] == 0:
            self._context.fail_queued(RuntimeError, message)

    def _check_open(self) -> None:
        if self._context.broken:
            raise BrokenThreadPool(self._context.broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _interpreter_exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stops taking calls; the calls already queued still run unless cancelled.

        Safe to call more than once.

        Args:
            wait: return only once every queued call has run and every worker has exited.
            cancel_futures: cancel the calls that no worker has taken yet.

        Raises:
            RuntimeError: if ``wait`` is true and this is called from one of this
                executor's own calls (it cannot wait for itself); the executor is
                shut down all the same.
        """
        self._shutdown = True
        self._runner.shutdown(wait=False)
        if cancel_futures:
            # The calls taken away are out of every worker's reach; their futures'
            # callbacks run here, with no lock held, so they may even call shutdown() again.
            for future in self._context.cancel_queued():
                _cancel_and_notify(future)
        if wait:
            self._runner.shutdown(wait=True)


def _cancel_and_notify(future: Future[Any]) -> None:
    # Unlike ThreadPoolExecutor (CPython gh-109934), also tell wait() and
    # as_completed() about the cancellation, as their documentation promises.
    if future.cancel():
        future.set_running_or_notify_cancel()


def _join_executors_at_exit() -> None:
    """Runs what the executors still have queued, before atexit hooks, like ThreadPoolExecutor."""
    global _interpreter_exiting
    _interpreter_exiting = True
    for executor in list(_live_executors):
        executor.shutdown(wait=True)


def _forget_executors_in_child() -> None:
    # A forked child has none of the parent's worker threads, and the calls
    # queued before the fork are the parent's to run: the child's exit must
    # not wait for them (ThreadPoolExecutor's finds the parent's threads
    # stopped and joins nothing). multiprocessing's fork children run the
    # exit hook above before they leave.
    _live_executors.clear()


def _register_exit_hook() -> None:
    # ThreadPoolExecutor drains its queues at this same point (just before the
    # interpreter joins non-daemon threads), so that atexit hooks such as
    # logging's run after the calls; the core's own atexit hook is the fallback.
    try:
        threading._register_atexit(_join_executors_at_exit)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        pass  # no such hook on this Python, or first imported while the interpreter exits
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_executors_in_child)


_register_exit_hook()
