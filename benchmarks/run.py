"""Benchmark taskrunner against three peers on the same fake tasks, in one run.

    python benchmarks/run.py            # full run (about 8 minutes)
    python benchmarks/run.py --quick    # shrunk scenarios, under a minute (CI smoke run)

Each implementation x scenario x pass runs in its own process (``measure.py``),
which prints its figures as JSON. This script samples each child's thread
count from /proc while it runs, takes medians over repeats, and prints one
table, taskrunner's ratio to the best peer on each figure, and each target
with PASS/MISS. BENCHMARKS.md says what every figure means.

Options:
    --only mixed100,poll10k         run only these scenarios
    --impl taskrunner,tpe100_50ms   run only these implementations
    --repeat N                      runs of each pair, median taken (default 3;
                                    --quick 1); a pair whose run takes over
                                    --repeat-limit seconds (default 8) is not repeated
    --tr KEY=VALUE                  a taskrunner option (repeatable): max_workers,
                                    poll_min, poll_max, poll_ratio, max_poll_rate,
                                    keep_alive; wait=wait|counts (how the quiet pass waits)
    --variant LABEL:K=V,K=V         an extra taskrunner row with these options (repeatable)
    --json out.json                 write every raw and median figure as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from peers import ALL, PEERS  # noqa: E402
from scenarios import ORDER, scenarios, targets  # noqa: E402

# key, header, format, lower is better
FIGURES = [
    ("reg_us", "reg us/task", "{:.2f}", True),
    ("makespan_s", "makespan s", "{:.3f}", True),
    ("excess_ms", "excess ms", "{:+.1f}", True),
    ("tasks_per_s", "tasks/s", "{:,.0f}", False),
    ("lat_p50_ms", "lat p50 ms", "{:.2f}", True),
    ("lat_p99_ms", "lat p99 ms", "{:.2f}", True),
    ("cpu_s", "CPU s", "{:.3f}", True),
    ("threads", "threads", "{:.0f}", True),
    ("main_speed", "main speed", "{:.2f}", False),
    ("main_speed_oncpu", "on-CPU speed", "{:.2f}", False),
    ("main_blocked_pct", "blocked %", "{:.1f}", True),
]
BUSY_FIGURES = {"main_speed", "main_speed_oncpu"}
FORMATS = {key: f for key, _, f, _ in FIGURES}
NUMERIC_OPTIONS = ("max_workers", "poll_min", "poll_max", "poll_ratio", "max_poll_rate")
NUMERIC_OPTIONS += ("keep_alive",)
WAIT_MODES = ("wait", "counts")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """taskrunner options: the constructor's numbers, and how the quiet pass
    waits ("wait": runner.wait(), the default; "counts": sleep 5 ms between
    runner.counts() checks, to see the engine without wait()'s own cost)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key == "wait" and value in WAIT_MODES:
            options[key] = value
        elif sep and key in NUMERIC_OPTIONS:
            options[key] = float(value)
        else:
            keys = ", ".join(NUMERIC_OPTIONS)
            raise SystemExit(f"bad taskrunner option {pair!r}; keys: {keys}, wait=wait|counts")
    return options


def git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", os.path.dirname(HERE), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        tr_version = version("taskrunner")
    except Exception:
        tr_version = "?"
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "src", "python", "Cargo.toml")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "taskrunner": tr_version,
        "commit": (head + (" (modified)" if dirty else "")) if head else "?",
    }


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this script and the children it has waited for."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def proc_threads(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs measure.py with `config`, sampling its thread count every 5 ms."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "measure.py"), json.dumps(config)],
            stdout=out,
            stderr=err,
            cwd=HERE,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, proc_threads(proc.pid))
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                proc.wait()
                return {"error": f"timed out after {timeout:.0f} s"}
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0 or not stdout.strip():
        return {"error": f"exit {proc.returncode}: {stderr.strip()[-2000:]}"}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["threads_sampled"] = peak
    result["process_s"] = elapsed
    if stderr.strip():
        result["stderr"] = stderr.strip()[-2000:]
    return result


