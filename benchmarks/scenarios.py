"""The benchmark's scenarios: which tasks, how many, how long, and the targets.

Every implementation runs the very same task classes: the challenge's fake
tasks (``FakeTaskBlocking``, ``FakeTaskPolling``) with a chosen wait, and three
trivial blocking tasks defined here: ``InstantTask`` (returns at once, holding
the GIL throughout), ``SleepZeroTask`` (``time.sleep(0)`` first: one real GIL
release, as a task that reads a file or waits on a socket makes) and
``GateTask`` (waits for a shared gate, so that its task stays unfinished while
status checks are timed). Kinds and waits are drawn from a ``random.Random``
with a fixed seed, so every implementation (each in its own process) gets the
same list. The HTTP scenario has no task list of its own: its clients send
``POST /api/tasks`` requests, each for a ``fake_blocking`` task of no wait.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Union

from taskrunner.faketasks import FakeTask, FakeTaskBlocking, FakeTaskPolling

SEED = 20240611


class InstantTask(FakeTask):
    """A blocking task whose ``run()`` returns ``2 * input`` at once (no sleep, no GIL release)."""

    def __init__(self, input: Any) -> None:
        self.input = input
        self.output = None
        self.time_wait = 0.0

    def run(self) -> Any:
        self.output = 2 * self.input
        return self.output

    def get_output(self) -> Any:
        return self.output


class SleepZeroTask(InstantTask):
    """A blocking task whose ``run()`` calls ``time.sleep(0)``, then returns ``2 * input``.

    ``sleep(0)`` releases the GIL and takes it back: the least a task that
    does any I/O costs the implementation running it.
    """

    def run(self) -> Any:
        time.sleep(0)
        self.output = 2 * self.input
        return self.output


class GateTask(InstantTask):
    """A blocking task whose ``run()`` waits (GIL released) until ``GATE`` is set."""

    def run(self) -> Any:
        GATE.wait()
        self.output = 2 * self.input
        return self.output


# Every scenario runs in a process of its own, so one module-level gate will do.
GATE = threading.Event()

# The benchmark's own blocking task classes (the fake tasks are registered kinds).
OWN_BLOCKING = (InstantTask, SleepZeroTask, GateTask)
OWN_CLASSES = {"instant": InstantTask, "sleep0": SleepZeroTask, "gate": GateTask}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    n: int
    # "mixed": blocking or polling fake tasks at random; "polling" or
    # "blocking": fake tasks of that kind; "instant", "sleep0", "gate": the
    # classes above.
    mix: str
    wait_min: float
    wait_max: float
    # "run": the quiet and the busy pass (makespan, CPU, main-thread speed);
    # "status": the status pass (nanoseconds per status check); "http": the
    # HTTP pass (n requests from `clients` keep-alive connections).
    passes: str = "run"
    clients: int = 0

    def plan(self) -> tuple[list[bool], list[float]]:
        """Per task: is it polling, and its wait in seconds (seeded, so identical everywhere)."""
        rng = random.Random(f"{SEED}:{self.name}")
        polling: list[bool] = []
        waits: list[float] = []
        for _ in range(self.n):
            if self.mix == "mixed":
                polling.append(rng.random() < 0.5)
            else:
                polling.append(self.mix == "polling")
            if self.wait_min == self.wait_max:
                waits.append(self.wait_min)
            else:
                waits.append(rng.uniform(self.wait_min, self.wait_max))
        return polling, waits

    def build(self) -> tuple[list[Any], list[bool], list[float]]:
        """The task objects, whether each is polling, and each one's wait."""
        if self.passes == "http":
            return [], [], []  # the requests make their tasks in the server
        polling, waits = self.plan()
        tasks: list[Any] = []
        for i, (p, w) in enumerate(zip(polling, waits, strict=True)):
            if self.mix in OWN_CLASSES:
                tasks.append(OWN_CLASSES[self.mix](i))
            elif p:
                tasks.append(FakeTaskPolling(i, wait=w))
            else:
                tasks.append(FakeTaskBlocking(i, wait=w))
        return tasks, polling, waits

    @property
    def ideal_makespan(self) -> float:
        """The longest wait: no implementation can finish sooner."""
        return max(self.plan()[1]) if self.n else 0.0


