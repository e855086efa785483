"""The command line: ``python -m taskrunner demo`` and ``python -m taskrunner serve``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Optional, TextIO

from taskrunner.faketasks import gen_task
from taskrunner.runner import TaskRunner

STATE_MARKS = {
    "pending": "·",
    "running": "▸",
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "-",
    "timed_out": "⌛",
}


def _progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return "█" * filled + "░" * (width - filled)


def render(statuses: list[dict], elapsed: float, width: int, max_rows: int) -> list[str]:
    """The demo's screen: a progress line, counts per state, then a table of tasks."""
    total = len(statuses)
    done = sum(s["done"] for s in statuses)
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    lines = [
        f"{_progress_bar(done, total)} {done}/{total} done in {elapsed:5.1f}s",
        "  ".join(f"{state} {n}" for state, n in counts.items()),
        "",
        f"{'id':>5}  {'name':<17} {'kind':<9} {'state':<11} {'elapsed':>8} {'polls':>6}  result",
    ]
    # Unfinished tasks first: they are the interesting ones while the demo runs.
    ordered = sorted(statuses, key=lambda s: (s["done"], s["id"]))
    for s in ordered[:max_rows]:
        runtime = "" if s["runtime"] is None else f"{s['runtime']:7.2f}s"
        outcome = s["error"]["type"] if s["error"] else ("" if s["result"] is None else s["result"])
        mark = STATE_MARKS.get(s["state"], " ")
        row = (
            f"{s['id']:>5}  {s['name']:<17} {s['kind'] or '?':<9} {mark} {s['state']:<9} "
            f"{runtime:>8} {s['polls']:>6}  {outcome}"
        )
        lines.append(row[:width])
    if total > max_rows:
        lines.append(f"  … and {total - max_rows} more")
    return lines


def demo(tasks: int, wait: Optional[float], refresh: float, out: TextIO) -> int:
    """Launches ``tasks`` fake tasks and shows them live until all are done."""
    live = out.isatty()
    started = time.time()
    with TaskRunner() as runner:
        handles = [runner.submit(gen_task(i, wait)) for i in range(tasks)]
        registered = time.time() - started
        out.write(f"registered {tasks} tasks in {registered * 1000:.1f} ms\n")
        drawn = 0
        while True:
            statuses = [h.status() for h in handles]
            size = shutil.get_terminal_size((100, 30))
            lines = render(statuses, time.time() - started, size.columns, max(size.lines - 8, 5))
            if live:
                # Move up over the previous frame and draw over it.
                out.write(f"\x1b[{drawn}F\x1b[J" if drawn else "")
                out.write("\n".join(lines) + "\n")
                drawn = len(lines)
            if all(s["done"] for s in statuses):
                break
            if not live:
                out.write(lines[0] + "\n")
            runner.wait(timeout=refresh)
        if not live:
            out.write("\n".join(lines) + "\n")
    makespan = max((s["finished_at"] for s in statuses), default=started) - started
    longest = max((s["runtime"] or 0.0) for s in statuses) if statuses else 0.0
    counts = {state: sum(s["state"] == state for s in statuses) for state in STATE_MARKS}
    out.write(
        f"\nall {tasks} tasks done in {makespan:.2f} s (longest task {longest:.2f} s); "
        + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        + "\n"
    )
    return 0 if counts["succeeded"] == tasks else 1


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskrunner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_args = commands.add_parser("demo", help="launch fake tasks and watch them live")
    demo_args.add_argument("--tasks", type=int, default=20, help="how many tasks (default 20)")
    demo_args.add_argument(
        "--wait", type=float, default=None, help="each task's wait in seconds (default: 1-9 s)"
    )
    demo_args.add_argument("--refresh", type=float, default=0.2, help="seconds between frames")
    serve_args = commands.add_parser("serve", help="serve the HTTP API and dashboard")
    serve_args.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve_args.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve_args.add_argument("--threads", type=int, default=16, help="server threads (default 16)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        if args.tasks < 0:
            parser.error("--tasks must be >= 0")
        if args.wait is not None and args.wait < 0:
            parser.error("--wait must be >= 0")
        return demo(args.tasks, args.wait, args.refresh, sys.stdout)
    from taskrunner.web.serve import main as serve

    return serve(args.host, args.port, args.threads)
