"""The implementations under test: taskrunner with and without a journal,
three in-memory peers written here, and Huey's SQLite queue.

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

An implementation that journals (``journaled``) is done only once its work is
on disk: ``done_at()`` gives the moment its last write was committed, when
that is later than the last task's end, and the run ends there. Journals and
queues live in a fresh temporary directory, which ``teardown()`` deletes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from scenarios import OWN_BLOCKING, Scenario

WEB_MODULES = ("flask", "waitress", "prometheus_client")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def missing_modules(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def file_bytes(directory: str) -> int:
    """The size of every file in `directory` (a journal with its WAL)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    return sum(os.path.getsize(os.path.join(directory, name)) for name in names)


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
    journaled = False  # every task is written to a file; compared with journaled peers only

    def __init__(self, n: int, options: Optional[dict[str, Any]] = None) -> None:
        self.n = n
        self.options = options or {}

    @classmethod
    def unsupported(cls, scenario: Scenario) -> Optional[str]:
        """Why this implementation does not run `scenario`, or None when it does."""
        if scenario.passes == "http":
            return "the HTTP scenario serves taskrunner's own web app"
        return None

    def setup(self) -> None:
        """Starts whatever must exist before the first task (not timed)."""

    def teardown(self) -> None:
        """Removes what the run left on disk (not timed)."""

    def done_at(self) -> Optional[float]:
        """When the implementation's last write was on disk (Unix seconds), for one
        that journals and notes a task's end before it is committed; else None."""
        return None

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

    @classmethod
    def unsupported(cls, scenario: Scenario) -> Optional[str]:
        missing = missing_modules(WEB_MODULES) if scenario.passes == "http" else []
        if missing:
            return f"needs the web extra ({', '.join(missing)} not installed): pip install '.[web]'"
        return None

    def setup(self) -> None:
        import taskrunner

        self.kwargs = self.runner_options()
        self.runner = taskrunner.TaskRunner(**self.kwargs)

    def runner_options(self) -> dict[str, Any]:
        """The TaskRunner arguments from the command line's options."""
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
        return kwargs

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

    def flush(self) -> float:
        """Waits until everything so far is on disk (at once without a journal);
        returns the seconds that took."""
        t0 = time.perf_counter()
        self.runner.flush()
        self.flushed_at = time.time()
        return time.perf_counter() - t0

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


class TaskrunnerJournal(Taskrunner):
    """taskrunner.TaskRunner with a journal: a fresh file, removed afterwards.

    Its run ends when ``flush()`` returns: until then, the last submits and
    ends may not be on disk.
    """

    name = "taskrunner_journal"
    description = (
        "taskrunner.TaskRunner(journal=<a fresh file>, durability='normal'); "
        "a run ends when flush() returns"
    )
    journaled = True

    def runner_options(self) -> dict[str, Any]:
        kwargs = super().runner_options()
        self.directory = tempfile.mkdtemp(prefix="taskrunner-bench-")
        kwargs["journal"] = os.path.join(self.directory, "journal.db")
        kwargs["durability"] = str(self.options.get("durability", "normal"))
        if "journal_batch" in self.options:
            kwargs["journal_batch"] = float(self.options["journal_batch"])
        self.flushed_at: Optional[float] = None
        return kwargs

    def all_done(self) -> bool:
        return super().all_done() and self.runner.flush(0)

    def wait_all(self) -> None:
        super().wait_all()
        self.flush()

    def done_at(self) -> Optional[float]:
        return self.flushed_at

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "journal_bytes": file_bytes(self.directory)}


class HueySqlite(_PeerBase):
    """Huey's SQLite queue with its consumer's worker threads in this process.

    Every enqueue, dequeue and result is its own SQLite transaction. The
    storage is SqliteHuey's at ``synchronous=NORMAL``: in WAL mode that is
    taskrunner's ``durability="normal"`` (a commit survives the process dying;
    SqliteHuey's default, FULL, also syncs the disk at every commit). The task
    function gets the task's index and runs the task object from this
    process's list, so no task object is pickled (nor is one by a
    taskrunner journal without ``durable=True``); the result is. A task's end
    is noted by Huey's ``SIGNAL_COMPLETE``, sent after its result is committed.
    """

    name = "huey_sqlite"
    description = (
        "Huey's SqliteHuey (WAL, synchronous=NORMAL), its consumer's 4 worker threads in "
        "this process; a task ends once its result is committed"
    )
    journaled = True
    WORKERS = 4
    # An idle worker looks at the queue again after 5 ms, backing off to 50 ms
    # (Huey's defaults, 0.1 s growing to 10 s, would delay the first tasks).
    INITIAL_DELAY, MAX_DELAY = 0.005, 0.05
    MIXES = ("instant", "sleep0")

    @classmethod
    def unsupported(cls, scenario: Scenario) -> Optional[str]:
        if scenario.mix not in cls.MIXES:
            return (
                "runs only the instant and sleep(0) tasks: Huey has no polling tasks, and "
                "its few workers would queue 100 tasks that sleep"
            )
        if missing_modules(("huey",)):
            return "huey is not installed: pip install huey (or '.[bench]')"
        return None

    def setup(self) -> None:
        from huey import SqliteHuey, signals
        from huey.storage import SqliteStorage

        class NormalSyncStorage(SqliteStorage):
            def _create_connection(self) -> Any:
                conn = super()._create_connection()
                conn.execute("pragma synchronous=NORMAL")
                return conn

        self.directory = tempfile.mkdtemp(prefix="huey-bench-")
        huey = SqliteHuey(
            "bench",
            storage_class=NormalSyncStorage,
            filename=os.path.join(self.directory, "huey.db"),
        )
        self.tasks: list[Any] = []
        started, tasks = self.started, self.tasks

        @huey.task(name="run_task")
        def run_task(i: int) -> Any:
            started[i] = time.time()
            return tasks[i].run()

        def complete(signal: str, task: Any) -> None:
            self._mark_done(task.args[0])

        huey.signal(signals.SIGNAL_COMPLETE)(complete)
        self.huey, self.run_task = huey, run_task
        self.consumer = huey.create_consumer(
            workers=self.WORKERS,
            worker_type="thread",
            periodic=False,
            initial_delay=self.INITIAL_DELAY,
            max_delay=self.MAX_DELAY,
            check_worker_health=False,
        )
        # start() takes over SIGINT, SIGTERM and SIGHUP, as a consumer process
        # of its own would; this one is a guest.
        handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        self.consumer.start()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    def submit_all(self, tasks: list[Any], polling: list[bool]) -> None:
        self.tasks[:] = tasks
        enqueue = self.run_task
        self.results = [enqueue(i) for i in range(len(tasks))]

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def extra(self) -> dict[str, Any]:
        return {"workers": self.WORKERS, "queue_bytes": file_bytes(self.directory)}


PEERS = {cls.name: cls for cls in (ThreadPerTask, Tpe100, AsyncioPeer, HueySqlite)}
TASKRUNNERS = {cls.name: cls for cls in (Taskrunner, TaskrunnerJournal)}
ALL = {**TASKRUNNERS, **PEERS}