FULL = {
    "mixed100": Scenario(
        "mixed100",
        "100 tasks, blocking or polling at random, waits uniform 50-500 ms",
        100,
        "mixed",
        0.05,
        0.5,
    ),
    "block100": Scenario(
        "block100",
        "100 blocking tasks of 0.5 s each, submitted together",
        100,
        "blocking",
        0.5,
        0.5,
    ),
    "poll10k": Scenario("poll10k", "10,000 polling tasks of 2 s each", 10_000, "polling", 2.0, 2.0),
    "instant100k": Scenario(
        "instant100k",
        "100,000 blocking tasks that return at once, holding the GIL",
        100_000,
        "instant",
        0.0,
        0.0,
    ),
    "sleep0_100k": Scenario(
        "sleep0_100k",
        "100,000 blocking tasks that call time.sleep(0) (one GIL release) and return",
        100_000,
        "sleep0",
        0.0,
        0.0,
    ),
    "status1k": Scenario(
        "status1k",
        "status checks, ns per call, on 1,000 unfinished blocking tasks, then on the same finished",
        1_000,
        "gate",
        0.0,
        0.0,
        passes="status",
    ),
    "http10k": Scenario(
        "http10k",
        "10,000 POST /api/tasks from 8 keep-alive clients to a real server on 127.0.0.1 "
        "(tasks/s: accepted submits per second)",
        10_000,
        "http",
        0.0,
        0.0,
        passes="http",
        clients=8,
    ),
}

# --quick keeps the names (so the report reads the same) but shrinks the work.
QUICK = {
    "mixed100": Scenario(
        "mixed100",
        "quick: 20 tasks, blocking or polling at random, waits uniform 50-200 ms",
        20,
        "mixed",
        0.05,
        0.2,
    ),
    "block100": Scenario(
        "block100",
        "quick: 100 blocking tasks of 0.1 s each, submitted together",
        100,
        "blocking",
        0.1,
        0.1,
    ),
    "poll10k": Scenario(
        "poll10k", "quick: 200 polling tasks of 0.2 s each", 200, "polling", 0.2, 0.2
    ),
    "instant100k": Scenario(
        "instant100k",
        "quick: 2,000 blocking tasks that return at once, holding the GIL",
        2_000,
        "instant",
        0.0,
        0.0,
    ),
    "sleep0_100k": Scenario(
        "sleep0_100k",
        "quick: 2,000 blocking tasks that call time.sleep(0) and return",
        2_000,
        "sleep0",
        0.0,
        0.0,
    ),
    "status1k": Scenario(
        "status1k",
        "quick: status checks, ns per call, on 200 unfinished blocking tasks, then finished",
        200,
        "gate",
        0.0,
        0.0,
        passes="status",
    ),
    "http10k": Scenario(
        "http10k",
        "quick: 1,000 POST /api/tasks from 8 keep-alive clients to a real server on 127.0.0.1",
        1_000,
        "http",
        0.0,
        0.0,
        passes="http",
        clients=8,
    ),
}

ORDER = ("mixed100", "block100", "poll10k", "instant100k", "sleep0_100k", "status1k", "http10k")


def scenarios(quick: bool) -> dict[str, Scenario]:
    return QUICK if quick else FULL


@dataclass(frozen=True)
class Target:
    scenario: str
    figure: str  # a key of the figures run.py takes the median of
    op: str  # "<=" or ">="
    value: float
    label: str
    # Whose target: the in-memory taskrunner rows' (False) or the journaled ones' (True).
    journal: bool = False

    def check(self, measured: Optional[float]) -> Optional[bool]:
        if measured is None:
            return None
        return measured <= self.value if self.op == "<=" else measured >= self.value


