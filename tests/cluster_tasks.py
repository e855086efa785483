"""Tasks for the cluster tests, importable on the Dask workers (their PYTHONPATH has tests/)."""

from __future__ import annotations

import time
from typing import Any


class Sleep:
    """A blocking task: sleeps `wait` seconds in run(), then returns `value`."""

    def __init__(self, value: Any, wait: float) -> None:
        self.value, self.wait = value, wait

    def run(self) -> Any:
        time.sleep(self.wait)
        return self.value

    def get_output(self) -> Any:
        return None


class Later:
    """A polling task: run() returns at once; get_output() is `value` after `wait` seconds."""

    def __init__(self, value: Any, wait: float) -> None:
        self.value, self.wait, self.started = value, wait, None

    def run(self) -> None:
        self.started = time.monotonic()

    def get_output(self) -> Any:
        if self.started is not None and time.monotonic() - self.started >= self.wait:
            return self.value
        return None


class Boom:
    """A blocking task that fails in run()."""

    def run(self) -> Any:
        raise ValueError("boom on the worker")

    def get_output(self) -> Any:
        return None


class Unreadable:
    """A result that pickles on the worker and cannot be unpickled elsewhere."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("only readable on the worker")


class GivesUnreadable:
    """A blocking task whose result the client cannot unpickle."""

    def run(self) -> Any:
        return Unreadable()

    def get_output(self) -> Any:
        return None


class Echo(Sleep):
    """Sleep under a name of its own, for the tests of how tasks travel."""
