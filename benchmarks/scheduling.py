"""Benchmark the scheduling options of ``submit`` (priority, limit, retries), and
taskrunner beside Huey on a scheduled workload, in one process.

    python benchmarks/scheduling.py            # 10,000 tasks (about 1 minute)
    python benchmarks/scheduling.py --quick    # 2,000 tasks, a few seconds (CI smoke run)

Two parts, each on two kinds of task: ``sleep0`` (``run()`` calls
``time.sleep(0)``, one GIL release, as a task doing I/O does) and ``gil`` (``run()``
returns at once, holding the GIL throughout).

- ``overhead``: the same tasks submitted plainly (``submit(task, kind="blocking")``)
  and with every scheduling option on every task (``priority`` from the plan's
  levels, ``limit="db"`` with a limit of as many as there are tasks, so it never
  holds one back, and ``retries=Retry(2, backoff=0)``; no task fails). Each
  figure is microseconds per task: the submit loop, and end to end (first
  submit to ``runner.wait()`` returning). Plain and scheduled runs alternate,
  which goes first alternating too; the overhead is the median of the paired
  differences. Target: at most 1 us a task over plain submits.
- ``scenario``: the full workload on taskrunner and on Huey (``MemoryHuey``, its
  consumer's 4 worker threads in this process), taking turns. Each task has a
  priority of 4 levels; a fifth of them carry the label ``db``, limited to 2
  running at once; 1 % of them (a fixed, seeded set) raise on their first run
  and are retried once at once (taskrunner ``Retry(2, backoff=0)``, Huey
  ``retries=1, retry_delay=0``). Huey has priorities and retries of its own but
  no concurrency limit, so its task function holds a ``threading.BoundedSemaphore(2)``
  around a ``db`` task's run, as a user of Huey's thread workers would write (a
  worker waiting there holds its thread). Figures: wall time (first submit to
  the last task done), submit us/task, and the checks below.

Every run is checked: each task ends succeeded with ``2 * i``; a failing task
made exactly 2 attempts by the implementation's own count (taskrunner's
``attempt``, Huey's spent retries) and every other task 1; the ``db`` tasks
never ran more than 2 at once (a counter inside ``run()``; its peak is
reported). A run that fails a check fails the script (exit 1); the times are
not gated.

Options:
    --only overhead,scenario    run only these parts
    --repeat N                  overhead pairs per kind of task (default 41; --quick 3)
    --runs N                    scenario runs per implementation and kind (default 5; --quick 1)
    --json out.json             write every raw and median figure as JSON
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from reporting import competing_cpu, cpu_busy_s, fmt, machine, median, table, write_json  # noqa: E402
from scenarios import SEED, InstantTask  # noqa: E402

import taskrunner  # noqa: E402

LEVELS = (0, 1, 5, 10)  # the priorities, drawn uniformly
LIMITED_SHARE = 0.2  # of the tasks, those labelled "db"
FAILING_SHARE = 0.01  # of the tasks, those whose first run raises
THROTTLE = 2  # the "db" limit of the scenario
ATTEMPTS = 2  # runs of a failing task: the first, and one retry
OVERHEAD_TARGET_US = 1.0
HUEY_WORKERS = 4  # as benchmarks/peers.py's Huey row
KINDS = ("sleep0", "gil")
PARTS = ("overhead", "scenario")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Plan:
    """Per task (seeded, so every run gets the same): its priority, whether it
    is limited, and whether its first run raises."""

    priority: list[int]
    limited: list[bool]
    failing: frozenset[int]

    @classmethod
    def draw(cls, n: int) -> Plan:
        rng = random.Random(f"{SEED}:scheduling:{n}")
        priority = [rng.choice(LEVELS) for _ in range(n)]
        limited = [rng.random() < LIMITED_SHARE for _ in range(n)]
        failing = frozenset(rng.sample(range(n), round(n * FAILING_SHARE)))
        return cls(priority, limited, failing)

    @property
    def n(self) -> int:
        return len(self.priority)


class Gauge:
    """Counts the runs inside it at once, and the most there ever were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class InjectedFailure(Exception):
    pass


