"""The implementations under test: taskrunner and three peers written here.

Each adapter takes the task objects of a scenario and:

- ``submit_all(tasks, polling)``: registers every task (this loop is timed
  as registration, so it is kept tight);
- ``all_done()``: a cheap check, called between chunks of the main thread's loop;
- ``wait_all()``: blocks the main thread until every task is done;
- ``timings()``: per task, when it started and when the implementation
  noticed that it was done (Unix seconds), and the number of ``get_output()``
  calls made;
- ``status_checks()``: the calls that ask whether one task is done, each as a
  loop over every task, for the status pass to time.

The peers note ``time.time()`` just before calling ``run()`` and at the moment
their handler sees the result; taskrunner reports the same two moments as its
status timestamps ``started_at`` and ``finished_at``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from scenarios import OWN_BLOCKING


@dataclass(frozen=True)
class StatusCheck:
    """A status call, timed as a loop over every task of the scenario.

    ``is_done(k)`` gives the call's answer for the k-th task as "is it
    finished?", so that the status pass can check that the loop asks about
    tasks in the state it claims to. A check whose ``loop`` is empty is one
    this build lacks: it is reported, not timed.
    """

    call: str  # as a user writes it, e.g. "handle.done()"
    loop: str  # e.g. "for h in handles: h.done()"; names from `names`
    names: dict[str, Any]
    is_done: Optional[Callable[[int], bool]] = None
    primary: bool = False  # the implementation's own "is this task done?"

    @classmethod
    def unavailable(cls, call: str) -> StatusCheck:
        return cls(call, "", {})


class Impl:
    name = ""
    description = ""

    def __init__(self, n: int, options: Optional[dict[str, Any]] = None) -> None:
        self.n = n
        self.options = options or {}

    def setup(self) -> None:
        """Starts whatever must exist before the first task (not timed)."""

    def submit_all(self, tasks: list[Any], polling: list[bool]) -> None:
        raise NotImplementedError

    def all_done(self) -> bool:
        raise NotImplementedError

    def wait_all(self) -> None:
        raise NotImplementedError

    def timings(self) -> tuple[list[Optional[float]], list[Optional[float]], int]:
        raise NotImplementedError

    def status_checks(self) -> list[StatusCheck]:
        return []

    def extra(self) -> dict[str, Any]:
        return {}


def future_checks(futures: list[concurrent.futures.Future]) -> list[StatusCheck]:
    return [
        StatusCheck(
            "future.done()",
            "for f in futures: f.done()",
            {"futures": futures},
            lambda k: futures[k].done(),
            primary=True,
        )
    ]


class _PeerBase(Impl):
    """Bookkeeping shared by the peers: per-task start/done times and a done list."""

    def __init__(self, n: int, options: Optional[dict[str, Any]] = None) -> None:
        super().__init__(n, options)
        self.started: list[Optional[float]] = [None] * n
        self.finished: list[Optional[float]] = [None] * n
        self.polls = [0] * n
        self.done: list[int] = []  # list.append is atomic under the GIL
        self.all_done_event = threading.Event()

    def _mark_done(self, i: int) -> None:
        self.finished[i] = time.time()
        self.done.append(i)
        if len(self.done) >= self.n:
            self.all_done_event.set()

    def all_done(self) -> bool:
        return len(self.done) >= self.n

    def wait_all(self) -> None:
        while not self.all_done_event.wait(0.5):
            pass

    def timings(self) -> tuple[list[Optional[float]], list[Optional[float]], int]:
        return self.started, self.finished, sum(self.polls)


class _SleepPollingPeer(_PeerBase):
    """A peer that runs each task on a thread of its own and sleep-polls polling tasks."""

    POLL_SLEEP = 1.0

    def _body(self, i: int, task: Any, polling: bool) -> None:
        self.started[i] = time.time()
        task.run()
        if polling:
            k = 1
            while task.get_output() is None:
                time.sleep(self.POLL_SLEEP)
                k += 1
            self.polls[i] = k
        self._mark_done(i)


class ThreadPerTask(_SleepPollingPeer):
    """The challenge's suggested solution: one thread per task; polling tasks checked every 1 s."""

    name = "thread_per_task_1s"
    description = "one threading.Thread per task; polling tasks: get_output() then sleep(1)"
    POLL_SLEEP = 1.0

    def submit_all(self, tasks: list[Any], polling: list[bool]) -> None:
        thread = threading.Thread
        body = self._body
        self.threads = []
        append = self.threads.append
        for i, task in enumerate(tasks):
            t = thread(target=body, args=(i, task, polling[i]), daemon=True)
            t.start()
            append(t)

    def status_checks(self) -> list[StatusCheck]:
        threads = self.threads
        return [
            StatusCheck(
                "thread.is_alive()",
                "for t in threads: t.is_alive()",
                {"threads": threads},
                lambda k: not threads[k].is_alive(),
                primary=True,
            )
        ]


class Tpe100(_SleepPollingPeer):
    """ThreadPoolExecutor(max_workers=100); a polling task is sleep-polled inside its worker."""

    name = "tpe100_50ms"
    description = (
        "ThreadPoolExecutor(max_workers=100); polling tasks: get_output() then sleep(0.05)"
    )
    POLL_SLEEP = 0.05

    def setup(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=100)

    def submit_all(self, tasks: list[Any], polling: list[bool]) -> None:
        submit = self.executor.submit
        body = self._body
        self.futures = [submit(body, i, task, polling[i]) for i, task in enumerate(tasks)]

    def status_checks(self) -> list[StatusCheck]:
        return future_checks(self.futures)


