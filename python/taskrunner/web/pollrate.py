"""Polls per second, from the runner's running total of ``get_output()`` calls."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class PollRateMeter:
    """The average rate of a growing total over about the last ``window`` seconds.

    Samples are taken when the rate is asked for, so no thread is needed: the
    rate covers the time since the newest sample that is at least ``window``
    seconds old (or since the first sample, early on).
    """

    def __init__(
        self,
        total: int = 0,
        *,
        window: float = 5.0,
        resolution: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._resolution = resolution
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int]] = deque([(clock(), total)])

    def rate(self, total: int) -> float:
        """Records ``total`` as of now and returns the rate per second."""
        now = self._clock()
        with self._lock:
            if now - self._samples[-1][0] >= self._resolution:
                self._samples.append((now, total))
            while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
                self._samples.popleft()
            since, base = self._samples[0]
        elapsed = now - since
        return max(total - base, 0) / elapsed if elapsed > 0 else 0.0