def median(values: list[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: Optional[float], pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def table(headers: list[str], rows: list[list[str]], left: int = 2) -> str:
    """Plain text table; the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def figures_of(reps: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Median of each figure over the repeats (main speed from the busy pass)."""
    figures: dict[str, Optional[float]] = {}
    for key, *_ in FIGURES:
        values: list[Optional[float]] = []
        for r in reps:
            quiet, busy = r["quiet"], r["busy"]
            if key in BUSY_FIGURES:
                values.append(busy.get(key))
            elif key == "main_blocked_pct":
                frac = busy.get("main_blocked_frac")
                values.append(None if frac is None else 100 * frac)
            elif key == "threads" and "error" not in quiet:
                values.append(max(quiet.get("threads_sampled", 0), quiet.get("threads_self", 0)))
            else:
                values.append(quiet.get(key))
        figures[key] = median(values)
    return figures


def measure_pair(
    scen: str, label: str, impl: str, options: dict[str, Any], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int]:
    """Repeats the quiet and the busy pass of one implementation on one scenario."""
    quick = args.quick
    idle_s, cap_s, warmup_s = (0.2, 1.0, 0.3) if quick else (0.5, 3.0, 0.6)
    timeout = 120.0 if quick else 900.0
    base = {
        "impl": impl,
        "scenario": scen,
        "quick": quick,
        "options": options,
        "warmup_s": warmup_s,
    }
    reps: list[dict[str, Any]] = []
    failures = 0
    for rep in range(args.repeat):
        quiet = run_child({**base, "pass": "quiet"}, timeout)
        busy = run_child({**base, "pass": "busy", "idle_s": idle_s, "cap_s": cap_s}, timeout)
        for part, res in (("quiet", quiet), ("busy", busy)):
            if "error" in res:
                failures += 1
                print(f"!! {scen} {label} {part}: {res['error']}", file=sys.stderr, flush=True)
        reps.append({"quiet": quiet, "busy": busy})
        q, b = quiet, busy
        print(
            f"  {scen:<12} {label:<22} run {rep + 1}: "
            f"makespan {fmt(q.get('makespan_s'), '{:.3f}')} s, "
            f"reg {fmt(q.get('reg_us'), '{:.2f}')} us, CPU {fmt(q.get('cpu_s'), '{:.3f}')} s, "
            f"main speed {fmt(b.get('main_speed'), '{:.2f}')} "
            f"(on-CPU {fmt(b.get('main_speed_oncpu'), '{:.2f}')})",
            file=sys.stderr,
            flush=True,
        )
        if "error" in quiet or quiet.get("process_s", 0) > args.repeat_limit:
            break
    return reps, failures


def ratio_rows(results: dict, only: list[str], trs: list[str], peers: list[str]) -> tuple:
    """taskrunner against the best peer, figure by figure."""
    rows, ratios = [], {}
    for scen in only:
        for tr in trs:
            for key, header, f, lower in FIGURES:
                mine = results[scen][tr]["median"][key]
                peer_vals = [
                    (results[scen][p]["median"][key], p)
                    for p in peers
                    if results[scen][p]["median"][key] is not None
                ]
                if mine is None or not peer_vals:
                    continue
                best, best_name = min(peer_vals) if lower else max(peer_vals)
                ratio = mine / best if best else None
                if lower:
                    adv = best / mine if mine > 0 and best > 0 else None
                else:
                    adv = mine / best if best > 0 else None
                ratios.setdefault(scen, {}).setdefault(tr, {})[key] = {
                    "taskrunner": mine,
                    "best_peer": best_name,
                    "peer": best,
                    "ratio": ratio,
                    "advantage": adv,
                }
                rows.append(
                    [
                        scen,
                        tr,
                        header,
                        fmt(mine, f),
                        f"{fmt(best, f)} {best_name}",
                        fmt(ratio, "{:.3g}"),
                        fmt(adv, "{:.3g}x"),
                    ]
                )
    return rows, ratios


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shrunk scenarios (CI smoke run)")
    parser.add_argument("--only", default="", help="scenarios, comma-separated")
    parser.add_argument("--impl", default="", help="implementations, comma-separated")
    parser.add_argument("--repeat", type=int, default=None, help="runs per pair (median)")
    parser.add_argument("--repeat-limit", type=float, default=8.0, metavar="SECONDS")
    parser.add_argument("--tr", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL:K=V,K=V")
    parser.add_argument("--json", default="", metavar="PATH")
    args = parser.parse_args()

    quick = args.quick
    scens = scenarios(quick)
    only = [s for s in args.only.split(",") if s] or list(ORDER)
    for s in only:
        if s not in scens:
            parser.error(f"unknown scenario {s!r}; choose from {', '.join(ORDER)}")
    impl_names = [s for s in args.impl.split(",") if s] or list(ALL)
    for name in impl_names:
        if name not in ALL:
            parser.error(f"unknown implementation {name!r}; choose from {', '.join(ALL)}")
    args.repeat = args.repeat or (1 if quick else 3)

    # (row label, implementation, options)
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for name in impl_names:
        runs.append((name, name, parse_options(args.tr) if name == "taskrunner" else {}))
    for spec in args.variant:
        label, _, opts = spec.partition(":")
        options = {**parse_options(args.tr), **parse_options([p for p in opts.split(",") if p])}
        runs.append((f"taskrunner[{label}]", "taskrunner", options))

    info = machine()
    print(
        f"# taskrunner benchmark{' --quick' if quick else ''}: "
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"taskrunner {info['taskrunner']} at {info['commit']}",
        flush=True,
    )
    started = time.perf_counter()
    busy0, own0 = cpu_busy_s(), own_cpu_s()
    failures = 0
    results: dict[str, dict[str, Any]] = {}
    for scen in only:
        results[scen] = {}
        for label, impl, options in runs:
            reps, failed = measure_pair(scen, label, impl, options, args)
            failures += failed
            results[scen][label] = {
                "impl": impl,
                "options": options,
                "median": figures_of(reps),
                "runs": reps,
            }

    print("\n# results (median of runs); scenarios:")
    for s in only:
        print(f"#   {s}: {scens[s].description}")
    rows = []
    for scen in only:
        for label, *_ in runs:
            med = results[scen][label]["median"]
            rows.append([scen, label] + [fmt(med[k], f) for k, _, f, _ in FIGURES])
    print(table(["scenario", "implementation"] + [h for _, h, _, _ in FIGURES], rows))

    trs = [label for label, impl, _ in runs if impl == "taskrunner"]
    peers = [label for label, impl, _ in runs if impl in PEERS]
    ratios: dict[str, Any] = {}
    if trs and peers:
        print("\n# taskrunner / best peer per figure (advantage > 1: taskrunner is better)")
        rrows, ratios = ratio_rows(results, only, trs, peers)
        headers = ["scenario", "implementation", "figure", "taskrunner", "best peer"]
        print(table(headers + ["ratio", "advantage"], rrows, left=3))

    checks = []
    if trs:
        note = " (--quick: shrunk scenarios, scaled targets, indicative only)" if quick else ""
        print(f"\n# targets{note}")
        trows = []
        for t in targets(quick):
            if t.scenario not in only:
                continue
            for tr in trs:
                value = results[t.scenario][tr]["median"][t.figure]
                ok = t.check(value)
                verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
                checks.append(
                    {
                        "scenario": t.scenario,
                        "implementation": tr,
                        "target": t.label,
                        "figure": t.figure,
                        "value": value,
                        "result": verdict,
                    }
                )
                note = ""
                if t.figure == "main_speed":
                    med = results[t.scenario][tr]["median"]
                    note = (
                        f"on-CPU speed {fmt(med['main_speed_oncpu'], '{:.2f}')}, "
                        f"blocked {fmt(med['main_blocked_pct'], '{:.1f}')}%"
                    )
                trows.append(
                    [t.scenario, tr, t.label, fmt(value, FORMATS[t.figure]), verdict, note]
                )
        headers = ["scenario", "implementation", "target", "measured", "result", "note"]
        print(table(headers, trows, left=3))

    total = time.perf_counter() - started
    # CPU that other processes used meanwhile: the noise this run competed with.
    others = max(0.0, (cpu_busy_s() - busy0) - (own_cpu_s() - own0))
    cores = os.cpu_count() or 1
    print(
        f"\n# {len(only)} scenario(s) x {len(runs)} implementation(s) in {total:.0f} s; "
        f"other processes used {others:.0f} CPU s meanwhile "
        f"({100 * others / (total * cores):.0f}% of the machine)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "quick": quick,
                    "repeat": args.repeat,
                    "scenarios": {s: scens[s].description for s in only},
                    "results": results,
                    "ratios": ratios,
                    "targets": checks,
                    "total_s": total,
                    "other_processes_cpu_s": others,
                },
                f,
                indent=1,
            )
    if failures:
        print(f"{failures} measurement(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
