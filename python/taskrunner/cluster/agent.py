"""The worker side: one taskrunner engine in each Dask worker process.

A `TaskrunnerPlugin`, registered by the client, gives each worker an `Agent`:
a local `TaskRunner` that runs the tasks the client sends (blocking ones on
its elastic pool, polling ones on its poller), and a reporter thread that
reads the runner's state changes and sends them back in batches, one Dask
event per batch and client.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

from distributed import WorkerPlugin, get_worker

from taskrunner._core import PollPolicy
from taskrunner.cluster import wire
from taskrunner.runner import TaskRunner

log = logging.getLogger("taskrunner.cluster")

PLUGIN_NAME = "taskrunner"
# The reporter sends a change at once after a quiet spell, and under load at
# most one batch per interval: well under the 100 ms in which the client
# should see a task start.
REPORT_INTERVAL = 0.01
# Events a reporter may fall behind by; ample, as it only copies them out.
EVENT_CAPACITY = 1 << 20
# How often each client runner hears how this worker is, with or without news.
HEARTBEAT_INTERVAL = 1.0


def topic_of(token: str) -> str:
    """The Dask event topic that carries one client runner's updates."""
    return f"taskrunner-{token}"


class TaskrunnerPlugin(WorkerPlugin):
    """Starts an `Agent` on each worker, present and future."""

    name = PLUGIN_NAME
    idempotent = True

    def setup(self, worker: Any) -> None:
        self.agent = Agent(worker)

    def teardown(self, worker: Any) -> None:
        self.agent.close()


