"""Benchmark search: the first page of ``GET /api/tasks`` on a large journal.

    python benchmarks/search.py            # a journal of 1,000,000 tasks
    python benchmarks/search.py --quick    # 20,000 tasks, a few seconds (CI smoke run)
    python benchmarks/search.py --tasks 200000 --runs 9

The journal is built once per size and mix, and kept (``--cache DIR``, by
default a folder in the system's temp dir): a later run with the same size
reuses it. It is built in bulk: a runner makes the file (so its schema is the
release's own), then the rows go in through SQLite in one transaction, as the
journal's writer would have left them (each column as ``row.rs`` writes it,
the ``id_blocks`` ranges and the id high-water mark). Every row is final, so
opening the file recovers nothing and changes nothing.

The mix, spread over the last day in submit order: 92 % succeeded, 4 %
failed, 2 % cancelled, 2 % timed out; 2 % polling tasks, the rest blocking;
names from 30 common ones (weighted) plus 1,000 names of a few tasks each,
and ``nightly-audit`` on exactly 10 tasks; half the tasks carry an HTTP type
(``reindex`` on exactly 30); 30 % ran on one of 8 cluster workers, and 20
tasks on a ninth; failed tasks raised ``ValueError``, ``TimeoutError``,
``KeyError`` or ``ConnectionError``, and exactly 50 ``PermissionError``.

Each query is ``GET /api/tasks?limit=100&...`` through the app's test client
over a runner opened on the journal (ids from the journal, then each task's
status, as the endpoint does), after one warm-up call; the figure is the
median of ``--runs`` calls (default 5). Target: at most 200 ms each. The
script prints a table, and exits 1 when a query misses the target or a page
differs from what the mix says it holds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import taskrunner
from taskrunner import TaskRunner

TARGET_MS = 200.0
PAGE = 100
# Changing the mix below changes this, so that a cached journal of another mix is not reused.
MIX = "mix-1"

NAMES = [
    "resize-image",
    "send-email",
    "sync-inventory",
    "charge-card",
    "render-pdf",
    "transcode-video",
    "index-document",
    "fetch-feed",
    "score-model",
    "export-csv",
    "import-csv",
    "refresh-token",
    "warm-cache",
    "compress-logs",
    "geocode-address",
    "notify-slack",
    "build-sitemap",
    "crawl-page",
    "archive-mail",
    "check-health",
    "backup-db",
    "rotate-keys",
    "thumbnail",
    "ocr-scan",
    "translate-text",
    "aggregate-metrics",
    "send-sms",
    "verify-email",
    "purge-cdn",
    "reconcile-ledger",
]
TYPES = ["fake_blocking", "thumbnail", "email", "report", "webhook", "ocr"]
WORKERS = [f"tcp://10.0.0.{k}:4000" for k in range(1, 9)]
ERRORS = ["ValueError", "TimeoutError", "KeyError", "ConnectionError"]
RARE = {"name": "nightly-audit", "type": "reindex", "worker": "tcp://10.0.9.9:4000"}
RARE_COUNTS = {"name": 10, "type": 30, "worker": 20, "error": 50}
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/tasks.py", line 120, in run\n'
    "    return self.client.fetch(self.url, timeout=30)\n"
    '  File "/srv/app/client.py", line 88, in fetch\n'
    "    raise error\n"
)

COLUMNS = (
    "id, name, kind, state, submitted_at, started_at, finished_at, polls, attempt, "
    "result_encoding, result, error_type, error_message, error_traceback, origin, "
    "worker, task_type"
)


def spaced(n: int, count: int, offset: int) -> set[int]:
    """``count`` ids spread evenly over 1..n."""
    step = max(n // count, 1)
    return {1 + offset + i * step for i in range(count) if 1 + offset + i * step <= n}


def rows(n: int, start: float) -> Any:
    """The mix's rows, in id order (see the module's docstring)."""
    rng = random.Random(14)
    weights = [1.0 / (k + 1) for k in range(len(NAMES))]
    rare_names = spaced(n, RARE_COUNTS["name"], 3)
    rare_types = spaced(n, RARE_COUNTS["type"], 5)
    rare_workers = spaced(n, RARE_COUNTS["worker"], 7)
    rare_errors = spaced(n, RARE_COUNTS["error"], 11)
    span = 86_400.0
    for id in range(1, n + 1):
        submitted = start + span * id / n
        roll = rng.random()
        if id in rare_errors:
            state, error = "failed", "PermissionError"
        elif roll < 0.04:
            state, error = "failed", rng.choice(ERRORS)
        elif roll < 0.06:
            state, error = "cancelled", None
        elif roll < 0.08:
            state, error = "timed_out", None
        else:
            state, error = "succeeded", None
        if id in rare_names:
            name = RARE["name"]
        elif rng.random() < 0.05:
            name = f"customer-report-{rng.randrange(1000)}"
        else:
            name = rng.choices(NAMES, weights)[0]
        kind = "polling" if rng.random() < 0.02 else "blocking"
        if id in rare_types:
            task_type: Optional[str] = RARE["type"]
        else:
            task_type = rng.choice(TYPES) if rng.random() < 0.5 else None
        if id in rare_workers:
            worker: Optional[str] = RARE["worker"]
        else:
            worker = rng.choice(WORKERS) if rng.random() < 0.3 else None
        ran = state != "cancelled"
        started = submitted + 0.01 if ran else None
        finished = submitted + (rng.random() * 2 if ran else 0.001)
        result = str(id * 2).encode() if state == "succeeded" else None
        yield (
            id,
            name,
            kind,
            state,
            submitted,
            started,
            finished,
            rng.randrange(20) if kind == "polling" else 0,
            1,
            "json" if result is not None else None,
            result,
            error,
            f"{error}: task {id} could not finish" if error else None,
            TRACEBACK + f"{error}: task {id}\n" if error else None,
            "library",
            worker,
            task_type,
        )


def build(path: Path, n: int) -> None:
    """A journal of ``n`` tasks at ``path``, made in bulk (see the docstring)."""
    partial = path.with_suffix(".partial")
    for leftover in path.parent.glob(partial.name + "*"):
        leftover.unlink()
    TaskRunner(journal=str(partial)).shutdown()  # the release's own schema
    start = time.time() - 86_400.0 - 60.0
    conn = sqlite3.connect(partial)
    conn.execute("PRAGMA synchronous = OFF")
    placeholders = ", ".join("?" * len(COLUMNS.split(",")))
    blocks: dict[int, list[float]] = {}
    with conn:
        batch = []
        for row in rows(n, start):
            batch.append(row)
            block = blocks.setdefault(row[0] >> 10, [row[4], row[4]])
            block[0], block[1] = min(block[0], row[4]), max(block[1], row[4])
            if len(batch) == 50_000:
                conn.executemany(f"INSERT INTO tasks ({COLUMNS}) VALUES ({placeholders})", batch)
                batch.clear()
        conn.executemany(f"INSERT INTO tasks ({COLUMNS}) VALUES ({placeholders})", batch)
        conn.executemany(
            "INSERT INTO id_blocks (block, min_submitted, max_submitted) VALUES (?, ?, ?)",
            [(block, lo, hi) for block, (lo, hi) in blocks.items()],
        )
        conn.execute("INSERT INTO meta (key, value) VALUES ('high_water', ?)", (n,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    partial.rename(path)
    for leftover in path.parent.glob(partial.name + "*"):
        leftover.unlink()  # the making runner's lock file


def journal_for(n: int, cache: Path) -> Path:
    """The cached journal of ``n`` tasks, built when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"journal-{n}-{MIX}.db"
    if path.exists():
        print(f"reusing {path}", flush=True)
        return path
    print(f"building a journal of {n:,} tasks at {path} ...", flush=True)
    started = time.perf_counter()
    build(path, n)
    print(f"  built in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def queries() -> list[tuple[str, dict[str, str]]]:
    """(label, query) of each page timed."""
    return [
        ("no filter", {}),
        ("state=failed (4 %)", {"state": "failed"}),
        ("state=cancelled (2 %)", {"state": "cancelled"}),
        ("state=succeeded (92 %)", {"state": "succeeded"}),
        ("name, common (resize)", {"name": "resize"}),
        ("name, rare (10 tasks)", {"name": RARE["name"]}),
        ("name, 1,000 names of a few tasks", {"name": "customer-report-"}),
        ("name, no match", {"name": "no-such-name"}),
        ("kind=blocking (98 %)", {"kind": "blocking"}),
        ("kind=polling (2 %)", {"kind": "polling"}),
        ("type, common", {"type": "thumbnail"}),
        ("type, rare (30 tasks)", {"type": RARE["type"]}),
        ("type, no match", {"type": "no-such-type"}),
        ("worker, common", {"worker": WORKERS[0]}),
        ("worker, rare (20 tasks)", {"worker": RARE["worker"]}),
        ("worker, no match", {"worker": "tcp://nowhere:1"}),
        ("error, common (ValueError)", {"error": "ValueError"}),
        ("error, rare (50 tasks)", {"error": "PermissionError"}),
        ("error, no match", {"error": "NoSuchError"}),
        (
            "state=failed & error=TimeoutError & type",
            {"state": "failed", "error": "TimeoutError", "type": "email"},
        ),
        ("kind=polling & worker, common", {"kind": "polling", "worker": WORKERS[1]}),
        ("name & type, rare", {"name": "audit", "type": RARE["type"]}),
    ]


def expected_count(n: int, query: dict[str, str]) -> Optional[int]:
    """How many tasks a rare or empty query matches in the mix (None: many)."""
    rare = {
        ("name", RARE["name"]): RARE_COUNTS["name"],
        ("type", RARE["type"]): RARE_COUNTS["type"],
        ("worker", RARE["worker"]): RARE_COUNTS["worker"],
        ("error", "PermissionError"): RARE_COUNTS["error"],
    }
    if len(query) != 1:
        return None
    ((key, value),) = query.items()
    if "no-such" in value or "nowhere" in value or value == "NoSuchError":
        return 0
    count = rare.get((key, value))
    return None if count is None else min(count, n)


def passes(task: dict[str, Any], query: dict[str, str]) -> bool:
    """Whether a listed task is one the query asks for."""
    error = task["error"]["type"] if task["error"] else None
    have = {**task, "error": error}
    return all(
        value in task["name"] if key == "name" else have[key] == value
        for key, value in query.items()
    )


def time_queries(path: Path, n: int, runs: int) -> list[dict[str, Any]]:
    """Times each query's first page through the app; returns one record each."""
    from taskrunner.web import create_app

    # Retention far off: the cached rows must outlive the days between runs.
    runner = TaskRunner(journal=str(path), journal_retention=100 * 365 * 86_400.0)
    app = create_app(runner=runner, config={"TESTING": True, "TASKRUNNER_TOKEN": None})
    client = app.test_client()
    results = []
    try:
        for label, query in queries():
            url = "/api/tasks?" + "&".join(f"{k}={v}" for k, v in {"limit": PAGE, **query}.items())
            body = client.get(url).get_json()  # warm-up
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.get_json()
            body = response.get_json()
            want = expected_count(n, query)
            shown = len(body["tasks"])
            right = all(passes(task, query) for task in body["tasks"]) and (
                want is None or shown == want
            )
            results.append(
                {
                    "query": label,
                    "params": query,
                    "tasks": shown,
                    "median_ms": statistics.median(times),
                    "max_ms": max(times),
                    "right": right,
                }
            )
            print(
                f"  {label:<44} {shown:>4} tasks  median {statistics.median(times):7.1f} ms",
                flush=True,
            )
    finally:
        runner.shutdown()
    return results


def table(results: list[dict[str, Any]], n: int) -> str:
    lines = [
        f"First page of GET /api/tasks (limit {PAGE}) on a journal of {n:,} tasks",
        "",
        "| query | tasks on the page | median ms | max ms | target ms | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        met = "yes" if r["median_ms"] <= TARGET_MS else "NO"
        if not r["right"]:
            met += " (wrong page)"
        lines.append(
            f"| {r['query']} | {r['tasks']} | {r['median_ms']:.1f} | {r['max_ms']:.1f} "
            f"| {TARGET_MS:.0f} | {met} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 tasks, 3 runs")
    parser.add_argument("--tasks", type=int, default=None, help="journal size (1,000,000)")
    parser.add_argument("--runs", type=int, default=None, help="timed calls per query (5)")
    parser.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "taskrunner-search-bench"),
        help="where built journals are kept",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    n = args.tasks or (20_000 if args.quick else 1_000_000)
    runs = args.runs or (3 if args.quick else 5)
    print(f"taskrunner {taskrunner.__version__}, Python {sys.version.split()[0]}", flush=True)
    path = journal_for(n, Path(args.cache))
    results = time_queries(path, n, runs)
    print()
    print(table(results, n))
    if args.json:
        Path(args.json).write_text(json.dumps({"tasks": n, "results": results}, indent=2))
    missed = [r for r in results if r["median_ms"] > TARGET_MS or not r["right"]]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
