"""Ready-made tasks: a program, a future, a function.

``SubprocessTask`` runs a program and is polled until it exits;
``FutureTask`` follows a ``concurrent.futures.Future`` made elsewhere;
``CallableTask`` calls a function on a worker thread. taskrunner knows the
kind of each (``register_kind``), so ``submit`` needs no ``kind=``::

    with taskrunner.TaskRunner() as runner:
        handle = runner.submit(SubprocessTask(["git", "status"]), timeout=60)
        print(handle.result()["stdout"])
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import os
import reprlib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Optional, Union

__all__ = ["CallableTask", "FutureTask", "SubprocessTask"]

Arg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def _program(args: Sequence[Arg]) -> tuple[Arg, ...]:
    """``args`` checked: a non-empty list or tuple of str, bytes or path-likes."""
    if isinstance(args, (str, bytes)):
        raise TypeError(
            f"args must be a list such as ['ls', '-l'], not the string {args!r}: "
            "SubprocessTask runs no shell, so nothing splits a command line"
        )
    if not isinstance(args, (list, tuple)) or not args:
        raise TypeError(f"args must be a non-empty list or tuple, got {args!r}")
    for arg in args:
        if not isinstance(arg, (str, bytes, os.PathLike)):
            raise TypeError(f"each argument must be str, bytes or a path, got {arg!r}")
    return tuple(args)


def _input_bytes(stdin: Union[bytes, str, None]) -> Optional[bytes]:
    if stdin is None or isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, str):
        return stdin.encode("utf-8")
    raise TypeError(f"stdin must be bytes, str or None, got {type(stdin).__name__}")


def _tail(file: IO[bytes], limit: int) -> tuple[str, bool]:
    """The last ``limit`` bytes of ``file``, decoded, and whether any were left out."""
    size = file.seek(0, os.SEEK_END)
    start = max(0, size - limit)
    file.seek(start)
    data = file.read()
    if start:
        # The cut may fall inside a UTF-8 character: begin at the next whole one.
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace"), start > 0


# Processes cancel() has sent SIGTERM, each with the time it is to be killed.
_terminating: dict[subprocess.Popen[bytes], float] = {}
_terminating_lock = threading.Lock()


def _kill_after_grace(process: subprocess.Popen[bytes], grace: float) -> None:
    """Kills ``process`` if it still runs ``grace`` seconds from now, without waiting for that.

    cancel() runs on whichever thread ended the task: the caller of
    ``runner.cancel()``, or the poller at a timeout, where a wait of seconds
    would hold up every other task's polls. And once the task has ended,
    taskrunner never calls it again, so a check left for a later call would
    never come. So a thread of its own waits out the grace; it also reaps the
    process, leaving no zombie. It is a daemon, so that a program may exit
    meanwhile: the exit hook below then waits out what is left of each grace.
    """
    deadline = time.monotonic() + grace
    with _terminating_lock:
        _terminating[process] = deadline
    try:
        threading.Thread(
            target=_finish_off,
            args=(process, deadline),
            name="taskrunner-terminate",
            daemon=True,
        ).start()
    except RuntimeError:
        _finish_off(process, 0.0)  # the interpreter is exiting and starts no thread: kill now


def _finish_off(process: subprocess.Popen[bytes], deadline: float) -> None:
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    finally:
        with _terminating_lock:
            _terminating.pop(process, None)


def _finish_off_all() -> None:
    """At exit: kill every process still in its grace once the grace is over.

    ``taskrunner`` imports this module before it registers its own exit hook,
    so this one runs after the runners have stopped (and cancelled their
    polling tasks): the graces run side by side, the longest bounds the wait.
    """
    with _terminating_lock:
        left = list(_terminating.items())
    for process, deadline in left:
        _finish_off(process, deadline)


atexit.register(_finish_off_all)


class SubprocessTask:
    """A program, run without a shell, polled until it exits.

    ``run()`` starts it and returns at once. stdout and stderr go to
    anonymous temporary files, not pipes, so no thread reads them and a
    chatty program never stalls on a full pipe. ``get_output()`` is None
    until the program exits, then a dict::

        {"returncode": int, "stdout": str, "stderr": str, "truncated": bool}

    The text is decoded as UTF-8 (``errors="replace"``). Each stream keeps its
    **last** ``max_output`` bytes, where a failing program usually says why;
    ``truncated`` is True when either lost its beginning. A non-zero
    ``returncode`` is a result, not a failure, as with ``subprocess.run``:
    pass ``check=True`` to make the task fail with
    ``subprocess.CalledProcessError`` instead. A program that cannot start
    (``FileNotFoundError``, ``PermissionError``) fails the task from ``run()``.

    When the task is cancelled or times out, taskrunner calls ``cancel()``:
    the program gets SIGTERM, and SIGKILL ``terminate_grace`` seconds later if
    it is still alive. Only the program is signalled, not programs it started.

    The task runs once. It pickles as what to run (for ``durable=True``),
    never as a running process: the copy starts afresh.

    Args:
        args: the program and its arguments: a non-empty list or tuple of
            str, bytes or path-like objects.
        cwd: the directory to run it in (default: this process's).
        env: its whole environment (default: this process's).
        stdin: bytes, or str (encoded as UTF-8), to feed it; None gives it an
            empty input, never this process's own stdin.
        max_output: the most bytes kept of each of stdout and stderr.
        terminate_grace: seconds from SIGTERM to SIGKILL on cancel.
        check: fail the task with ``CalledProcessError`` on a non-zero
            return code (it carries the kept stdout and stderr).

    Raises:
        TypeError: ``args`` is a string (pass a list: no shell splits it),
            empty, or holds something else; ``stdin`` is neither bytes nor str.
        ValueError: ``max_output`` or ``terminate_grace`` is negative.
    """

    def __init__(
        self,
        args: Sequence[Arg],
        *,
        cwd: Union[str, bytes, os.PathLike[str], None] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin: Union[bytes, str, None] = None,
        max_output: int = 1_000_000,
        terminate_grace: float = 5.0,
        check: bool = False,
    ) -> None:
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
            raise ValueError(f"max_output must be a whole number of bytes >= 0, got {max_output!r}")
        if not isinstance(terminate_grace, (int, float)) or not terminate_grace >= 0:
            raise ValueError(f"terminate_grace must be seconds >= 0, got {terminate_grace!r}")
        self.args = _program(args)
        self.cwd = cwd
        self.env = env
        self.stdin = _input_bytes(stdin)
        self.max_output = max_output
        self.terminate_grace = float(terminate_grace)
        self.check = check
        self._init_state()

    def _init_state(self) -> None:
        """The state of a task not run yet."""
        self._lock = threading.Lock()  # get_output() (the poller) and cancel() may race
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._files: tuple[IO[bytes], ...] = ()  # stdout, stderr while it runs
        self._output: Optional[dict[str, Any]] = None
        self._cancelled = False

    def __getstate__(self) -> dict[str, Any]:
        keep = ("args", "cwd", "env", "stdin", "max_output", "terminate_grace", "check")
        return {name: getattr(self, name) for name in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    @property
    def pid(self) -> Optional[int]:
        """The program's process id; None before ``run()``."""
        process = self._process
        return None if process is None else process.pid

    @property
    def returncode(self) -> Optional[int]:
        """Its exit status once it has exited (``-N`` if signal N ended it), else None."""
        process = self._process
        return None if process is None else process.poll()

    def run(self) -> None:
        """Starts the program and returns at once.

        Raises:
            OSError: the program cannot start (``FileNotFoundError`` and the like).
            RuntimeError: the task has run already, or was cancelled.
        """
        with self._lock:
            if self._process is not None or self._cancelled:
                raise RuntimeError("a SubprocessTask runs once, and not after cancel()")
            with contextlib.ExitStack() as on_failure:
                stdout = on_failure.enter_context(tempfile.TemporaryFile())
                stderr = on_failure.enter_context(tempfile.TemporaryFile())
                with self._input() as stdin:
                    self._process = subprocess.Popen(
                        list(self.args),
                        cwd=self.cwd,
                        env=self.env,
                        stdin=stdin,
                        stdout=stdout,
                        stderr=stderr,
                    )
                on_failure.pop_all()
            self._files = (stdout, stderr)

    def _input(self) -> contextlib.AbstractContextManager[Any]:
        """What the program reads: a file holding ``stdin`` (closed after the start), or nothing."""
        if self.stdin is None:
            return contextlib.nullcontext(subprocess.DEVNULL)
        file = tempfile.TemporaryFile()
        try:
            file.write(self.stdin)
            file.seek(0)
        except BaseException:
            file.close()
            raise
        return file

    def get_output(self) -> Optional[dict[str, Any]]:
        """None while the program runs, then its return code and output.

        Returns:
            ``{"returncode", "stdout", "stderr", "truncated"}``, the same dict
            on every call once the program has exited.

        Raises:
            subprocess.CalledProcessError: with ``check=True``, for a non-zero return code.
            concurrent.futures.CancelledError: after ``cancel()``.
        """
        with self._lock:
            if self._output is None:
                if self._cancelled:
                    raise concurrent.futures.CancelledError("the task was cancelled")
                if self._process is None or self._process.poll() is None:
                    return None
                self._output = self._collect(self._process.returncode)
        output = self._output
        if self.check and output["returncode"] != 0:
            raise subprocess.CalledProcessError(
                output["returncode"], list(self.args), output["stdout"], output["stderr"]
            )
        return output

    def _collect(self, returncode: int) -> dict[str, Any]:
        (stdout, cut_out), (stderr, cut_err) = (_tail(f, self.max_output) for f in self._files)
        self._close_files()
        return {
            "returncode": returncode,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": cut_out or cut_err,
        }

    def _close_files(self) -> None:
        for file in self._files:
            file.close()
        self._files = ()

    def cancel(self) -> None:
        """Terminates the program and closes its output files; returns at once.

        The program gets SIGTERM now and SIGKILL after ``terminate_grace``
        seconds if still alive (a thread of its own waits, see
        ``_kill_after_grace``). Safe to call more than once, or before
        ``run()``; nothing happens once the output is collected.
        """
        with self._lock:
            if self._cancelled or self._output is not None:
                return
            self._cancelled = True
            self._close_files()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            _kill_after_grace(process, self.terminate_grace)

    def __repr__(self) -> str:
        state = f" pid={self.pid}" if self._process is not None else ""
        return f"<SubprocessTask {reprlib.repr(list(self.args))}{state}>"


class FutureTask:
    """Follows a ``concurrent.futures.Future`` made elsewhere, to its end.

    The task ends when the future does: with its result, or failing with its
    exception; a cancelled future fails the task with
    ``concurrent.futures.CancelledError``. ``get_output()`` is None until the
    future is done, then its result (or raises), as a polling task's is.

    Why ``run()`` is a coroutine function: a future's result may be None, and
    to the poller a None from ``get_output()`` means "not done yet", so a
    polled task with that result would never end. A task whose ``run()`` is
    ``async def`` is not polled: taskrunner runs it on its one event-loop
    thread, and the task ends when the coroutine does, with what it returns,
    None included. Here the coroutine waits for the future's done callback,
    so the task holds no thread, costs no polls, and ends the moment the
    future does. (Driving the task by hand, outside taskrunner, means
    awaiting ``run()``.)

    An ``asyncio`` future is refused: it belongs to its own event loop and
    may not be touched from another thread. Await it there, or wrap it with
    ``asyncio.run_coroutine_threadsafe`` for a ``concurrent.futures.Future``.

    Args:
        future: the future to follow.

    Raises:
        TypeError: ``future`` is not a ``concurrent.futures.Future``.
    """

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        if not isinstance(future, concurrent.futures.Future):
            if asyncio.isfuture(future):
                raise TypeError(
                    "an asyncio future belongs to its event loop: await it there, or pass "
                    "the concurrent.futures.Future of asyncio.run_coroutine_threadsafe"
                )
            raise TypeError(f"expected a concurrent.futures.Future, got {future!r}")
        self.future = future

    async def run(self) -> Any:
        """Waits for the future, then gives its result (or raises its exception)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.future.add_done_callback(functools.partial(_wake, loop, done))
        await done
        return self.get_output()

    def get_output(self) -> Any:
        """None until the future is done, then its result.

        Raises:
            The future's exception; ``concurrent.futures.CancelledError`` if it was cancelled.
        """
        if not self.future.done():
            return None
        return self.future.result()

    def cancel(self) -> None:
        """Cancels the future, if it has not started running (``concurrent.futures``
        cannot stop a call that has); the task ends cancelled either way."""
        self.future.cancel()

    def __repr__(self) -> str:
        return f"<FutureTask {self.future!r}>"


def _wake(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[None],
    _future: concurrent.futures.Future[Any],
) -> None:
    """The future's done callback: wakes ``FutureTask.run()`` on its loop."""
    with contextlib.suppress(RuntimeError):  # the loop has closed (interpreter exit)
        loop.call_soon_threadsafe(_settle, done)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():  # not if run() was cancelled meanwhile
        done.set_result(None)


class CallableTask:
    """A blocking task that calls ``fn(*args, **kwargs)`` on a worker thread.

    Its output is what ``fn`` returns, None included (the task is registered
    as blocking, so a None output is a result, not "not done yet"); what
    ``fn`` raises fails the task. ``name`` is the function's qualified name:
    the status dict's ``name`` is the task's class name unless ``submit`` is
    given one, so pass ``runner.submit(task, name=task.name)`` to see the
    function's there.

    Args:
        fn: the callable (positional only, so that ``fn`` may be a keyword
            argument of the call).
        *args: its positional arguments.
        **kwargs: its keyword arguments.

    Raises:
        TypeError: ``fn`` is not callable.
    """

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"expected a callable, got {fn!r}")
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = _qualified_name(fn)
        self._output: Any = None

    def run(self) -> Any:
        """Calls the function; returns (and keeps) what it returns."""
        self._output = self.fn(*self.args, **self.kwargs)
        return self._output

    def get_output(self) -> Any:
        """What the function returned; None before it has."""
        return self._output

    def __repr__(self) -> str:
        arguments = [reprlib.repr(arg) for arg in self.args]
        arguments += [f"{key}={reprlib.repr(value)}" for key, value in self.kwargs.items()]
        return f"<CallableTask {self.name}({', '.join(arguments)})>"


def _qualified_name(fn: Callable[..., Any]) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__