class ScheduledTask(InstantTask):
    """A blocking task: ``time.sleep(0)`` first if ``sleeps``; inside ``gauge``
    if given; raises ``InjectedFailure`` on its first run if ``fails``; then
    returns ``2 * input``. ``runs`` counts its runs."""

    def __init__(self, input: int, sleeps: bool, fails: bool, gauge: Optional[Gauge]) -> None:
        super().__init__(input)
        self.sleeps, self.fails, self.gauge = sleeps, fails, gauge
        self.runs = 0
        self.started: Optional[float] = None

    def run(self) -> Any:
        self.runs += 1
        if self.started is None:
            self.started = time.perf_counter()
        gauge = self.gauge
        if gauge is not None:
            gauge.enter()
        try:
            if self.sleeps:
                time.sleep(0)
            if self.fails and self.runs == 1:
                raise InjectedFailure(f"task {self.input}: its first run fails")
            self.output = 2 * self.input
            return self.output
        finally:
            if gauge is not None:
                gauge.leave()


def build(plan: Plan, kind: str, gauge: Optional[Gauge], failures: bool) -> list[ScheduledTask]:
    sleeps = kind == "sleep0"
    return [
        ScheduledTask(
            i,
            sleeps,
            failures and i in plan.failing,
            gauge if gauge is not None and plan.limited[i] else None,
        )
        for i in range(plan.n)
    ]


def retry_policy() -> taskrunner.Retry:
    return taskrunner.Retry(ATTEMPTS, backoff=0, jitter=False)


# The overhead ----------------------------------------------------------------------


def overhead_run(plan: Plan, kind: str, scheduled: bool) -> dict[str, Any]:
    """One run of the plan's tasks, plain or with every option; us per task."""
    n = plan.n
    tasks = build(plan, kind, None, failures=False)
    runner = taskrunner.TaskRunner(limits={"db": n})
    submit, retry = runner.submit, retry_policy()
    pairs = list(zip(tasks, plan.priority, strict=True))
    gc.collect()
    try:
        t0 = time.perf_counter()
        if scheduled:
            handles = [
                submit(t, kind="blocking", priority=p, limit="db", retries=retry) for t, p in pairs
            ]
        else:
            handles = [submit(t, kind="blocking") for t, p in pairs]
        t1 = time.perf_counter()
        runner.wait()
        t2 = time.perf_counter()
        succeeded = runner.counts()["succeeded"]
    finally:
        runner.shutdown(wait=True)
    if succeeded != n or len(handles) != n:
        return {"error": f"{succeeded} of {n} tasks succeeded"}
    return {"submit_us": 1e6 * (t1 - t0) / n, "total_us": 1e6 * (t2 - t0) / n}