class Agent:
    """Runs tasks for any number of client runners in one worker process."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.address: str = worker.address
        self.runner = TaskRunner()
        self._lock = threading.Lock()
        # local id -> (client token, client id, attempt, kind), while the task runs here.
        self._owners: dict[int, tuple[str, int, int, Optional[str]]] = {}
        # (client token, client id) -> local id, for cancels.
        self._local: dict[tuple[str, int], int] = {}
        # Cancels that came before their task.
        self._early_cancels: set[tuple[str, int]] = set()
        # Each client runner's tasks running here, by local id.
        self._running: dict[str, set[int]] = {}
        self._events = self.runner.events(capacity=EVENT_CAPACITY)
        self._stopping = threading.Event()
        self._reporter = threading.Thread(
            target=self._report_loop, name="taskrunner-cluster-reporter", daemon=True
        )
        self._reporter.start()

    def accept(self, token: str, batch: dict) -> None:
        """Starts a batch of tasks from one client runner."""
        failed: list = []
        groups = wire.unpack_tasks(batch["groups"])
        for cid, attempt, data, kind, name, poll in batch["submissions"]:
            key = (token, cid)
            try:
                task = wire.task_of(data, groups)
            except Exception as exc:
                failed.append([cid, attempt, kind, "failed", None, wire.pack_error(exc), 0])
                continue
            with self._lock:
                if key in self._early_cancels:
                    self._early_cancels.discard(key)
                    failed.append([cid, attempt, kind, "cancelled", None, None, 0])
                    continue
                try:
                    policy = None if poll is None else PollPolicy(*poll[:3], errors=poll[3])
                    handle = self.runner.submit(task, kind=kind, name=name, poll=policy)
                except Exception as exc:
                    failed.append([cid, attempt, kind, "failed", None, wire.pack_error(exc), 0])
                    continue
                self._owners[handle.id] = (token, cid, attempt, kind)
                self._local[key] = handle.id
                self._running.setdefault(token, set())
        if failed:
            self._send({token: ([], failed)})

    def cancel(self, token: str, cids: list) -> None:
        """Cancels tasks of one client runner, where they can be (as locally)."""
        for cid in cids:
            with self._lock:
                local = self._local.get((token, cid))
                if local is None:
                    self._early_cancels.add((token, cid))
                    continue
            try:
                self.runner.cancel(local)
            except KeyError:
                pass  # ended and reported meanwhile

    def greet(self, token: str) -> None:
        """Starts the heartbeats to a client runner."""
        with self._lock:
            self._running.setdefault(token, set())

    def forget(self, token: str) -> None:
        """Stops the heartbeats to a client runner that closed."""
        with self._lock:
            self._running.pop(token, None)

    def _report_loop(self) -> None:
        next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        last_sent = 0.0
        while not self._stopping.is_set():
            try:
                batch = self._events.next_batch(
                    timeout=max(0.0, next_heartbeat - time.monotonic()), max=65536
                )
                hold_until = last_sent + REPORT_INTERVAL
                while batch and time.monotonic() < hold_until:
                    batch.extend(
                        self._events.next_batch(
                            timeout=max(0.0, hold_until - time.monotonic()), max=65536
                        )
                    )
                if batch:
                    last_sent = time.monotonic()
                updates = self._updates(batch) if batch else {}
                if time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
                    with self._lock:
                        tokens = list(self._running)
                    for token in tokens:
                        updates.setdefault(token, ([], []))
                self._send(updates)
            except Exception:
                log.exception("taskrunner: reporting task updates failed")

    def _updates(self, events: list[tuple[int, str]]) -> dict[str, tuple[list, list]]:
        updates: dict[str, tuple[list, list]] = {}
        ended: list[int] = []
        with self._lock:
            for local, state in events:
                if state == "pending":
                    continue
                owner = self._owners.get(local)
                if owner is None:
                    continue
                token, cid, attempt, kind = owner
                starts, ends = updates.setdefault(token, ([], []))
                running = self._running.setdefault(token, set())
                if state == "running":
                    kind = kind or self._kind(local)  # classified on the client as a rule
                    starts.append([cid, attempt, kind, self.address])
                    running.add(local)
                else:
                    ends.append(self._end(local, cid, attempt, state))
                    del self._owners[local]
                    self._local.pop((token, cid), None)
                    running.discard(local)
                    ended.append(local)
        for local in ended:
            try:
                self.runner.forget(local)
            except (KeyError, ValueError):
                pass
        return updates

    def _kind(self, local: int) -> Optional[str]:
        try:
            return self.runner.status(local)["kind"]
        except KeyError:
            return None

    def _end(self, local: int, cid: int, attempt: int, state: str) -> list:
        status = self.runner.status(local)
        result = error = None
        if state == "succeeded":
            result = status["result"]
            if type(result) not in wire.PLAIN:
                try:
                    result = wire.Packed(wire.pack_value(result))
                except Exception as exc:
                    state, result = "failed", None
                    error = wire.pack_error(
                        TypeError(f"the task's result cannot be pickled: {exc}"), trace=""
                    )
        elif state == "failed":
            exc = self.runner.handle(local).exception(timeout=0)
            error = wire.pack_error(exc, trace=status["error"]["traceback"])
        return [cid, attempt, status["kind"], state, result, error, status["polls"]]

    def _send(self, updates: dict[str, tuple[list, list]]) -> None:
        # Every batch says how this worker is: a client's workers panel and
        # heartbeat ages come from it.
        stats = self.runner.stats()
        for token, (starts, ends) in updates.items():
            with self._lock:
                running = len(self._running.get(token, ()))
            health = {
                "address": self.address,
                "running": running,
                "threads": stats["workers"],
                "busy": stats["workers_busy"],
                "polling": stats["polling"],
                "queued": stats["queued"],
            }
            # One bytes object: Dask checks, packs and relays it without
            # walking a nested message.
            batch = {"starts": starts, "ends": ends, "health": health}
            self.worker.log_event(topic_of(token), wire.pack_value(batch))

    def close(self) -> None:
        self._stopping.set()
        self.runner.shutdown(wait=False, cancel_pending=True)


def agent() -> Agent:
    """The agent of the worker this runs on (inside a Dask task)."""
    return get_worker().plugins[PLUGIN_NAME].agent


def accept(token: str, batch: bytes) -> None:
    """A Dask task: hands a batch of submissions (pickled) to this worker's agent."""
    agent().accept(token, wire.unpack(batch))


def cancel(token: str, cids: list) -> None:
    """A Dask task: hands a batch of cancels to this worker's agent."""
    agent().cancel(token, cids)


async def hello(token: str, dask_worker: Any = None) -> None:
    """Run on new workers (``Client.run``, not waited for) by a client runner,
    which then hears from them once a second."""
    plugin = (dask_worker or get_worker()).plugins.get(PLUGIN_NAME)
    if plugin is not None:
        plugin.agent.greet(token)


async def forget(token: str, dask_worker: Any = None) -> None:
    """Run on every worker (``Client.run``, not waited for: hence a coroutine)
    when a client runner closes."""
    plugin = (dask_worker or get_worker()).plugins.get(PLUGIN_NAME)
    if plugin is not None:
        plugin.agent.forget(token)
