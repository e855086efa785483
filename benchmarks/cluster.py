"""Benchmark ``TaskRunner(cluster=...)`` beside plain Dask, on one real two-worker cluster.

    python benchmarks/cluster.py            # full run (3 runs of each pair, about 3 minutes)
    python benchmarks/cluster.py --quick    # shrunk counts, 1 run, under a minute (CI smoke run)

The script starts a ``dask scheduler`` and two ``dask worker ADDRESS --nthreads 2
--no-nanny`` processes on 127.0.0.1 (free ports, no dashboards; the workers'
PYTHONPATH holds the taskrunner this script imports and ``benchmarks/``, so
that the task classes import there), runs both implementations against that
same cluster, alternating, and stops the processes at the end, on an error
or Ctrl-C too.

Implementations:

- ``taskrunner``: ``TaskRunner(cluster=ADDRESS)``, a new one per run (its
  connection is made before the clock starts), ``submit`` of every task,
  ``runner.wait()``, ``shutdown()`` (which leaves the cluster running);
- ``dask``: what a user writes with plain Dask: ``Client(ADDRESS)``, then
  ``client.submit(run_task, task, pure=False)`` for every task, where
  ``run_task`` calls ``task.run()`` and then ``task.get_output()`` every 50 ms
  until it is not None, then ``client.gather``. Each polling loop holds one of
  the cluster's 4 worker threads for its task's whole wait.

Every result is checked (task i gives 2 * i): a run with a wrong or missing
result fails, and the script exits with 1.

Scenarios (the task lists are drawn as in ``scenarios.py``, seeded, so both
implementations get the same tasks):

- ``mixed100``: ``scenarios.py``'s mixed100, 100 fake tasks, blocking or
  polling at random, waits uniform 50-500 ms; both run all 100.
- ``poll10k``: 10,000 polling fake tasks of 2 s for taskrunner. Plain Dask
  would take about 10,000 / 4 threads x 2 s, so it runs the first 40 (10 per
  thread slot) and its makespan is extrapolated linearly to 10,000 by rounds
  of thread slots (x 250); the ratio compares that with taskrunner's measured
  makespan.
- ``instant``: blocking tasks that return at once (``InstantTask``): 20,000
  for taskrunner, 2,000 for plain Dask (the figure is a rate).
- ``sleep0``: the same with ``SleepZeroTask`` (one ``time.sleep(0)``).

Figures per run: **submit us/task** (the submit loop / tasks), **makespan**
(first submit to the last result in hand), **excess** (makespan less the
longest wait), **tasks/s** (tasks / makespan), **client CPU** (this process,
every thread), **cluster CPU** (scheduler and workers, from /proc) and, for
taskrunner, **seen running p95** (the 95th percentile of started_at less
submitted_at: how soon the client hears that a task runs). The report
gives medians, taskrunner's advantage over plain Dask, and the targets with
PASS / MISS.

Options:
    --only mixed100,poll10k     run only these scenarios (mixed100, poll10k, instant, sleep0)
    --repeat N                  runs of each pair, median taken (default 3; --quick 1)
    --json out.json             write every raw and median figure as JSON
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import distributed  # noqa: E402
from reporting import competing_cpu, cpu_busy_s, fmt, machine, median, table, write_json  # noqa: E402
from scenarios import FULL, QUICK, Scenario  # noqa: E402

import taskrunner  # noqa: E402
from taskrunner import TaskRunner  # noqa: E402

WORKERS = 2
THREADS_PER_WORKER = 2
# The plain-Dask peer's poll interval, as a user would pick for tasks of seconds.
DASK_POLL_S = 0.05
IMPLS = ("taskrunner", "dask")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Case:
    """A scenario: the seeded task list (taskrunner runs all of it) and how
    many of its first tasks plain Dask runs."""

    scenario: Scenario
    dask_n: int
    description: str
    kind: Optional[str] = None  # the benchmark's own classes are no registered kind

    @property
    def name(self) -> str:
        return self.scenario.name


def cases(quick: bool) -> dict[str, Case]:
    if quick:
        return {
            "mixed100": Case(QUICK["mixed100"], 20, QUICK["mixed100"].description),
            "poll10k": Case(
                Scenario("poll10k", "", 2_000, "polling", 0.2, 0.2),
                8,
                "quick: 2,000 polling tasks of 0.2 s (plain Dask: the first 8, extrapolated)",
            ),
            "instant": Case(
                Scenario("instant", "", 2_000, "instant", 0.0, 0.0),
                500,
                "quick: 2,000 blocking tasks that return at once (plain Dask: 500)",
                "blocking",
            ),
            "sleep0": Case(
                Scenario("sleep0", "", 2_000, "sleep0", 0.0, 0.0),
                500,
                "quick: 2,000 blocking tasks that call time.sleep(0) (plain Dask: 500)",
                "blocking",
            ),
        }
    return {
        "mixed100": Case(FULL["mixed100"], 100, FULL["mixed100"].description),
        "poll10k": Case(
            FULL["poll10k"],
            40,
            "10,000 polling tasks of 2 s (plain Dask: the first 40, extrapolated to 10,000)",
        ),
        "instant": Case(
            Scenario("instant", "", 20_000, "instant", 0.0, 0.0),
            2_000,
            "20,000 blocking tasks that return at once, holding the GIL (plain Dask: 2,000)",
            "blocking",
        ),
        "sleep0": Case(
            Scenario("sleep0", "", 20_000, "sleep0", 0.0, 0.0),
            2_000,
            "20,000 blocking tasks that call time.sleep(0) (plain Dask: 2,000)",
            "blocking",
        ),
    }


ORDER = ("mixed100", "poll10k", "instant", "sleep0")


# The cluster ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# Not tests/dask_cluster.py's: that needs pytest, and its workers run 1 thread with tests/ on path.
class DaskCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on loopback ports."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.log = tempfile.TemporaryFile()  # their output, shown if the start fails
        # The workers import the same taskrunner as this process, and the
        # benchmark's task classes (scenarios.py).
        here = os.path.dirname(os.path.dirname(os.path.abspath(taskrunner.__file__)))
        path = [here, HERE, os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        try:
            self._start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
            for _ in range(WORKERS):
                self._start(
                    "worker",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    str(THREADS_PER_WORKER),
                    "--no-nanny",
                    "--no-dashboard",
                )
            with distributed.Client(self.address, timeout=60, set_as_default=False) as client:
                client.wait_for_workers(WORKERS, timeout=90)
                self.slots = sum(client.nthreads().values())
        except BaseException:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace")[-3000:]
            print(f"!! the Dask cluster did not start; its output:\n{tail}", file=sys.stderr)
            self.close()
            raise

    def _start(self, *args: str) -> None:
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                # Not in our process group: Ctrl-C reaches this script alone,
                # which then stops them in order.
                start_new_session=True,
            )
        )

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p.pid) for p in self.procs)

    def close(self) -> None:
        """Stops every process: terminate, then kill what is left after 10 s."""
        for p in reversed(self.procs):  # workers first
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


# The implementations ------------------------------------------------------------


def run_task(task: Any) -> Any:
    """The plain-Dask peer's task function: run, then poll every DASK_POLL_S."""
    task.run()
    while (out := task.get_output()) is None:
        time.sleep(DASK_POLL_S)
    return out