def overhead_part(plan: Plan, repeat: int) -> tuple[dict[str, Any], int]:
    """Plain and scheduled runs in pairs, alternating; the medians, and the
    median of the paired differences."""
    results: dict[str, Any] = {k: {"plain": [], "scheduled": []} for k in KINDS}
    warm = Plan.draw(200)
    for kind in KINDS:
        overhead_run(warm, kind, False)
        overhead_run(warm, kind, True)
    failures = 0
    for rep in range(repeat):
        for kind in KINDS:
            order = (False, True) if rep % 2 == 0 else (True, False)
            pair = {}
            for scheduled in order:
                run = overhead_run(plan, kind, scheduled)
                pair[scheduled] = run
                results[kind]["scheduled" if scheduled else "plain"].append(run)
                failures += "error" in run
            plain, sched = pair[False], pair[True]
            if "error" in plain or "error" in sched:
                print(f"!! overhead {kind} run {rep + 1}: {plain} {sched}", file=sys.stderr)
                continue
            print(
                f"  overhead {kind:<6} run {rep + 1}: submit {plain['submit_us']:.3f} / "
                f"{sched['submit_us']:.3f} us, end to end {plain['total_us']:.3f} / "
                f"{sched['total_us']:.3f} us (plain / scheduled)",
                file=sys.stderr,
                flush=True,
            )
    for kind in KINDS:
        entry = results[kind]
        for mode in ("plain", "scheduled"):
            ok = [r for r in entry[mode] if "error" not in r]
            for key in ("submit_us", "total_us"):
                entry[f"{mode}_{key}"] = median([r[key] for r in ok])
        pairs = [
            (p, s)
            for p, s in zip(entry["plain"], entry["scheduled"], strict=True)
            if "error" not in p and "error" not in s
        ]
        for key in ("submit_us", "total_us"):
            extra = [s[key] - p[key] for p, s in pairs]
            entry[f"extra_{key}"] = median(extra)
            entry[f"extra_{key}_quartiles"] = quartiles(extra)
    return results, failures


def quartiles(values: list[float]) -> Optional[tuple[float, float]]:
    """The first and third quartiles: how far the paired differences spread."""
    if len(values) < 2:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def spread(q: Optional[tuple[float, float]]) -> str:
    return "-" if q is None else f"{q[0]:+.3f} .. {q[1]:+.3f}"


def overhead_report(results: dict[str, Any], n: int, repeat: int) -> list[dict[str, Any]]:
    print(
        f"\n# overhead: {n:,} tasks, plain submits against every option on every task "
        f"(priority, limit='db' of {n:,}, Retry({ATTEMPTS}, backoff=0)); us per task, "
        f"medians of {repeat} interleaved pairs; 'extra' is the median of the paired differences"
    )
    rows, checks = [], []
    for kind in KINDS:
        e = results[kind]
        for figure, label in (("submit_us", "submit"), ("total_us", "end to end")):
            extra = e[f"extra_{figure}"]
            ok = None if extra is None else extra <= OVERHEAD_TARGET_US
            verdict = "n/a" if ok is None else ("met" if ok else "NOT MET")
            plain = e[f"plain_{figure}"]
            share = extra / plain if extra is not None and plain else None
            rows.append(
                [
                    kind,
                    label,
                    fmt(plain, "{:.3f}"),
                    fmt(e[f"scheduled_{figure}"], "{:.3f}"),
                    fmt(extra, "{:+.3f}"),
                    spread(e[f"extra_{figure}_quartiles"]),
                    fmt(share, "{:+.0%}"),
                    verdict,
                ]
            )
            checks.append(
                {
                    "part": "overhead",
                    "kind": kind,
                    "figure": figure,
                    "target": f"<= {OVERHEAD_TARGET_US:g} us a task over plain submits",
                    "value": extra,
                    "result": verdict,
                }
            )
    headers = ["tasks", "figure", "plain us", "scheduled us", "extra us", "quartiles"]
    headers += ["extra %", "<= 1 us"]
    print(table(headers, rows))
    return checks


# The scenario ----------------------------------------------------------------------


def problems(plan: Plan, outputs: list[Any], attempts: list[Any], peak: int) -> list[str]:
    """What a run got wrong: results, attempts, the limit."""
    found = []
    wrong = [i for i, out in enumerate(outputs) if out != 2 * i]
    if wrong:
        found.append(f"{len(wrong)} tasks without their result (first: {wrong[:5]})")
    expected = [ATTEMPTS if i in plan.failing else 1 for i in range(plan.n)]
    off = [i for i, (a, e) in enumerate(zip(attempts, expected, strict=True)) if a != e]
    if off:
        found.append(f"{len(off)} tasks with the wrong attempt count (first: {off[:5]})")
    if peak > THROTTLE:
        found.append(f"{peak} db tasks ran at once (limit {THROTTLE})")
    return found


