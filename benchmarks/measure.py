"""One measurement in its own process: one implementation, one scenario, one pass.

Run by ``run.py`` as ``python measure.py '<json config>'``; prints one JSON
object on stdout. Two passes, each in a fresh process:

- ``quiet``: the main thread registers every task, then only waits. Gives
  registration, makespan, completion latency, process CPU and threads. The
  main thread runs no measuring loop here, so the CPU is the implementation's.
- ``busy``: the main thread measures its pure-Python loop rate idle, registers
  every task, then runs the same loop while the tasks run (checking for
  completion between chunks) until all are done or ``cap_s`` has passed, then
  measures the idle rate again. Gives the loaded rate (iterations / window)
  as a fraction of the idle rate (median of 50 ms segments, before and after).

An implementation that journals ends its run when its last write is on disk
(its ``done_at()``), if that is after the last task's end.

A status scenario has one pass of its own instead:

- ``status``: the main thread registers every task (each waits for a gate),
  times each of the implementation's status checks as a loop over every task
  while none has finished ("open"), opens the gate, waits for all, and times
  them again ("final"). Gives nanoseconds per call, with the cost of an empty
  loop over as many items taken out, beside a plain ``dict[int, bool]`` lookup.

And the HTTP scenario one of its own:

- ``http``: this process serves taskrunner's web app over the runner the
  implementation made (with or without a journal) on waitress, on
  127.0.0.1; a child process (``http_flood.py``) floods ``POST /api/tasks``
  from keep-alive connections, each on a thread of its own. Gives accepted
  submits per second (for a journal, until ``flush()`` returns after the last
  answer), request latencies, and this process's CPU and threads: the
  server's, its tasks' included.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import timeit
from typing import Any, Optional

from peers import ALL, StatusCheck
from scenarios import GATE, Scenario, scenarios

HTTP_SERVER_THREADS = 16  # `python -m taskrunner serve`'s default
HTTP_WARMUP = 20  # untimed requests per connection before the flood
HERE = os.path.dirname(os.path.abspath(__file__))

CHUNK = 20_000  # loop iterations between completion checks (about 1 ms)


def proc_threads() -> int:
    """Threads of this process, Rust ones included (threading.active_count() misses them)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return len(os.listdir("/proc/self/task"))


def spin(k: int) -> int:
    x = 0
    for _ in range(k):
        x += 1
    return x