class RunFailed(Exception):
    pass


def with_taskrunner(address: str, tasks: list[Any], kind: Optional[str], timeout: float) -> tuple:
    """(t0, submits done, t1, results, seconds from each submit to the client
    seeing the task run: its status's started_at less submitted_at)."""
    runner = TaskRunner(cluster=address)
    handles: list[Any] = []
    try:
        t0 = time.perf_counter()
        handles = [runner.submit(task, kind=kind) for task in tasks]
        t_sub = time.perf_counter()
        _, not_done = runner.wait(handles, timeout=timeout)
        t1 = time.perf_counter()
        if not_done:
            raise RunFailed(f"{len(not_done)} of {len(tasks)} tasks not done after {timeout:.0f} s")
        statuses = [h.status() for h in handles]
        lags = [s["started_at"] - s["submitted_at"] for s in statuses if s["started_at"]]
        return t0, t_sub, t1, [s["result"] for s in statuses], lags
    finally:
        for h in handles:
            if not h.done():
                h.cancel()  # a polling task would otherwise hold shutdown
        runner.shutdown(wait=True, cancel_pending=True)


def with_dask(address: str, tasks: list[Any], kind: Optional[str], timeout: float) -> tuple:
    """(t0, submits done, t1, results, None: plain Dask does not say when a task started)."""
    client = distributed.Client(address)
    futures: list[Any] = []
    try:
        t0 = time.perf_counter()
        futures = [client.submit(run_task, task, pure=False) for task in tasks]
        t_sub = time.perf_counter()
        try:
            distributed.wait(futures, timeout=timeout)
        except TimeoutError as exc:
            raise RunFailed(f"tasks not done after {timeout:.0f} s") from exc
        results = client.gather(futures)
        t1 = time.perf_counter()
        return t0, t_sub, t1, results, None
    finally:
        if futures:
            client.cancel(futures)
        client.close()