def start_ranks(plan: Plan, tasks: list[ScheduledTask]) -> dict[int, Optional[float]]:
    """Per priority level, the median position (0 first, 1 last) at which its
    tasks first started: how far the priorities reordered the work."""
    order = sorted(range(plan.n), key=lambda i: tasks[i].started or 0.0)
    rank = {i: k / max(1, plan.n - 1) for k, i in enumerate(order)}
    return {
        level: median([rank[i] for i in range(plan.n) if plan.priority[i] == level])
        for level in LEVELS
    }


def with_taskrunner(plan: Plan, kind: str) -> dict[str, Any]:
    gauge = Gauge()
    tasks = build(plan, kind, gauge, failures=True)
    runner = taskrunner.TaskRunner(limits={"db": THROTTLE})
    submit, retry = runner.submit, retry_policy()
    rows = list(zip(tasks, plan.priority, plan.limited, strict=True))
    gc.collect()
    try:
        t0 = time.perf_counter()
        handles = [
            submit(t, kind="blocking", priority=p, limit="db" if lim else None, retries=retry)
            for t, p, lim in rows
        ]
        t1 = time.perf_counter()
        held = runner.limits()["db"]["waiting"]
        runner.wait()
        t2 = time.perf_counter()
        statuses = [h.status() for h in handles]
    finally:
        runner.shutdown(wait=True)
    outputs = [s["result"] if s["state"] == "succeeded" else None for s in statuses]
    attempts = [s["attempt"] for s in statuses]
    return figures(plan, tasks, (t0, t1, t2), outputs, attempts, gauge.peak, held)


def huey_missing() -> Optional[str]:
    if importlib.util.find_spec("huey") is None:
        return "huey is not installed: pip install huey (or '.[bench]')"
    return None


def with_huey(plan: Plan, kind: str) -> dict[str, Any]:
    from huey import MemoryHuey, signals

    gauge = Gauge()
    tasks = build(plan, kind, gauge, failures=True)
    n, limited = plan.n, plan.limited
    slots = threading.BoundedSemaphore(THROTTLE)
    huey = MemoryHuey("scheduling")
    attempts: list[Any] = [None] * n
    ended: list[int] = []  # list.append is atomic under the GIL
    held: list[int] = []
    all_ended = threading.Event()

    @huey.task(retries=ATTEMPTS - 1, retry_delay=0, name="run_task")
    def run_task(i: int) -> Any:
        if not limited[i]:
            return tasks[i].run()
        if not slots.acquire(blocking=False):
            held.append(i)
            slots.acquire()
        try:
            return tasks[i].run()
        finally:
            slots.release()

    def end(i: int, attempt: Any) -> None:
        attempts[i] = attempt
        ended.append(i)
        if len(ended) >= n:
            all_ended.set()

    def complete(signal: str, task: Any) -> None:
        end(task.args[0], ATTEMPTS - task.retries)

    def error(signal: str, task: Any, exc: Any = None) -> None:
        if not task.retries:  # its last attempt: the task failed
            end(task.args[0], f"failed: {exc!r}")

    huey.signal(signals.SIGNAL_COMPLETE)(complete)
    huey.signal(signals.SIGNAL_ERROR)(error)
    consumer = huey.create_consumer(
        workers=HUEY_WORKERS,
        worker_type="thread",
        periodic=False,
        initial_delay=0.005,
        max_delay=0.05,
        check_worker_health=False,
    )
    # start() takes over the stop signals, as a consumer process of its own would.
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    consumer.start()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    rows = list(zip(range(n), plan.priority, strict=True))
    gc.collect()
    try:
        t0 = time.perf_counter()
        for i, p in rows:
            run_task(i, priority=p)
        t1 = time.perf_counter()
        while not all_ended.wait(0.5):
            pass
        t2 = time.perf_counter()
    finally:
        consumer.stop(graceful=True)
    outputs = [t.output for t in tasks]
    return figures(plan, tasks, (t0, t1, t2), outputs, attempts, gauge.peak, len(held))


