"""taskrunner.Executor against ThreadPoolExecutor on a flood of tiny callables.

    python benchmarks/executor_bench.py                 # 100,000 calls, median of 9 runs
    python benchmarks/executor_bench.py --calls 20000 --repeat 3
    python benchmarks/executor_bench.py --gc-off        # the same with the garbage collector off

Each run submits every call, then waits for all of them with
``concurrent.futures.wait``, and is timed from the first submit to the end of
the wait. Every run is a fresh process (so that one run's heap and garbage
collector state do not weigh on the next), and the two executors take turns,
so that a noisy machine slows both alike. Both use their default
``max_workers`` unless ``--workers`` is given. Prints the median time of each
executor (wall time, submit loop, process CPU, garbage collection) and the ratios
ThreadPoolExecutor / Executor (above 1: Executor is faster). On a busy machine
the CPU figure is the steadier one.

``--gc-off`` shows the executors' own cost: with the collector on, both pay
the same for collecting 100,000 live ``Future`` objects (about ten tracked
objects each), which is a large share of either total.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, NamedTuple, Optional

EXECUTORS = ("ThreadPoolExecutor", "taskrunner.Executor")
FIGURES = ("total_s", "submit_s", "cpu_s", "gc_s")


class Setup(NamedTuple):
    calls: int
    workers: Optional[int]
    gc_off: bool


def tiny(x: int) -> int:
    return x + 1


def make_executor(name: str, workers: Optional[int]) -> Any:
    if name == "ThreadPoolExecutor":
        return ThreadPoolExecutor(workers)
    from taskrunner.executor import Executor

    return Executor(workers)


class CollectorClock:
    """Adds up the time the garbage collector spends, from its start/stop callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def one_run(name: str, setup: Setup) -> dict[str, float]:
    """Times one flood in this process; checks that every call gave its result."""
    if setup.gc_off:
        gc.disable()
    executor = make_executor(name, setup.workers)
    collector = CollectorClock()
    cpu_started = time.process_time()
    started = time.perf_counter()
    futures = [executor.submit(tiny, i) for i in range(setup.calls)]
    submitted = time.perf_counter()
    wait(futures)
    finished = time.perf_counter()
    cpu_s = time.process_time() - cpu_started
    gc_s = collector.seconds
    executor.shutdown(wait=True)
    if sum(f.result() for f in futures) != setup.calls * (setup.calls + 1) // 2:
        raise AssertionError(f"{name}: wrong results")
    return {
        "submit_s": submitted - started,
        "total_s": finished - started,
        "cpu_s": cpu_s,
        "gc_s": gc_s,
    }


def run_child(name: str, setup: Setup) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", name, "--calls", str(setup.calls)]
    if setup.workers is not None:
        command += ["--workers", str(setup.workers)]
    if setup.gc_off:
        command.append("--gc-off")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def measure(setup: Setup, repeat: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in EXECUTORS}
    for i in range(repeat):
        # Alternate which executor goes first, so neither always follows the other.
        order = EXECUTORS if i % 2 == 0 else EXECUTORS[::-1]
        for name in order:
            runs[name].append(run_child(name, setup))
    return runs


def report(runs: dict[str, list[dict[str, float]]], setup: Setup) -> None:
    repeat = len(runs[EXECUTORS[0]])
    collector = "off" if setup.gc_off else "on"
    print(
        f"{setup.calls:,} tiny callables, submit all then wait all; "
        f"median of {repeat} runs; garbage collector {collector}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    header = f"{'executor':<22}{'total s':>9}{'submit s':>10}{'CPU s':>8}{'GC s':>7}{'calls/s':>10}"
    print(f"{header}   all totals")
    medians = {}
    for name, samples in runs.items():
        total, submit, cpu, collecting = (statistics.median(s[k] for s in samples) for k in FIGURES)
        medians[name] = (total, cpu)
        totals = " ".join(f"{s['total_s']:.3f}" for s in samples)
        rate = setup.calls / total
        figures = f"{total:>9.3f}{submit:>10.3f}{cpu:>8.3f}{collecting:>7.3f}{rate:>10,.0f}"
        print(f"{name:<22}{figures}   {totals}")
    tpe, ours = medians["ThreadPoolExecutor"], medians["taskrunner.Executor"]
    print(
        f"ratio ThreadPoolExecutor / Executor: {tpe[0] / ours[0]:.2f}x in time, "
        f"{tpe[1] / ours[1]:.2f}x in CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--workers", type=int, default=None, help="max_workers of both")
    parser.add_argument("--gc-off", action="store_true", help="disable the garbage collector")
    parser.add_argument("--child", choices=EXECUTORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup = Setup(args.calls, args.workers, args.gc_off)
    if args.child:
        print(json.dumps(one_run(args.child, setup)))
        return
    report(measure(setup, args.repeat), setup)


if __name__ == "__main__":
    main()