class AsyncioPeer(_PeerBase):
    """One asyncio loop thread; blocking tasks via asyncio.to_thread, polling via asyncio.sleep."""

    name = "asyncio_50ms"
    description = (
        "one asyncio loop thread; blocking tasks: asyncio.to_thread(run); "
        "polling tasks: get_output() then asyncio.sleep(0.05)"
    )
    POLL_SLEEP = 0.05

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.loop.call_soon(ready.set)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        ready.wait()

    def _timed_run(self, i: int, task: Any) -> Any:
        self.started[i] = time.time()
        return task.run()

    async def _blocking(self, i: int, task: Any) -> None:
        await asyncio.to_thread(self._timed_run, i, task)
        self._mark_done(i)

    async def _polling(self, i: int, task: Any) -> None:
        self.started[i] = time.time()
        task.run()
        k = 1
        while task.get_output() is None:
            await asyncio.sleep(self.POLL_SLEEP)
            k += 1
        self.polls[i] = k
        self._mark_done(i)

    def submit_all(self, tasks: list[Any], polling: list[bool]) -> None:
        submit = asyncio.run_coroutine_threadsafe
        loop = self.loop
        blocking, poll = self._blocking, self._polling
        # The concurrent futures keep the asyncio tasks referenced.
        self.futures = [
            submit(poll(i, task) if polling[i] else blocking(i, task), loop)
            for i, task in enumerate(tasks)
        ]

    def status_checks(self) -> list[StatusCheck]:
        return future_checks(self.futures)


class Taskrunner(Impl):
    """taskrunner.TaskRunner, with the options given on the command line."""

    name = "taskrunner"
    description = "taskrunner.TaskRunner (Rust pool for blocking tasks, one poller thread)"

    def setup(self) -> None:
        import taskrunner

        kwargs: dict[str, Any] = {}
        opts = self.options
        if "max_workers" in opts:
            kwargs["max_workers"] = int(opts["max_workers"])
        if any(k in opts for k in ("poll_min", "poll_max", "poll_ratio")):
            default = taskrunner.PollPolicy()
            kwargs["poll"] = taskrunner.PollPolicy(
                min_interval=float(opts.get("poll_min", default.min_interval)),
                max_interval=float(opts.get("poll_max", default.max_interval)),
                ratio=float(opts.get("poll_ratio", default.ratio)),
            )
        if "max_poll_rate" in opts:
            kwargs["max_poll_rate"] = float(opts["max_poll_rate"])
        if "keep_alive" in opts:
            kwargs["keep_alive"] = float(opts["keep_alive"])
        self.kwargs = kwargs
        self.runner = taskrunner.TaskRunner(**kwargs)

    def submit_all(self, tasks: list[Any], polling: list[bool]) -> None:
        submit = self.runner.submit
        if tasks and isinstance(tasks[0], OWN_BLOCKING):
            self.handles = [submit(task, kind="blocking") for task in tasks]
        else:
            # The fake task classes are registered kinds: classified by isinstance.
            self.handles = [submit(task) for task in tasks]

    def all_done(self) -> bool:
        counts = self.runner.counts()
        return counts["pending"] + counts["running"] == 0

    def wait_all(self) -> None:
        if self.options.get("wait") == "counts":
            all_done = self.all_done
            while not all_done():
                time.sleep(0.005)
        else:
            self.runner.wait()

    def timings(self) -> tuple[list[Optional[float]], list[Optional[float]], int]:
        by_id = {s["id"]: s for s in self.runner.tasks()}
        statuses = [by_id.get(h.id) for h in self.handles]
        started = [s["started_at"] if s else None for s in statuses]
        finished = [s["finished_at"] if s else None for s in statuses]
        return started, finished, sum(s["polls"] for s in statuses if s)

    def status_checks(self) -> list[StatusCheck]:
        from taskrunner import TaskHandler

        runner, handles = self.runner, self.handles
        handler = TaskHandler(runner)
        ids = [h.id for h in handles]
        by_id = {"runner": runner, "ids": ids}
        checks = [
            StatusCheck(
                "handler.get_task_status(i)",
                "for i in ids: handler.get_task_status(i)",
                {"handler": handler, "ids": ids},
                lambda k: not handler.get_task_status(ids[k]),
            ),
            StatusCheck(
                "handle.done()",
                "for h in handles: h.done()",
                {"handles": handles},
                lambda k: handles[k].done(),
                primary=True,
            ),
        ]
        # runner.done(id) is newer than some builds of the core.
        if hasattr(runner, "done"):
            checks.append(
                StatusCheck(
                    "runner.done(i)",
                    "for i in ids: runner.done(i)",
                    by_id,
                    lambda k: runner.done(ids[k]),
                )
            )
        else:
            checks.append(StatusCheck.unavailable("runner.done(i)"))
        checks += [
            StatusCheck(
                "runner.status(i)",
                "for i in ids: runner.status(i)",
                by_id,
                lambda k: runner.status(ids[k])["done"],
            ),
            StatusCheck(
                "handle.status()",
                "for h in handles: h.status()",
                {"handles": handles},
                lambda k: handles[k].status()["done"],
            ),
        ]
        return checks

    def extra(self) -> dict[str, Any]:
        stats = dict(self.runner.stats())
        stats["kwargs"] = {k: repr(v) for k, v in self.kwargs.items()}
        return stats


PEERS = {cls.name: cls for cls in (ThreadPerTask, Tpe100, AsyncioPeer)}
ALL = {"taskrunner": Taskrunner, **PEERS}
