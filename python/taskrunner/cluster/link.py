"""The client side: a runner's tasks sent to Dask workers, their states brought back.

Each task submitted to a cluster runner is recorded by the runner's own engine
as a task that runs elsewhere (``submit(..., _elsewhere=True)``): ``status``, ``wait``,
handles, callbacks and timeouts work on it as on a local task. A dispatcher
thread sends the tasks to the workers in batches (one Dask task a batch and
worker) and applies the batched updates the workers send back (one Dask
event a batch) to those records.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
import uuid
import weakref
from collections import Counter
from typing import Any, Optional

import distributed

from taskrunner._core import PollPolicy, Runner, TaskHandle, TaskLost
from taskrunner.cluster import DEFAULT_GRACE, DEFAULT_MAX_ATTEMPTS, ClusterUnreachable, agent, wire

log = logging.getLogger("taskrunner.cluster")

# How often the dispatcher asks the scheduler which workers are alive.
MEMBERSHIP_INTERVAL = 0.25
# How long the dispatcher lets submits gather into one batch: a lone submit
# waits GATHER; while a burst keeps coming, up to GATHER_MOST, so that a
# burst makes few large Dask tasks (each costs the scheduler a graph update).
GATHER = 0.001
GATHER_MOST = 0.005


# Options of a local submit that a cluster does not take yet.
SCHEDULING_OPTIONS = frozenset({"retries", "delay", "not_before", "priority", "after", "limit"})


class Remote:
    """What the link keeps of an unfinished task: enough to send it again."""

    __slots__ = ("attempt", "data", "kind", "name", "poll", "worker")

    def __init__(self, data: Any, kind: Optional[str], name: str, poll: Any, attempt: int = 1):
        self.attempt, self.data, self.kind, self.name = attempt, data, kind, name
        self.poll = poll  # (min_interval, max_interval, ratio, errors) or None
        self.worker: Optional[str] = None  # where it was sent, once it is

    def submission(self, cid: int) -> list:
        return [cid, self.attempt, self.data, self.kind, self.name, self.poll]


class ClusterLink:
    """Sends one runner's tasks to a Dask cluster and keeps their records current.

    Args:
        runner: the runner whose engine keeps the records.
        cluster: a ``distributed.Client``, a scheduler address, or ``"local"``.
        max_attempts: how many times a task runs at most when its workers are lost.
        grace: seconds without the scheduler before the unfinished tasks fail.
    """

    def __init__(
        self,
        runner: Any,
        cluster: Any,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        grace: float = DEFAULT_GRACE,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not grace >= 0:
            raise ValueError(f"cluster_grace must be >= 0 seconds, got {grace}")
        self.runner = runner
        self.max_attempts = max_attempts
        self.grace = grace
        self.client, self._owned = _connect(cluster)
        self.address: str = self.client.scheduler.address
        self.token = uuid.uuid4().hex
        self._lock = threading.Lock()  # the condition's: cheaper to take on its own
        self._cond = threading.Condition(self._lock)
        self._outbox: list[list] = []  # submissions not yet placed
        self._cancels: list[tuple[int, str]] = []  # (id, worker)
        self._inbox: list[bytes] = []  # update batches from workers, pickled
        self._tasks: dict[int, Remote] = {}  # the unfinished ones
        self._workers: set[str] = set()
        self._load: Counter[str] = Counter()  # unfinished tasks sent to each worker
        # Each worker's last word on itself, and when it came (monotonic).
        self._health: dict[str, tuple[dict, float]] = {}
        # Since when the scheduler has been out of reach (monotonic), or None.
        self._lost_since: Optional[float] = None
        self._stopping = False
        # The runner's shutdown starts one closing thread (see TaskRunner.shutdown).
        self.closing_lock = threading.Lock()
        self.closer: Optional[threading.Thread] = None
        self._attach()
        self._refresh_workers()
        self._take_recovered()
        self._thread = threading.Thread(
            target=self._dispatch_loop, name="taskrunner-cluster-dispatcher", daemon=True
        )
        self._thread.start()
        # Runs before Dask's own exit hooks (registered earlier), while the
        # workers can still hand back what runs on them.
        self._exit_hook = functools.partial(_at_exit, weakref.ref(runner))
        atexit.register(self._exit_hook)

    # The runner's face -------------------------------------------------------

    def submit(
        self,
        task: Any,
        *,
        kind: Optional[str] = None,
        timeout: Optional[float] = None,
        name: Optional[str] = None,
        poll: Optional[PollPolicy] = None,
        durable: bool = False,
        recipe: Any = None,
        key: Optional[str] = None,
        type: Optional[str] = None,
        **scheduling: Any,
    ) -> TaskHandle:
        """Records a task and queues it for a worker; see ``TaskRunner.submit``.

        Raises:
            TypeError: when the task cannot be pickled.
            ValueError: for a scheduling option (retries, delay, ...): not
                on a cluster yet.
            ClusterUnreachable: while the scheduler is out of reach.
        """
        asked = sorted(k for k, v in scheduling.items() if v)
        unknown = set(scheduling) - SCHEDULING_OPTIONS
        if unknown:
            raise TypeError(f"submit() got an unexpected keyword argument {min(unknown)!r}")
        if asked:
            raise ValueError(f"{', '.join(asked)}: not on a cluster yet (see the scheduling docs)")
        if self._lost_since is not None or self.client.status != "running":
            raise ClusterUnreachable(
                f"the cluster's scheduler at {self.address} is out of reach "
                f"(client {self.client.status}); submit again once it is back"
            )
        data = wire.pack_task(task)
        handle = Runner.submit(
            self.runner,
            task,
            kind=kind,
            timeout=timeout,
            name=name,
            poll=poll,
            durable=durable,
            recipe=recipe,
            key=key,
            type=type,
            _elsewhere=True,
        )
        policy = (
            None
            if poll is None
            else (poll.min_interval, poll.max_interval, poll.ratio, poll.errors)
        )
        self._send_later(handle, Remote(data, kind, handle.name, policy))
        return handle

    def _send_later(self, handle: TaskHandle, remote: Remote) -> None:
        with self._lock:
            # A repeated idempotency key gives the task its key first made.
            if handle.id in self._tasks or handle.done():
                return
            if remote.kind is None:
                remote.kind = handle.kind
            self._tasks[handle.id] = remote
            self._outbox.append(remote.submission(handle.id))
            if len(self._outbox) == 1:  # the dispatcher sleeps only on an empty one
                self._cond.notify()
        handle.add_done_callback(self._ended)

    def _take_recovered(self) -> None:
        # Tasks the journal's last process left unfinished run here again.
        for handle, task in self.runner._take_recovered():
            try:
                data = wire.pack_task(task)
            except TypeError as exc:
                error = ("TypeError", str(exc), str(exc), exc)
                self.runner._finished_elsewhere([(handle.id, None, "failed", None, error, 0)])
                continue
            remote = Remote(data, None, handle.name, None, attempt=handle.status()["attempt"])
            self._send_later(handle, remote)

    def _ended(self, handle: TaskHandle) -> None:
        # A done callback: cancels and timeouts here reach the worker.
        with self._cond:
            remote = self._tasks.pop(handle.id, None)
            if remote is None or remote.worker is None:
                return  # one not sent yet never is (see `_place`)
            if remote.worker in self._load:  # not for a lost worker's
                self._load[remote.worker] -= 1
            if handle.state in ("cancelled", "timed_out"):
                self._cancels.append((handle.id, remote.worker))
                self._cond.notify()

    def _received(self, event: tuple[float, dict]) -> None:
        # On the client's event loop: hand over, never call into the runner here.
        with self._cond:
            self._inbox.append(event[1])
            self._cond.notify()

    # The dispatcher thread ---------------------------------------------------

    def _dispatch_loop(self) -> None:
        next_membership = time.monotonic() + MEMBERSHIP_INTERVAL
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or self._outbox or self._inbox or self._cancels,
                    timeout=max(0.0, next_membership - time.monotonic()),
                )
                if self._stopping:
                    return
            if self._outbox:
                self._gather()
            with self._cond:
                inbox, self._inbox = self._inbox, []
                cancels, self._cancels = self._cancels, []
            try:
                self._apply(inbox)
                if time.monotonic() >= next_membership:
                    if self._check_connection():
                        self._refresh_workers()
                    next_membership = time.monotonic() + MEMBERSHIP_INTERVAL
                if self._lost_since is None:
                    self._send_cancels(cancels)
                    self._send_outbox()
            except Exception:
                if not self._stopping:
                    log.exception("taskrunner: the cluster dispatcher hit an error")

    def _gather(self) -> None:
        until = time.monotonic() + GATHER_MOST
        seen = len(self._outbox)
        while True:
            time.sleep(GATHER)
            now = len(self._outbox)
            if now == seen or time.monotonic() >= until:
                return
            seen = now

    def _apply(self, inbox: list[bytes]) -> None:
        # Only this thread changes an unfinished task's attempt, and a dict
        # read needs no lock: an update for a run given up for lost is stale.
        tasks = self._tasks
        now = time.monotonic()
        for packed in inbox:
            batch = wire.unpack(packed)
            health = batch["health"]
            if health:
                self._health[health["address"]] = (health, now)
            starts = [
                (cid, kind, worker)
                for cid, attempt, kind, worker in batch["starts"]
                if getattr(tasks.get(cid), "attempt", None) == attempt
            ]
            if starts:
                self.runner._started_elsewhere(starts)
            ends = []
            for cid, attempt, kind, state, result, error, polls in batch["ends"]:
                remote = tasks.get(cid)
                if remote is None or remote.attempt != attempt:
                    continue
                value = result
                if isinstance(result, wire.Packed):
                    try:
                        value = wire.unpack(result)
                    except Exception as exc:
                        state, value = "failed", None
                        unreadable = f"the task's result cannot be unpickled here: {exc}"
                        error = wire.pack_error(wire.RemoteTaskError(unreadable), trace="")
                if error is not None:
                    error = wire.unpack_error(error, remote.worker or "?")
                ends.append((cid, kind, state, value, error, polls))
            if ends:
                self.runner._finished_elsewhere(ends)

    def _send_outbox(self) -> None:
        with self._cond:
            outbox, self._outbox = self._outbox, []
        if not outbox:
            return
        if not self._workers:
            self._refresh_workers()
        if not self._workers:
            with self._cond:  # pending until a worker joins
                self._outbox[:0] = outbox
            return
        batches = self._place(outbox)
        for worker, batch in batches.items():
            submissions, groups = wire.pack_tasks(batch)
            packed = wire.pack_value({"submissions": submissions, "groups": groups})
            # As one bytes object, which Dask passes on without looking inside.
            future = self.client.submit(
                agent.accept, self.token, packed, workers=[worker], pure=False
            )
            distributed.fire_and_forget(future)

    def _place(self, outbox: list[list]) -> dict[str, list]:
        # The least loaded workers first (by the tasks each holds for this
        # runner), each up to an even share of all.
        with self._lock:
            load, tasks = self._load, self._tasks
            # One that ended (cancelled, timed out) before it was sent never is.
            outbox = [submission for submission in outbox if submission[0] in tasks]
            workers = sorted(self._workers, key=load.__getitem__)
            share = -(-(sum(load[w] for w in workers) + len(outbox)) // len(workers))
            batches: dict[str, list] = {}
            start = 0
            for worker in workers:
                batch = outbox[start : start + max(0, share - load[worker])]
                if not batch:
                    continue
                start += len(batch)
                for submission in batch:
                    tasks[submission[0]].worker = worker
                load[worker] += len(batch)
                batches[worker] = batch
        return batches

    def _send_cancels(self, cancels: list[tuple[int, str]]) -> None:
        by_worker: dict[str, list[int]] = {}
        for cid, worker in cancels:
            by_worker.setdefault(worker, []).append(cid)
        for worker, cids in by_worker.items():
            future = self.client.submit(
                agent.cancel, self.token, cids, workers=[worker], pure=False
            )
            distributed.fire_and_forget(future)

    def _attach(self) -> None:
        # Per scheduler: a new one (after a restart) knows neither.
        self.client.register_plugin(agent.TaskrunnerPlugin(), name=agent.PLUGIN_NAME)
        self.client.subscribe_topic(agent.topic_of(self.token), self._received)

    def _check_connection(self) -> bool:
        """Whether the scheduler is in reach; fails the unfinished tasks once
        it has been out of reach for `grace` seconds."""
        if self.client.status == "closed" and self._owned == "client":
            self._reconnect()
        if self.client.status == "running":
            if self._lost_since is not None:
                self._lost_since = None
                self._attach()
                log.warning("taskrunner: the cluster's scheduler at %s is back", self.address)
                # Their updates since the loss went nowhere: run them again.
                with self._cond:
                    placed = {r.worker for r in self._tasks.values() if r.worker is not None}
                self._rerun(placed)
            return True
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
            log.warning(
                "taskrunner: lost the cluster's scheduler at %s; unfinished tasks fail "
                "in %.3g s unless it comes back",
                self.address,
                self.grace,
            )
        if now - self._lost_since >= self.grace:
            self._fail_unfinished(now - self._lost_since)
        return False

    def _reconnect(self) -> None:
        # A client made from an address gives up after its own timeout; a new
        # one is tried each membership check, briefly, while the scheduler is away.
        try:
            client = distributed.Client(self.address, timeout=1, set_as_default=False)
        except Exception:
            return
        old, self.client = self.client, client
        old.close()

    def _fail_unfinished(self, lost_for: float) -> None:
        with self._cond:
            ids = list(self._tasks)
            self._outbox.clear()
        if not ids:
            return
        message = (
            f"the cluster's scheduler at {self.address} was out of reach for "
            f"{lost_for:.3g} s (cluster_grace {self.grace:g} s)"
        )
        ends = [
            (cid, None, "failed", None, ("TaskLost", message, message, TaskLost(message)), 0)
            for cid in ids
        ]
        self.runner._finished_elsewhere(ends)
        log.warning("taskrunner: %d unfinished cluster task(s) failed: %s", len(ids), message)

    def workers(self) -> list[dict[str, Any]]:
        """The cluster's live workers, each with this runner's tasks on it and
        its taskrunner threads, from the worker's last report."""
        now = time.monotonic()
        with self._cond:
            placed = Counter(self._load)
            live = sorted(self._workers)
        rows = []
        for address in live:
            health, seen = self._health.get(address, ({}, None))
            rows.append(
                {
                    "address": address,
                    "tasks": placed[address],
                    "running": health.get("running", 0),
                    "threads": health.get("threads"),
                    "busy": health.get("busy"),
                    "polling": health.get("polling"),
                    "queued": health.get("queued"),
                    "heartbeat": None if seen is None else round(now - seen, 3),
                }
            )
        return rows

    def _refresh_workers(self) -> None:
        if self.client.status != "running":
            return  # no word from the scheduler is no news of the workers
        workers = live_workers(self.client)
        with self._cond:
            lost = self._workers - workers
            joined = workers - self._workers
            self._workers = workers
        if joined:
            # So that a worker reports itself before it has a task of ours.
            self.client.run(agent.hello, self.token, workers=sorted(joined), wait=False)
        if lost:
            self._rerun(lost)

    def _rerun(self, lost: set[str]) -> None:
        """Runs the unfinished tasks of lost workers again, up to `max_attempts` runs."""
        again: list[int] = []
        given_up: list[tuple[int, str, int]] = []
        with self._cond:
            for cid, remote in self._tasks.items():
                if remote.worker in lost:
                    if remote.attempt < self.max_attempts:
                        again.append(cid)
                    else:
                        given_up.append((cid, remote.worker, remote.attempt))
            for worker in lost:
                self._load.pop(worker, None)
        for cid, attempt in self.runner._requeue(again):
            with self._cond:
                remote = self._tasks.get(cid)
                if remote is None:
                    continue
                remote.attempt, remote.worker = attempt, None
                self._outbox.append(remote.submission(cid))
        ends = []
        for cid, worker, attempts in given_up:
            message = (
                f"task {cid} was lost with cluster worker {worker} "
                f"on each of its {attempts} attempts"
            )
            exc = TaskLost(message)
            ends.append((cid, None, "failed", None, ("TaskLost", message, message, exc), 0))
        if ends:
            self.runner._finished_elsewhere(ends)
        if again or given_up:
            log.warning(
                "taskrunner: lost cluster worker(s) %s: %d task(s) run again, %d given up",
                ", ".join(sorted(lost)),
                len(again),
                len(given_up),
            )

    # Shutdown ----------------------------------------------------------------

    def close(self) -> None:
        """Stops the dispatcher; closes the client and cluster if this link made them."""
        atexit.unregister(self._exit_hook)
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        if self.client.status == "running":
            try:
                self.client.unsubscribe_topic(agent.topic_of(self.token))
                self.client.run(agent.forget, self.token, wait=False)
            except Exception:
                pass
        if self._owned:
            cluster = self.client.cluster if self._owned == "cluster" else None
            self.client.close()
            if cluster is not None:
                cluster.close()

    def describe(self) -> str:
        return f"{self.address} ({len(self._workers)} workers)"