def figures(
    plan: Plan,
    tasks: list[ScheduledTask],
    clock: tuple[float, float, float],
    outputs: list[Any],
    attempts: list[Any],
    peak: int,
    held: int,
) -> dict[str, Any]:
    """A run's figures from its clock (first submit, submits done, all done),
    and an ``error`` if it got anything wrong."""
    t0, t1, t2 = clock
    run = {
        "wall_s": t2 - t0,
        "submit_us": 1e6 * (t1 - t0) / plan.n,
        "retried": sum(1 for a in attempts if a == ATTEMPTS),
        "db_peak": peak,
        "db_held": held,
        "start_rank": start_ranks(plan, tasks),
    }
    found = problems(plan, outputs, attempts, peak)
    if found:
        run["error"] = "; ".join(found)
    return run


IMPLS: dict[str, Callable[[Plan, str], dict[str, Any]]] = {
    "taskrunner": with_taskrunner,
    "huey_memory": with_huey,
}


def scenario_part(plan: Plan, runs: int) -> tuple[dict[str, Any], int]:
    impls = [name for name in IMPLS if name == "taskrunner" or not huey_missing()]
    results: dict[str, Any] = {k: {name: {"runs": []} for name in impls} for k in KINDS}
    warm = Plan.draw(200)
    for kind in KINDS:
        for name in impls:
            IMPLS[name](warm, kind)
    failures = 0
    for rep in range(runs):
        for kind in KINDS:
            for name in impls if rep % 2 == 0 else impls[::-1]:
                run = IMPLS[name](plan, kind)
                results[kind][name]["runs"].append(run)
                failures += "error" in run
                head = f"  scenario {kind:<6} {name:<11} run {rep + 1}: "
                if "error" in run:
                    print(f"!! {head}FAILED: {run['error']}", file=sys.stderr, flush=True)
                    continue
                print(
                    f"{head}{run['wall_s']:.3f} s, submit {run['submit_us']:.2f} us/task, "
                    f"{run['retried']} retried, db peak {run['db_peak']}, held {run['db_held']}",
                    file=sys.stderr,
                    flush=True,
                )
    for kind in KINDS:
        for entry in results[kind].values():
            ok = [r for r in entry["runs"] if "error" not in r]
            entry["median"] = {
                key: median([r[key] for r in ok])
                for key in ("wall_s", "submit_us", "retried", "db_peak", "db_held")
            }
            entry["median"]["start_rank"] = {
                level: median([r["start_rank"][level] for r in ok]) for level in LEVELS
            }
    return results, failures