RUNNERS: dict[str, Callable[..., tuple]] = {"taskrunner": with_taskrunner, "dask": with_dask}


def measure(cluster: DaskCluster, case: Case, impl: str) -> dict[str, Any]:
    """One run of one implementation on one scenario; its figures, or an error."""
    tasks, _, waits = case.scenario.build()  # fresh objects every run
    n = len(tasks) if impl == "taskrunner" else case.dask_n
    tasks, waits = tasks[:n], waits[:n]
    ideal = max(waits)
    if impl == "taskrunner":
        timeout = 60 + 5 * ideal + 0.005 * n
    else:  # each task holds a worker thread for its whole wait
        timeout = 60 + 3 * sum(w + DASK_POLL_S for w in waits) / cluster.slots + 0.01 * n
    cpu0, cluster0 = time.process_time(), cluster.cpu_s()
    try:
        t0, t_sub, t1, results, lags = RUNNERS[impl](cluster.address, tasks, case.kind, timeout)
    except Exception as exc:
        return {"n": n, "error": f"{type(exc).__name__}: {exc}"}
    cpu, cluster_cpu = time.process_time() - cpu0, cluster.cpu_s() - cluster0
    wrong = [i for i, r in enumerate(results) if r != 2 * i]
    if len(results) != n or wrong:
        return {
            "n": n,
            "error": f"{len(wrong)} wrong results of {len(results)} (first: {wrong[:5]})",
        }
    makespan = t1 - t0
    figures = {
        "n": n,
        "submit_us": 1e6 * (t_sub - t0) / n,
        "makespan_s": makespan,
        "excess_ms": 1e3 * (makespan - ideal) if ideal else None,
        "tasks_per_s": n / makespan,
        "client_cpu_s": cpu,
        "cluster_cpu_s": cluster_cpu,
        "start_p95_ms": 1e3 * percentile(lags, 0.95) if lags else None,
    }
    if impl == "dask" and n < len(case.scenario.plan()[1]) and ideal:
        # Each polling loop holds a thread for its wait: the tasks run in
        # rounds of `slots`, so the makespan grows with the rounds.
        full = len(case.scenario.plan()[1])
        scale = math.ceil(full / cluster.slots) / math.ceil(n / cluster.slots)
        figures["scale"] = scale
        figures["extrapolated_s"] = makespan * scale
    return figures


# The report ---------------------------------------------------------------------