def _connect(cluster: Any) -> tuple[distributed.Client, Optional[str]]:
    """The client for `cluster`, and what of it the link made (to close at shutdown)."""
    if isinstance(cluster, distributed.Client):
        return cluster, None
    if cluster == "local":
        # taskrunner runs the tasks on its own threads; a Dask thread only
        # hands batches over.
        local = distributed.LocalCluster(
            n_workers=min(4, max(2, os.cpu_count() or 1)),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )
        return distributed.Client(local, set_as_default=False), "cluster"
    if isinstance(cluster, str):
        return distributed.Client(cluster, set_as_default=False), "client"
    raise TypeError(
        "cluster must be a distributed.Client, a scheduler address ('tcp://host:8786') "
        f"or 'local', got {cluster!r}"
    )


def live_workers(client: distributed.Client) -> set[str]:
    """The addresses of the cluster's workers now."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # before distributed 2025, it listed every worker unasked
        info = client.scheduler_info()
    return set(info.get("workers", ()))


def _at_exit(runner_ref: Any) -> None:
    """As a local runner at exit: pending and polling tasks are cancelled,
    running blocking ones waited for; then the link closes."""
    runner = runner_ref()
    if runner is None or runner.closed:
        return
    Runner.shutdown(runner, False, cancel_pending=True)  # the core's: no closing thread
    for status in runner.tasks("running"):
        if status["kind"] == "polling":
            runner.cancel(status["id"])
    runner.shutdown(wait=True)