@dataclass(frozen=True)
class SameRun:
    """Targets that must all be met in one run, not each in a run of its own:
    met when they are in more than half the runs (the median run)."""

    scenario: str
    parts: tuple[Target, ...]
    label: str
    journal: bool = False

    def check_run(self, figures: dict[str, Optional[float]]) -> Optional[bool]:
        verdicts = [t.check(figures.get(t.figure)) for t in self.parts]
        return None if None in verdicts else all(verdicts)


@dataclass(frozen=True)
class Relative:
    """A journaled row's figure as a fraction of the in-memory row's (``of``),
    on the same scenario: met when the ratio of the medians is at least ``ratio``."""

    scenario: str
    figure: str
    of: str  # the in-memory row's label
    ratio: float
    label: str
    journal: bool = True

    def check(self, measured: Optional[float], base: Optional[float]) -> Optional[bool]:
        if measured is None or not base:
            return None
        return measured / base >= self.ratio


# The status checks with a target, in nanoseconds per call (no scaling under --quick).
STATUS_TARGETS = {"handler.get_task_status(i)": 150.0, "handle.done()": 150.0}


def targets(quick: bool) -> list[Union[Target, SameRun, Relative]]:
    """The issue's targets. Under --quick the scenarios are smaller, so the
    size-dependent ones are scaled (makespan: the wait + the same margin; CPU:
    per task); the rates, thread counts and status checks are not. The
    targets marked ``journal`` are those of a runner with a journal."""
    scens = scenarios(quick)
    block, poll = scens["block100"], scens["poll10k"]
    block_makespan = block.wait_max + 0.05
    poll_makespan = poll.wait_max + 0.05
    journal_poll_makespan = poll.wait_max + 0.15
    poll_cpu = 0.5 * poll.n / 10_000
    poll_parts = (
        Target("poll10k", "makespan_s", "<=", poll_makespan, f"makespan <= {poll_makespan:.2f} s"),
        Target("poll10k", "cpu_s", "<=", poll_cpu, f"CPU <= {poll_cpu:g} s"),
    )
    return [
        Target("mixed100", "excess_ms", "<=", 25.0, "makespan <= ideal + 25 ms"),
        Target("mixed100", "reg_us", "<=", 5.0, "registration <= 5 us/task"),
        Target(
            "block100", "makespan_s", "<=", block_makespan, f"makespan <= {block_makespan:.2f} s"
        ),
        *poll_parts,
        SameRun("poll10k", poll_parts, "both in the same run"),
        Target("poll10k", "threads", "<=", 8, "<= 8 threads"),
        Target("poll10k", "main_speed", ">=", 0.90, "main thread >= 0.90 of idle speed"),
        Target("instant100k", "tasks_per_s", ">=", 1_000_000, ">= 1,000,000 tasks/s"),
        Target("sleep0_100k", "tasks_per_s", ">=", 200_000, ">= 200,000 tasks/s"),
        Target("sleep0_100k", "threads", "<=", 8, "<= 8 threads"),
        *(
            Target("status1k", f"ns:{call}", "<=", ns, f"{call} <= {ns:.0f} ns")
            for call, ns in STATUS_TARGETS.items()
        ),
        # A journal's targets: every submit and state change on disk (the run
        # ends when flush() returns).
        Target("mixed100", "reg_us", "<=", 5.0, "registration <= 5 us/task", journal=True),
        Target(
            "poll10k",
            "makespan_s",
            "<=",
            journal_poll_makespan,
            f"makespan <= {journal_poll_makespan:.2f} s",
            journal=True,
        ),
        Target("instant100k", "tasks_per_s", ">=", 150_000, ">= 150,000 tasks/s", journal=True),
        Relative("http10k", "tasks_per_s", "taskrunner", 0.80, ">= 0.80 of in-memory submits/s"),
    ]
