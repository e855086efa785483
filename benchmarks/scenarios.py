"""The benchmark's scenarios: which tasks, how many, how long, and the targets.

Every implementation runs the very same task classes: the challenge's fake
tasks (``FakeTaskBlocking``, ``FakeTaskPolling``) with a chosen wait, and for
the throughput scenario a trivial blocking task whose ``run()`` returns at once.
Kinds and waits are drawn from a ``random.Random`` with a fixed seed, so every
implementation (each in its own process) gets the same list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

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


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    n: int
    # "mixed": blocking or polling at random; "polling"; "instant" (InstantTask).
    mix: str
    wait_min: float
    wait_max: float

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
        polling, waits = self.plan()
        tasks: list[Any] = []
        for i, (p, w) in enumerate(zip(polling, waits)):
            if self.mix == "instant":
                tasks.append(InstantTask(i))
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
    "poll10k": Scenario("poll10k", "10,000 polling tasks of 2 s each", 10_000, "polling", 2.0, 2.0),
    "instant100k": Scenario(
        "instant100k", "100,000 blocking tasks that return at once", 100_000, "instant", 0.0, 0.0
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
    "poll10k": Scenario(
        "poll10k", "quick: 200 polling tasks of 0.2 s each", 200, "polling", 0.2, 0.2
    ),
    "instant100k": Scenario(
        "instant100k", "quick: 2,000 blocking tasks that return at once", 2_000, "instant", 0.0, 0.0
    ),
}

ORDER = ("mixed100", "poll10k", "instant100k")


def scenarios(quick: bool) -> dict[str, Scenario]:
    return QUICK if quick else FULL


@dataclass(frozen=True)
class Target:
    scenario: str
    figure: str
    op: str  # "<=" or ">="
    value: float
    label: str

    def check(self, measured: Optional[float]) -> Optional[bool]:
        if measured is None:
            return None
        return measured <= self.value if self.op == "<=" else measured >= self.value


def targets(quick: bool) -> list[Target]:
    """The issue's targets. Under --quick the scenarios are smaller, so the
    size-dependent ones are scaled (makespan: wait + 0.15 s; CPU: per task)."""
    poll = scenarios(quick)["poll10k"]
    cpu_limit = 1.5 * poll.n / 10_000
    return [
        Target("mixed100", "excess_ms", "<=", 25.0, "makespan <= ideal + 25 ms"),
        Target("mixed100", "reg_us", "<=", 5.0, "registration <= 5 us/task"),
        Target(
            "poll10k",
            "makespan_s",
            "<=",
            poll.wait_max + 0.15,
            f"makespan <= {poll.wait_max + 0.15:.2f} s",
        ),
        Target("poll10k", "cpu_s", "<=", cpu_limit, f"CPU <= {cpu_limit:g} s"),
        Target("poll10k", "threads", "<=", 8, "<= 8 threads"),
        Target("poll10k", "main_speed", ">=", 0.90, "main thread >= 0.90 of idle speed"),
        Target("instant100k", "tasks_per_s", ">=", 200_000, ">= 200,000 tasks/s"),
    ]
