"""What open dashboards cost the server while 1,000 tasks a second finish.

    python benchmarks/dashboard_load.py            # 3 runs of 20 s windows
    python benchmarks/dashboard_load.py --quick    # one short run, for CI

Starts the real server (``python -m taskrunner serve`` on 127.0.0.1, with its
default settings but room for ``--streams`` event streams, in a temporary
directory, serving this module's task type ``source``), and submits one
``source`` task over HTTP: it submits short tasks to the server's runner at
a steady rate (each finishes at once, so as many finish per second). Then it
measures the server process's CPU time (utime + stime from /proc/PID/stat)
over a window, once with no event stream open and once with ``--streams``
streams read like the dashboard reads them, from another process: each
event's JSON decoded, and the first page of tasks (as many as the page
loads: ``PAGE`` in its app.js, 100) fetched at ``ready`` and at every
``resync``, and the page's polls made as it makes them (``/api/stats`` and
``/api/limits`` every 5 s, the running tasks' page when some run, the last
minute's runtimes every 30 s). The cost of the dashboards is the
difference, as a percent of one core; the target is at most 5 %. A fresh
server serves each window. Prints a table per run and the medians; exits 1
when a window saw no task finish or a stream did not open (it did not run).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

TARGET_PERCENT = 5.0
# The tasks the dashboard loads at ready and resync: its app.js's PAGE.
APP_JS = Path(__file__).resolve().parent.parent / "python/taskrunner/web/static/app.js"
PAGE_ROWS = int(re.search(r"^const PAGE = (\d+);", APP_JS.read_text(), re.M).group(1))
LISTENING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)/")
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- the server ----------------------------------------------------------------


class Server:
    """``python -m taskrunner serve`` on a free loopback port, in a temporary directory."""

    def __init__(self, pythonpath: str, streams: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="dashboard-load-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNER_")}
        # The one setting changed: the default allows 8 streams.
        env["TASKRUNNER_MAX_EVENT_STREAMS"] = str(max(streams, 8))
        here = str(Path(__file__).resolve().parent)
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [here, pythonpath])))
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskrunner", "serve", "--port", "0"]
            + ["--types", "dashboard_load:TASK_TYPES"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.dir.name,
        )
        self.port = self._wait_for_port()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_port(self) -> int:
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:
            seen.append(line)
            match = LISTENING.search(line)
            if match:
                return int(match.group(1))
        raise RuntimeError("the server did not start:\n" + "".join(seen))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (every thread), in seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def get(self, path: str) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers=HEADERS)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.dir.cleanup()


def start_role(role: str, port: int, **options: Any) -> subprocess.Popen:
    """This script in another process, as the dashboards."""
    args = [sys.executable, __file__, "--role", role, "--port", str(port)]
    for name, value in options.items():
        args += [f"--{name}", str(value)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)


def stop_role(process: subprocess.Popen) -> dict[str, Any]:
    """Tells a role to stop (a line on its stdin); its report."""
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write("stop\n")
        process.stdin.close()
    except BrokenPipeError:
        pass
    report = process.stdout.read()
    process.wait(timeout=60)
    return json.loads(report) if report.strip() else {}


# ---- the task source -------------------------------------------------------------

# 1,000 submits a second over HTTP would take more than the server's one
# core of Python: the tasks come from a task type of the server instead.
# One ``source`` task, submitted over HTTP, submits ``rate`` tasks a second
# to the server's runner from a worker thread (each finishes at once) until
# its ``seconds`` pass or the server stops.
TICK_SECONDS = 0.01


class Instant:
    """A blocking task that is done as soon as it runs."""

    def __init__(self, value: int) -> None:
        self.value = value

    def run(self) -> int:
        return self.value

    def get_output(self) -> int:
        return self.value


class Source:
    """Submits ``Instant`` tasks to ``runner`` at a steady rate, in ticks."""

    def __init__(self, runner: Any, rate: float, seconds: float) -> None:
        self.runner, self.rate, self.seconds = runner, rate, seconds

    def run(self) -> int:
        submit, start, sent = self.runner.submit, time.monotonic(), 0
        while (now := time.monotonic()) - start < self.seconds:
            due = int((now - start) * self.rate)
            try:
                while sent < due:
                    submit(Instant(sent), kind="blocking", name="tick")
                    sent += 1
            except RuntimeError:
                break  # the server is shutting down
            time.sleep(TICK_SECONDS)
        return sent

    def get_output(self) -> None:
        return None


def make_source(input: Any) -> Source:
    """The ``source`` task type: ``{"rate": tasks per second, "seconds": how long}``."""
    from taskrunner.web.state import current_state

    return Source(current_state().runner, float(input["rate"]), float(input["seconds"]))


TASK_TYPES = {"source": make_source}


def start_source(server: Server, rate: float, seconds: float) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        body = {"type": "source", "input": {"rate": rate, "seconds": seconds}}
        connection.request("POST", "/api/tasks", json.dumps(body), HEADERS)
        response = connection.getresponse()
        if response.status != 202:
            raise RuntimeError(f"the source was refused: {response.read()!r}")
        response.read()
    finally:
        connection.close()


# ---- the dashboards --------------------------------------------------------------


# What the page polls besides its stream (app.js, charts.js): every 5 s, and the
# runtimes' table every 30 s.
POLL_SECONDS = 5.0
RUNTIMES_SECONDS = 30.0


class Dashboard(threading.Thread):
    """Reads /api/events as the page does, loads the first page at ready and resync,
    and polls what the page polls."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.events: dict[str, int] = {}
        self.pages = 0
        self.polls = 0
        self.error: Optional[str] = None

    def run(self) -> None:
        poller = threading.Thread(target=self._guarded, args=(self._poll,), daemon=True)
        poller.start()
        self._guarded(self._follow)
        poller.join(10)

    def _guarded(self, work: Any) -> None:
        try:
            work()
        except (OSError, http.client.HTTPException, ValueError) as error:
            if not self.stop.is_set():
                self.error = repr(error)

    def _get(self, connection: http.client.HTTPConnection, path: str) -> Any:
        connection.request("GET", path, headers=HEADERS)
        self.polls += 1
        return json.loads(connection.getresponse().read())

    def _poll(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        runtimes_due = 0.0
        while not self.stop.wait(POLL_SECONDS):
            stats = self._get(connection, "/api/stats")
            self._get(connection, "/api/limits")
            if stats["counts"]["running"] > 0:
                self._get(connection, "/api/tasks?state=running&limit=100")
            if time.monotonic() >= runtimes_due:
                self._get(connection, "/api/stats/history?window=1m")
                runtimes_due = time.monotonic() + RUNTIMES_SECONDS

    def _follow(self) -> None:
        stream = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        pages = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        stream.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
        response = stream.getresponse()
        self.sock = stream.sock
        buffer = ""
        while not self.stop.is_set():
            chunk = response.read1(65536)
            if not chunk:
                return
            buffer += chunk.decode()
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                self._handle(block, pages)

    def _handle(self, block: str, pages: http.client.HTTPConnection) -> None:
        name, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            if field == "event":
                name = value.strip()
            elif field == "data":
                data.append(value.strip())
        if not data:
            return
        json.loads("\n".join(data))
        self.events[name] = self.events.get(name, 0) + 1
        if name in ("ready", "resync"):
            pages.request("GET", f"/api/tasks?limit={PAGE_ROWS}", headers=HEADERS)
            json.loads(pages.getresponse().read())
            self.pages += 1

    def hang_up(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass


def dashboards(port: int, streams: int, stop: threading.Event) -> dict[str, Any]:
    readers = [Dashboard(port, stop) for _ in range(streams)]
    for reader in readers:
        reader.start()
    stop.wait()
    for reader in readers:
        reader.hang_up()
    for reader in readers:
        reader.join(10)
    events: dict[str, int] = {}
    for reader in readers:
        for name, n in reader.events.items():
            events[name] = events.get(name, 0) + n
    errors = [r.error for r in readers if r.error]
    return {
        "events": events,
        "pages": sum(r.pages for r in readers),
        "polls": sum(r.polls for r in readers),
        "errors": errors,
    }


def run_role(args: argparse.Namespace) -> None:
    """A role's process: works until a line (or EOF) on stdin, then prints its report."""
    stop = threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        result.update(dashboards(args.port, args.streams, stop))

    worker = threading.Thread(target=work)
    worker.start()
    sys.stdin.readline()
    stop.set()
    worker.join(60)
    print(json.dumps(result), flush=True)


# ---- one measurement -------------------------------------------------------------


def finished(server: Server) -> int:
    """Tasks finished so far: every id up to the newest that is not unfinished (the
    counts per state would stall at the retention of finished tasks in memory)."""
    newest = server.get("/api/tasks?limit=1")["tasks"][0]["id"]
    return newest - server.get("/api/stats")["unfinished"]


def measure(args: argparse.Namespace, streams: int, pythonpath: str) -> dict[str, Any]:
    """The server's CPU over one window, with ``streams`` dashboards open."""
    server = Server(pythonpath, args.streams)
    try:
        start_source(server, args.rate, 2 * args.warmup + args.seconds + 30)
        time.sleep(args.warmup)
        viewers = start_role("dashboards", server.port, streams=streams) if streams else None
        time.sleep(args.warmup)
        cpu0, done0, t0 = server.cpu_seconds(), finished(server), time.monotonic()
        time.sleep(args.seconds)
        cpu1, done1, t1 = server.cpu_seconds(), finished(server), time.monotonic()
        seen = stop_role(viewers) if viewers else {}
    finally:
        server.stop()
    elapsed = t1 - t0
    return {
        "streams": streams,
        "cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
        "finished_per_s": (done1 - done0) / elapsed,
        "dashboards": seen,
    }


def row(run: int, idle: dict[str, Any], loaded: dict[str, Any]) -> list[str]:
    events = loaded["dashboards"].get("events", {})
    return [
        str(run),
        f"{idle['finished_per_s']:.0f}",
        f"{loaded['finished_per_s']:.0f}",
        f"{idle['cpu_percent']:.1f}",
        f"{loaded['cpu_percent']:.1f}",
        f"{loaded['cpu_percent'] - idle['cpu_percent']:+.1f}",
        str(events.get("task", 0)),
        str(events.get("resync", 0)),
        str(loaded["dashboards"].get("pages", 0)),
        str(loaded["dashboards"].get("polls", 0)),
    ]


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for cells in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 3 s windows (for CI)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--rate", type=float, default=1000.0, help="tasks submitted per second")
    parser.add_argument("--streams", type=int, default=10, help="dashboards open")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    parser.add_argument("--role", choices=["dashboards"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        run_role(args)
        return 0
    if args.quick:
        args.runs, args.seconds, args.warmup = 1, 3.0, 1.0
    # The server imports taskrunner as this process would (installed, or by
    # PYTHONPATH, made absolute: the server runs in another directory).
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    pythonpath = os.pathsep.join(os.path.abspath(e) for e in entries if e)
    headers = ["run", "done/s idle", "done/s dash", "CPU% idle", "CPU% dash", "cost %"]
    headers += ["task events", "resyncs", "pages", "polls"]
    results, rows = [], []
    for run in range(1, args.runs + 1):
        idle = measure(args, 0, pythonpath)
        loaded = measure(args, args.streams, pythonpath)
        results.append((idle, loaded))
        rows.append(row(run, idle, loaded))
    costs = [loaded["cpu_percent"] - idle["cpu_percent"] for idle, loaded in results]
    cost = statistics.median(costs)
    rows.append(
        [
            "median",
            f"{statistics.median(i['finished_per_s'] for i, _ in results):.0f}",
            f"{statistics.median(d['finished_per_s'] for _, d in results):.0f}",
            f"{statistics.median(i['cpu_percent'] for i, _ in results):.1f}",
            f"{statistics.median(d['cpu_percent'] for _, d in results):.1f}",
            f"{cost:+.1f}",
            "",
            "",
            "",
            "",
        ]
    )
    print(
        f"{args.streams} dashboards while {args.rate:.0f} tasks/s finish; "
        f"CPU of the server process over {args.seconds:.0f} s windows, % of one core"
    )
    print_table(headers, rows)
    verdict = "met" if cost <= TARGET_PERCENT else "NOT met"
    print(
        f"cost of {args.streams} dashboards: {cost:+.1f} % of a core; "
        f"target <= {TARGET_PERCENT:.0f} %: {verdict}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "median_cost_percent": cost}))
    ran = all(
        idle["finished_per_s"] > 0
        and loaded["finished_per_s"] > 0
        and loaded["dashboards"].get("events", {}).get("ready", 0) == args.streams
        and not loaded["dashboards"].get("errors")
        for idle, loaded in results
    )
    if not ran:
        print("it did not run: no task finished, or a dashboard got no stream", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