# key, header, format
FIGURES = [
    ("n", "tasks", "{:,.0f}"),
    ("submit_us", "submit us/task", "{:.1f}"),
    ("makespan_s", "makespan s", "{:.3f}"),
    ("excess_ms", "excess ms", "{:+.1f}"),
    ("extrapolated_s", "extrapolated s", "{:,.0f}"),
    ("tasks_per_s", "tasks/s", "{:,.0f}"),
    ("client_cpu_s", "client CPU s", "{:.3f}"),
    ("cluster_cpu_s", "cluster CPU s", "{:.3f}"),
    ("start_p95_ms", "seen running p95 ms", "{:.1f}"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def medians(runs: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    ok = [r for r in runs if "error" not in r]
    return {key: median([r.get(key) for r in ok]) for key, _, _ in FIGURES}


def advantage(tr: Optional[float], dask: Optional[float], lower: bool) -> Optional[float]:
    """How many times better taskrunner's figure is than plain Dask's."""
    if not tr or not dask:
        return None
    return dask / tr if lower else tr / dask


def ratio_rows(med: dict[str, dict[str, dict]]) -> tuple[list[list[str]], dict[str, Any]]:
    rows, ratios = [], {}
    for scen, by_impl in med.items():
        tr, dk = by_impl.get("taskrunner", {}), by_impl.get("dask", {})
        pairs = [
            ("submit us/task", tr.get("submit_us"), dk.get("submit_us"), True, "{:.1f}"),
            ("tasks/s", tr.get("tasks_per_s"), dk.get("tasks_per_s"), False, "{:,.0f}"),
        ]
        if dk.get("extrapolated_s") is not None:
            label = f"makespan s at {fmt(tr.get('n'), '{:,.0f}')} tasks"
            pairs.insert(0, (label, tr.get("makespan_s"), dk["extrapolated_s"], True, "{:,.3f}"))
        elif scen == "mixed100":
            makespans = (tr.get("makespan_s"), dk.get("makespan_s"))
            pairs.insert(0, ("makespan s", *makespans, True, "{:.3f}"))
        for label, mine, theirs, lower, f in pairs:
            adv = advantage(mine, theirs, lower)
            ratios.setdefault(scen, {})[label] = {
                "taskrunner": mine,
                "dask": theirs,
                "advantage": adv,
            }
            rows.append([scen, label, fmt(mine, f), fmt(theirs, f), fmt(adv, "{:,.1f}x")])
    return rows, ratios


def target_rows(med: dict[str, dict[str, dict]]) -> tuple[list[list[str]], list[dict]]:
    """The issue's targets, from the medians. Under --quick the same bounds
    are held to shrunk scenarios: indicative only."""
    rows, checks = [], []

    def check(
        scen: str, label: str, value: Optional[float], ok: Optional[bool], shown: str, note: str
    ):
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        rows.append([scen, label, shown, verdict, note])
        checks.append({"scenario": scen, "target": label, "value": value, "result": verdict})

    if "mixed100" in med:
        tr = med["mixed100"].get("taskrunner", {})
        excess = tr.get("excess_ms")
        ok = None if excess is None else excess <= 60.0
        note = f"makespan {fmt(tr.get('makespan_s'), '{:.3f}')} s"
        check("mixed100", "makespan <= ideal + 60 ms", excess, ok, fmt(excess, "{:+.1f} ms"), note)
        lag = tr.get("start_p95_ms")
        ok = None if lag is None else lag <= 100.0
        note = "submit to the client seeing it run (started_at - submitted_at), 95th percentile"
        check("mixed100", "running seen <= 100 ms", lag, ok, fmt(lag, "{:.1f} ms"), note)
    if "poll10k" in med:
        tr, dk = med["poll10k"].get("taskrunner", {}), med["poll10k"].get("dask", {})
        adv = advantage(tr.get("makespan_s"), dk.get("extrapolated_s"), True)
        note = (
            f"taskrunner {fmt(tr.get('makespan_s'), '{:.3f}')} s against plain Dask's "
            f"{fmt(dk.get('extrapolated_s'), '{:,.0f}')} s, extrapolated from "
            f"{fmt(dk.get('n'), '{:.0f}')} tasks in {fmt(dk.get('makespan_s'), '{:.2f}')} s"
        )
        ok = None if adv is None else adv >= 100
        check("poll10k", ">= 100x faster than plain Dask", adv, ok, fmt(adv, "{:,.0f}x"), note)
    if "instant" in med:
        tr, dk = med["instant"].get("taskrunner", {}), med["instant"].get("dask", {})
        rate = tr.get("tasks_per_s")
        ok = None if rate is None else rate >= 20_000
        note = f"plain Dask {fmt(dk.get('tasks_per_s'), '{:,.0f}')} tasks/s"
        check("instant", ">= 20,000 tasks/s", rate, ok, fmt(rate, "{:,.0f}"), note)
    return rows, checks


# The run ------------------------------------------------------------------------


def progress(scen: str, impl: str, rep: int, run: dict[str, Any]) -> str:
    head = f"  {scen:<9} {impl:<10} run {rep}: "
    if "error" in run:
        return head + "FAILED: " + run["error"]
    extra = ""
    if run.get("extrapolated_s") is not None:
        extra = f", extrapolated x{run['scale']:.0f} = {run['extrapolated_s']:,.0f} s"
    return head + (
        f"{run['n']:,} tasks, makespan {run['makespan_s']:.3f} s{extra}, "
        f"{run['tasks_per_s']:,.0f} tasks/s, submit {run['submit_us']:.1f} us/task, "
        f"CPU client {run['client_cpu_s']:.2f} s, cluster {run['cluster_cpu_s']:.2f} s"
    )


def warm_up(cluster: DaskCluster) -> None:
    """One small untimed run of each implementation: imports on the workers,
    the worker plugin, the first connections."""
    case = Case(Scenario("warmup", "", 40, "mixed", 0.01, 0.05), 40, "warm-up")
    for impl in IMPLS:
        run = measure(cluster, case, impl)
        if "error" in run:
            raise RunFailed(f"warm-up of {impl}: {run['error']}")


def stop_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cluster's close


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shrunk scenarios (CI smoke run)")
    parser.add_argument("--only", default="", help="scenarios, comma-separated")
    parser.add_argument("--repeat", type=int, default=None, help="runs per pair (median)")
    parser.add_argument("--json", default="", metavar="PATH")
    args = parser.parse_args()
    quick = args.quick
    all_cases = cases(quick)
    only = [s for s in args.only.split(",") if s] or list(ORDER)
    for s in only:
        if s not in all_cases:
            parser.error(f"unknown scenario {s!r}; choose from {', '.join(ORDER)}")
    repeat = args.repeat or (1 if quick else 3)
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop_on_signal)

    info = machine()
    print(
        f"# taskrunner cluster benchmark{' --quick' if quick else ''}: "
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"distributed {distributed.__version__}, taskrunner {info['taskrunner']} at "
        f"{info['commit']}",
        flush=True,
    )
    started = time.perf_counter()
    busy0, own0 = cpu_busy_s(), time.process_time()
    cluster = DaskCluster()
    failures = 0
    results: dict[str, dict[str, Any]] = {}
    try:
        print(
            f"# cluster: scheduler {cluster.address}, {WORKERS} workers x "
            f"{THREADS_PER_WORKER} threads ({cluster.slots} slots), up in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        try:
            warm_up(cluster)
        except RunFailed as exc:
            print(f"!! {exc}", file=sys.stderr)
            return 1
        for scen in only:
            case = all_cases[scen]
            results[scen] = {impl: {"runs": []} for impl in IMPLS}
            for rep in range(repeat):
                # Alternating which goes first spreads any drift over both.
                for impl in IMPLS if rep % 2 == 0 else IMPLS[::-1]:
                    run = measure(cluster, case, impl)
                    failures += "error" in run
                    results[scen][impl]["runs"].append(run)
                    print(progress(scen, impl, rep + 1, run), file=sys.stderr, flush=True)
                    time.sleep(0.2)  # let the cluster settle between runs
            for impl in IMPLS:
                results[scen][impl]["median"] = medians(results[scen][impl]["runs"])
        cluster_cpu = cluster.cpu_s()
    finally:
        cluster.close()

    med = {scen: {impl: r["median"] for impl, r in by.items()} for scen, by in results.items()}
    print(
        f"\n# results (median of {repeat} run(s)); "
        f"plain Dask polls every {DASK_POLL_S * 1e3:.0f} ms"
    )
    for scen in only:
        print(f"#   {scen}: {all_cases[scen].description}")
    rows = [
        [scen, impl] + [fmt(med[scen][impl].get(key), f) for key, _, f in FIGURES]
        for scen in only
        for impl in IMPLS
    ]
    print(table(["scenario", "implementation"] + [h for _, h, _ in FIGURES], rows))
    if "poll10k" in med:
        slots = cluster.slots
        print(
            f"# poll10k: plain Dask ran {fmt(med['poll10k']['dask'].get('n'), '{:,.0f}')} "
            f"tasks; each holds one of the {slots} worker threads for its wait, so its "
            f"makespan is extrapolated linearly to {all_cases['poll10k'].scenario.n:,} tasks "
            f"by rounds of {slots} ('extrapolated s'), not measured"
        )

    rrows, ratios = ratio_rows(med)
    print("\n# taskrunner against plain Dask (advantage > 1: taskrunner is better)")
    print(table(["scenario", "figure", "taskrunner", "dask", "advantage"], rrows))

    trows, checks = target_rows(med)
    note = " (--quick: shrunk scenarios, indicative only)" if quick else ""
    print(f"\n# targets{note}")
    print(table(["scenario", "target", "measured", "result", "note"], trows))

    total = time.perf_counter() - started
    # CPU the rest of the machine used meanwhile: the noise this run competed with.
    others = max(0.0, cpu_busy_s() - busy0 - (time.process_time() - own0) - cluster_cpu)
    print(
        f"\n# {len(only)} scenario(s) x {len(IMPLS)} implementations in {total:.0f} s; "
        + competing_cpu(total, others)
    )
    if args.json:
        write_json(
            args.json,
            info=info,
            quick=quick,
            repeat=repeat,
            cluster={"workers": WORKERS, "threads_per_worker": THREADS_PER_WORKER},
            dask_poll_s=DASK_POLL_S,
            scenarios={s: all_cases[s].description for s in only},
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