def scenario_report(results: dict[str, Any], plan: Plan, runs: int) -> dict[str, Any]:
    n = plan.n
    print(
        f"\n# scenario: {n:,} tasks, priorities {'/'.join(map(str, LEVELS))}, "
        f"{sum(plan.limited):,} limited to {THROTTLE} at once, {len(plan.failing)} failing once "
        f"and retried; medians of {runs} run(s), taking turns; Huey: MemoryHuey, "
        f"{HUEY_WORKERS} worker threads"
    )
    top, bottom = LEVELS[-1], LEVELS[0]
    rows = []
    for kind in KINDS:
        for name, entry in results[kind].items():
            med, ok = entry["median"], [r for r in entry["runs"] if "error" not in r]
            rank = med["start_rank"]
            rows.append(
                [
                    kind,
                    name,
                    fmt(med["wall_s"], "{:.3f}"),
                    fmt(med["submit_us"], "{:.2f}"),
                    fmt(med["retried"], "{:.0f}"),
                    fmt(med["db_peak"], "{:.0f}"),
                    fmt(med["db_held"], "{:,.0f}"),
                    f"{fmt(rank[top], '{:.2f}')} / {fmt(rank[bottom], '{:.2f}')}",
                    f"{len(ok)} of {len(entry['runs'])}",
                ]
            )
    headers = ["tasks", "implementation", "wall s", "submit us/task", "retried", "db peak"]
    headers += ["db held"]
    headers += [f"start rank p{top} / p{bottom}", "runs correct"]
    print(table(headers, rows))
    print(
        "# start rank: the median position (0 first, 1 last) at which a priority's tasks "
        "started; retried: tasks that succeeded at attempt "
        f"{ATTEMPTS}; db peak: most db tasks inside run() at once (limit {THROTTLE}); db held: "
        "db tasks the limit held back (taskrunner: waiting for the limit when the submits "
        "ended; Huey: runs that found the semaphore taken)"
    )
    ratios: dict[str, Any] = {}
    rows = []
    for kind in KINDS:
        by = results[kind]
        if "huey_memory" not in by:
            continue
        mine, theirs = by["taskrunner"]["median"]["wall_s"], by["huey_memory"]["median"]["wall_s"]
        adv = theirs / mine if mine and theirs else None
        ratios[kind] = {"taskrunner_s": mine, "huey_memory_s": theirs, "advantage": adv}
        rows.append([kind, fmt(mine, "{:.3f}"), fmt(theirs, "{:.3f}"), fmt(adv, "{:.1f}x")])
    if rows:
        print("\n# wall time, Huey over taskrunner (> 1: taskrunner is faster)")
        print(table(["tasks", "taskrunner s", "huey_memory s", "advantage"], rows))
    return ratios


# The run ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 tasks (CI smoke run)")
    parser.add_argument("--only", default="", help="parts, comma-separated")
    parser.add_argument("--repeat", type=int, default=None, help="overhead pairs per kind")
    parser.add_argument("--runs", type=int, default=None, help="scenario runs per pair")
    parser.add_argument("--json", default="", metavar="PATH")
    args = parser.parse_args()
    quick = args.quick
    only = [s for s in args.only.split(",") if s] or list(PARTS)
    for part in only:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    n = 2_000 if quick else 10_000
    repeat = args.repeat or (3 if quick else 41)
    runs = args.runs or (1 if quick else 5)
    plan = Plan.draw(n)
    # Huey logs every task error with its traceback; sent nowhere, as taskrunner's
    # errors are (kept in the task's status instead).
    huey_log = logging.getLogger("huey")
    huey_log.addHandler(logging.NullHandler())
    huey_log.propagate = False

    info = machine()
    print(
        f"# taskrunner scheduling benchmark{' --quick' if quick else ''}: "
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"taskrunner {info['taskrunner']} at {info['commit']}",
        flush=True,
    )
    started = time.perf_counter()
    busy0, own0 = cpu_busy_s(), time.process_time()
    failures = 0
    results: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    ratios: dict[str, Any] = {}
    if "overhead" in only:
        results["overhead"], failed = overhead_part(plan, repeat)
        failures += failed
        checks = overhead_report(results["overhead"], n, repeat)
    if "scenario" in only:
        results["scenario"], failed = scenario_part(plan, runs)
        failures += failed
        ratios = scenario_report(results["scenario"], plan, runs)
        missing = huey_missing()
        if missing:
            print(f"# not run: huey_memory: {missing}")

    total = time.perf_counter() - started
    others = max(0.0, (cpu_busy_s() - busy0) - (time.process_time() - own0))
    print(f"\n# {', '.join(only)} in {total:.0f} s; " + competing_cpu(total, others))
    if args.json:
        write_json(
            args.json,
            info=info,
            quick=quick,
            repeat=repeat,
            runs=runs,
            scenarios={
                "overhead": f"{n:,} tasks, plain against every scheduling option",
                "scenario": f"{n:,} tasks, priorities, a limit of {THROTTLE}, 1% retried",
            },
            results=results,
            ratios=ratios,
            targets=checks,
            total_s=total,
            others_cpu_s=others,
        )
    if failures:
        print(f"{failures} run(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
