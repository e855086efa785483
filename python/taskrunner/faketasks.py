"""The fake tasks of the original challenge, with an optional chosen wait.

``FakeTaskBlocking`` sleeps inside ``run()``; ``FakeTaskPolling`` returns from
``run()`` at once and answers ``None`` from ``get_output()`` until its wait has
passed. Both produce ``2 * input``. As in the originals, the wait is a random
whole number of seconds from 1 to 9; pass ``wait=`` (seconds, may be a
fraction) to choose it, so that tests and demos can run in milliseconds.
"""

from __future__ import annotations

import time
from random import random, randrange
from typing import Any, Optional


def _pick_wait(wait: Optional[float]) -> float:
    if wait is None:
        return randrange(1, 10, 1)
    if not (isinstance(wait, (int, float)) and wait >= 0):
        raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
    return wait


class FakeTask:
    def run(self) -> Any:
        pass

    def get_output(self) -> Any:
        pass


class FakeTaskBlocking(FakeTask):
    """Sleeps for ``time_wait`` seconds inside ``run()``, then returns ``2 * input``."""

    def __init__(self, input: Any, wait: Optional[float] = None) -> None:
        self.input = input
        self.output = None
        self.time_start: Optional[float] = None
        self.time_wait = _pick_wait(wait)

    def run(self) -> Any:
        self.time_start = time.time()
        if self.time_wait:  # even sleep(0) costs a trip through the scheduler
            time.sleep(self.time_wait)
        self.output = 2 * self.input
        return self.output

    def get_output(self) -> Any:
        return self.output


class FakeTaskPolling(FakeTask):
    """Returns from ``run()`` at once; ``get_output()`` is None until ``time_wait`` has passed."""

    def __init__(self, input: Any, wait: Optional[float] = None) -> None:
        self.input = input
        self.output = None
        self.time_start: Optional[float] = None
        self.time_wait = _pick_wait(wait)

    def run(self) -> None:
        self.time_start = time.time()

    def get_output(self) -> Any:
        if self.time_start is None:
            return None
        if time.time() - self.time_start > self.time_wait:
            self.output = 2 * self.input
        return self.output


class _Reporting:
    """Says how much of its wait has passed, as a task's optional ``progress()``."""

    time_start: Optional[float]
    time_wait: float
    output: Any

    def progress(self) -> dict[str, Any]:
        if self.output is not None:
            return {"fraction": 1.0, "message": "done"}
        if self.time_start is None:
            return {"fraction": 0.0, "message": "not started"}
        waited = time.time() - self.time_start
        fraction = min(1.0, waited / self.time_wait) if self.time_wait else 1.0
        return {"fraction": fraction, "message": f"{waited:.1f} of {self.time_wait:g} s"}


class ReportingFakeTaskBlocking(_Reporting, FakeTaskBlocking):
    """A ``FakeTaskBlocking`` that reports its progress (the plain one does not,
    so that benchmarks pay nothing for it)."""


class ReportingFakeTaskPolling(_Reporting, FakeTaskPolling):
    """A ``FakeTaskPolling`` that reports its progress."""


def gen_task(input: Any, wait: Optional[float] = None, *, reporting: bool = False) -> FakeTask:
    """A blocking or a polling fake task, at random (even odds); with
    ``reporting``, one with a ``progress()`` method."""
    if random() > 0.5:
        return (ReportingFakeTaskBlocking if reporting else FakeTaskBlocking)(input, wait)
    return (ReportingFakeTaskPolling if reporting else FakeTaskPolling)(input, wait)