def warm_up(seconds: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        spin(CHUNK)


def schedstat() -> tuple[float, float]:
    """Seconds this thread has run on a CPU, and has waited runnable for one
    (from /proc/thread-self/schedstat; zeros where it is missing)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run_ns, wait_ns = f.read().split()[:2]
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


def idle_rates(seconds: float, segment: float = 0.05) -> tuple[list[float], list[float]]:
    """Loop iterations per second with nothing else going on, per 50 ms
    segment: per wall second, and per second not spent waiting for a CPU.
    The caller takes medians, which a passing hiccup of this shared machine
    does not move."""
    rates, oncpu = [], []
    end = time.perf_counter() + seconds
    while True:
        iters = 0
        s0 = time.perf_counter()
        w0 = schedstat()[1]
        while True:
            spin(CHUNK)
            iters += CHUNK
            now = time.perf_counter()
            if now - s0 >= segment:
                break
        runq = schedstat()[1] - w0
        rates.append(iters / (now - s0))
        oncpu.append(iters / max(1e-6, now - s0 - runq))
        if now >= end:
            return rates, oncpu


def percentile(sorted_values: list[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def quiet_pass(impl: Any, tasks: list[Any], polling: list[bool], waits: list[float]) -> dict:
    n = len(tasks)
    threads = [proc_threads()]
    cpu0 = time.process_time()
    w0 = time.time()
    p0 = time.perf_counter()
    impl.submit_all(tasks, polling)
    p1 = time.perf_counter()
    threads.append(proc_threads())
    impl.wait_all()
    p2 = time.perf_counter()
    cpu1 = time.process_time()
    threads.append(proc_threads())

    started, finished, polls = impl.timings()
    missing = sum(1 for s, f in zip(started, finished, strict=True) if s is None or f is None)
    lat = sorted(
        f - (s + w)
        for s, f, w in zip(started, finished, waits, strict=True)
        if s is not None and f is not None
    )
    last = max((f for f in finished if f is not None), default=w0)
    # A journal's work is done once it is on disk.
    flushed = impl.done_at()
    flush_ms = None if flushed is None else max(0.0, flushed - last) * 1e3
    last = max(last, flushed or last)
    makespan = last - w0
    ideal = max(waits) if waits else 0.0
    return {
        "reg_us": (p1 - p0) / n * 1e6,
        "makespan_s": makespan,
        "excess_ms": (makespan - ideal) * 1e3,
        "tasks_per_s": n / makespan if makespan > 0 else None,
        "lat_p50_ms": (percentile(lat, 50) or 0.0) * 1e3,
        "lat_p99_ms": (percentile(lat, 99) or 0.0) * 1e3,
        "lat_max_ms": lat[-1] * 1e3 if lat else None,
        "cpu_s": cpu1 - cpu0,
        "threads_self": max(threads),
        "wall_s": p2 - p0,
        # From the end of registration to the last completion: under 20 ms, the
        # busy pass's loop would have nothing to measure.
        "tail_s": makespan - (p1 - p0),
        "polls": polls,
        "missing": missing,
        "ideal_s": ideal,
        # From the last task's end to the journal's last commit.
        "flush_ms": flush_ms,
    }


def busy_pass(
    impl: Any, tasks: list[Any], polling: list[bool], idle_s: float, cap_s: float
) -> dict:
    before, before_oncpu = idle_rates(idle_s)
    impl.submit_all(tasks, polling)
    all_done = impl.all_done
    iters = 0
    tt0 = time.thread_time()
    cpu0 = time.process_time()
    run0, runq0 = schedstat()
    q0 = time.perf_counter()
    while True:
        spin(CHUNK)
        iters += CHUNK
        if all_done():
            break
        if time.perf_counter() - q0 >= cap_s:
            break
    q1 = time.perf_counter()
    run1, runq1 = schedstat()
    cpu1 = time.process_time()
    tt1 = time.thread_time()
    done = all_done()
    window = q1 - q0
    runq = runq1 - runq0
    # Idle again afterwards (unless tasks are still running), so that a slow
    # spell of the machine on either side weighs less.
    after, after_oncpu = idle_rates(idle_s) if done else ([], [])
    idle = statistics.median(before + after)
    idle_oncpu = statistics.median(before_oncpu + after_oncpu)
    ok = window >= 0.02
    return {
        "main_speed": iters / window / idle if ok else None,
        # The same with the time the main thread waited for a CPU taken out of
        # both rates: what other processes on a shared machine do to it weighs
        # less (and so does CPU contention from the implementation's threads).
        "main_speed_oncpu": iters / max(1e-6, window - runq) / idle_oncpu if ok else None,
        # Blocked, neither running nor runnable: waiting for the GIL.
        "main_blocked_frac": max(0.0, window - (run1 - run0) - runq) / window if ok else None,
        "main_runq_frac": runq / window if ok else None,
        "loop_rate_idle": idle,
        "loop_rate_idle_before": statistics.median(before),
        "loop_rate_idle_after": statistics.median(after) if after else None,
        "loop_rate_loaded": iters / window,
        "window_s": window,
        "window_capped": not done,
        # Process CPU in the window less the main thread's own (its loop).
        "busy_cpu_others_s": (cpu1 - cpu0) - (tt1 - tt0),
    }


def loop_ns(loop: str, names: dict[str, Any], items: int, min_s: float, repeats: int) -> float:
    """Nanoseconds per item of `loop`: the fastest of `repeats` timings, each
    of as many loops as take `min_s` (timeit's way; the collector is off).

    The clock is this thread's CPU time: nothing else in the process runs
    meanwhile, and time spent waiting for a CPU that other processes hold is
    left out, so that the figure is the call's own cost on a shared machine.
    """
    setup = "\n".join(f"{name} = _names[{name!r}]" for name in names)  # locals, not globals
    timer = timeit.Timer(loop, setup, timer=time.thread_time, globals={"_names": names})
    number = 1
    while timer.timeit(number) < min_s:
        number *= 2
    return min(timer.repeat(repeats, number)) / number / items * 1e9


def time_checks(checks: list[StatusCheck], n: int, quick: bool) -> dict[str, Any]:
    """Each available check's nanoseconds per call, less an empty loop's."""
    min_s, repeats = (0.002, 3) if quick else (0.005, 9)
    empty = loop_ns("for _ in items: pass", {"items": list(range(n))}, n, min_s, repeats)
    calls = {
        c.call: max(0.0, loop_ns(c.loop, c.names, n, min_s, repeats) - empty)
        for c in checks
        if c.loop
    }
    return {"calls": calls, "empty_loop_ns": empty}


def wrong_answers(checks: list[StatusCheck], n: int, done: bool) -> list[str]:
    """The checks that answer otherwise than `done` for some task."""
    return [
        c.call
        for c in checks
        if c.loop and c.is_done is not None and any(c.is_done(k) != done for k in range(n))
    ]


def status_pass(impl: Any, tasks: list[Any], polling: list[bool], quick: bool) -> dict:
    n = len(tasks)
    impl.submit_all(tasks, polling)
    # Let the threads that the submits started get to their wait.
    time.sleep(0.2 if quick else 0.3)
    floor = {i: False for i in range(n)}
    checks = [StatusCheck("d[i]", "for i in ids: d[i]", {"d": floor, "ids": list(range(n))})]
    checks += impl.status_checks()
    wrong = wrong_answers(checks, n, done=False)
    if wrong:
        raise AssertionError(f"a task counts as finished before the gate opened: {wrong}")
    unfinished = time_checks(checks, n, quick)
    GATE.set()
    impl.wait_all()
    # Some implementations notice the end of a task a moment after it ends.
    deadline = time.perf_counter() + 10.0
    while wrong_answers(checks, n, done=True):
        if time.perf_counter() > deadline:
            wrong = wrong_answers(checks, n, done=True)
            raise AssertionError(f"a task counts as unfinished after all ended: {wrong}")
        time.sleep(0.01)
    floor.update(dict.fromkeys(floor, True))
    finished = time_checks(checks, n, quick)
    return {
        "open_ns": unfinished["calls"],
        "final_ns": finished["calls"],
        "empty_loop_ns": {"open": unfinished["empty_loop_ns"], "final": finished["empty_loop_ns"]},
        "primary": next((c.call for c in checks if c.primary), None),
        "unavailable": [c.call for c in checks if not c.loop],
        "calls": [c.call for c in checks],
        "n": n,
    }


def read_line(stream: Any, what: str) -> str:
    line = stream.readline()
    if not line:
        raise RuntimeError(f"the HTTP clients ended before {what}")
    return line


def http_pass(impl: Any, scenario: Scenario) -> dict:
    import waitress

    from taskrunner.web.app import create_app

    app = create_app(runner=impl.runner)
    server = waitress.create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=HTTP_SERVER_THREADS,
        ident="taskrunner",
        channel_request_lookahead=1,
    )
    threading.Thread(target=server.run, daemon=True).start()
    clients = {
        "port": server.effective_port,
        "requests": scenario.n,
        "clients": scenario.clients,
        "warmup": HTTP_WARMUP,
    }
    flood = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "http_flood.py"), json.dumps(clients)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdin is not None and flood.stdout is not None
    try:
        read_line(flood.stdout, "warming up")  # every connection open and warm
        impl.flush()  # the warm-up's submits are not the flood's
        threads = [proc_threads()]
        cpu0 = time.process_time()
        flood.stdin.write("go\n")
        flood.stdin.flush()
        report = json.loads(read_line(flood.stdout, "reporting"))
        # The answers are in; a journal's flood is over once they are on disk.
        flush_s = impl.flush()
        cpu1 = time.process_time()
        threads.append(proc_threads())
    finally:
        flood.kill()
        flood.wait()
        server.close()
        server.task_dispatcher.shutdown()
    bad = {k: v for k, v in report["statuses"].items() if k != "202"}
    if bad or report["errors"]:
        raise RuntimeError(f"not every submit was accepted: {bad}, errors {report['errors']}")
    elapsed = report["elapsed_s"] + flush_s
    return {
        "makespan_s": elapsed,
        "tasks_per_s": scenario.n / elapsed,
        "lat_p50_ms": report["lat_p50_ms"],
        "lat_p99_ms": report["lat_p99_ms"],
        "lat_max_ms": report["lat_max_ms"],
        "cpu_s": cpu1 - cpu0,
        "threads_self": max(threads),
        "flush_ms": flush_s * 1e3,
        "answers_per_s": scenario.n / report["elapsed_s"],
        "clients_cpu_s": report["cpu_s"],
        "requests": scenario.n,
        "clients": scenario.clients,
        "server_threads": HTTP_SERVER_THREADS,
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    scenario = scenarios(config["quick"])[config["scenario"]]
    impl_class = ALL[config["impl"]]
    reason = impl_class.unsupported(scenario)
    if reason:
        raise SystemExit(f"{config['impl']} does not run {scenario.name}: {reason}")
    tasks, polling, waits = scenario.build()
    impl = impl_class(scenario.n, config.get("options"))
    impl.setup()
    # The task objects are long-lived: keep the cyclic GC from rescanning them.
    gc.collect()
    gc.freeze()
    # This machine's CPUs run about 15% slower for the first half second of
    # work: spin that off first, so registration and idle speed are measured warm.
    warm_up(config.get("warmup_s", 0.5))
    try:
        if config["pass"] == "quiet":
            result = quiet_pass(impl, tasks, polling, waits)
        elif config["pass"] == "status":
            result = status_pass(impl, tasks, polling, config["quick"])
        elif config["pass"] == "http":
            result = http_pass(impl, scenario)
        else:
            result = busy_pass(impl, tasks, polling, config["idle_s"], config["cap_s"])
        result["extra"] = impl.extra()
    finally:
        impl.teardown()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: no joining of pool threads or of tasks a capped pass left running.
    os._exit(0)


if __name__ == "__main__":
    main()
