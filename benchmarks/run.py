"""Benchmark taskrunner, in memory and with a journal, against peers on the same tasks.

    python benchmarks/run.py            # full run (about 17 minutes)
    python benchmarks/run.py --quick    # shrunk scenarios, about a minute (CI smoke run)

Each implementation x scenario x pass runs in its own process (``measure.py``),
which prints its figures as JSON. This script samples each child's thread
count from /proc while it runs, takes medians over repeats, and prints one
table, the status checks' nanoseconds per call, taskrunner's ratio to the
best peer on each figure, and each target with its median and PASS/MISS.
BENCHMARKS.md says what every figure means.

Scenarios: mixed100, block100, poll10k, instant100k, sleep0_100k, status1k, http10k.
Implementations: taskrunner, taskrunner_journal, thread_per_task_1s, tpe100_50ms,
asyncio_50ms, huey_sqlite. A journaled row is compared with the journaled peer
(huey_sqlite), an in-memory one with the in-memory peers; a pair that cannot
run (Huey on polling tasks, huey not installed, ...) is listed with why.

Options:
    --only sleep0_100k,status1k     run only these scenarios
    --impl taskrunner,tpe100_50ms   run only these implementations
    --repeat N                      runs of each pair, median taken (default 3;
                                    --quick 1); a pair whose run takes over
                                    --repeat-limit seconds (default 20) is not repeated
    --tr KEY=VALUE                  a taskrunner option (repeatable, both taskrunner rows):
                                    max_workers, poll_min, poll_max, poll_ratio,
                                    max_poll_rate, keep_alive; wait=wait|counts (how the
                                    quiet pass waits); journal_batch, durability=normal|full
                                    (the journaled row's)
    --variant LABEL:K=V,K=V         an extra taskrunner row with these options (repeatable;
                                    with journal_batch or durability, a journaled row)
    --json out.json                 write every raw and median figure as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from peers import ALL, PEERS, TASKRUNNERS  # noqa: E402
from reporting import competing_cpu, cpu_busy_s, fmt, machine, median, table, write_json  # noqa: E402
from scenarios import ORDER, Relative, SameRun, scenarios, targets  # noqa: E402

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
MIN_WINDOW_S = 0.02  # the busy pass's shortest loop window with a figure (measure.py)
# A status scenario's figure for the ratio table: each implementation's own
# "is this task done?" call (taskrunner handle.done(), the peers future.done()
# or thread.is_alive()). The status table has every call.
STATUS_FIGURES = [("ns:done", "done check ns", "{:.0f}", True)]
FORMATS = {key: f for key, _, f, _ in FIGURES + STATUS_FIGURES}
NUMERIC_OPTIONS = ("max_workers", "poll_min", "poll_max", "poll_ratio", "max_poll_rate")
NUMERIC_OPTIONS += ("keep_alive", "journal_batch")
WAIT_MODES = ("wait", "counts")
DURABILITIES = ("normal", "full")
JOURNAL_OPTIONS = ("journal_batch", "durability")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """taskrunner options: the constructor's numbers, how the quiet pass
    waits ("wait": runner.wait(), the default; "counts": sleep 5 ms between
    runner.counts() checks, to see the engine without wait()'s own cost), and
    the journal's durability."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key == "wait" and value in WAIT_MODES:
            options[key] = value
        elif sep and key == "durability" and value in DURABILITIES:
            options[key] = value
        elif sep and key in NUMERIC_OPTIONS:
            options[key] = float(value)
        else:
            keys = ", ".join(NUMERIC_OPTIONS)
            raise SystemExit(
                f"bad taskrunner option {pair!r}; keys: {keys}, wait=wait|counts, "
                "durability=normal|full"
            )
    return options


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


def figures_of(reps: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Median of each figure over the repeats (main speed from the busy pass)."""
    figures: dict[str, Optional[float]] = {}
    for key, *_ in FIGURES:
        values: list[Optional[float]] = []
        for r in reps:
            quiet, busy = r["quiet"], r.get("busy", {})
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


def status_figures_of(reps: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Median nanoseconds per call of each status check: ``ns_open:<call>``
    (tasks unfinished), ``ns_final:<call>`` (finished), ``ns:<call>`` (the
    slower of the two in each run), and ``ns:done`` for the implementation's
    own done check."""
    passes = [r["status"] for r in reps if "error" not in r["status"]]
    figures: dict[str, Optional[float]] = {}
    for call in status_calls(reps):
        opens = [p["open_ns"].get(call) for p in passes]
        finals = [p["final_ns"].get(call) for p in passes]
        slower = [
            None if o is None or f is None else max(o, f)
            for o, f in zip(opens, finals, strict=True)
        ]
        figures[f"ns_open:{call}"] = median(opens)
        figures[f"ns_final:{call}"] = median(finals)
        figures[f"ns:{call}"] = median(slower)
    primary = next((p["primary"] for p in passes if p.get("primary")), None)
    figures["ns:done"] = figures.get(f"ns:{primary}")
    return figures


def status_calls(reps: list[dict[str, Any]]) -> list[str]:
    """An implementation's status checks in its order, those its build lacks included."""
    calls: list[str] = []
    for r in reps:
        calls += [c for c in r["status"].get("calls", []) if c not in calls]
    return calls


def status_unavailable(reps: list[dict[str, Any]]) -> list[str]:
    return sorted({c for r in reps for c in r["status"].get("unavailable", [])})


def wants_busy_pass(scen: str, quick: bool, journaled: bool = False) -> bool:
    """--quick runs the busy pass only where a target of the row needs its
    figures, so that the smoke run stays short."""
    busy = BUSY_FIGURES | {"main_blocked_pct"}
    return not quick or any(
        t.scenario == scen and t.journal == journaled and getattr(t, "figure", "") in busy
        for t in targets(quick)
    )


def progress_line(scen: str, label: str, rep: int, run: dict[str, Any]) -> str:
    if "status" in run:
        st = run["status"]
        calls = ", ".join(
            f"{call} {fmt(st.get('open_ns', {}).get(call), '{:.0f}')}"
            f"/{fmt(st.get('final_ns', {}).get(call), '{:.0f}')}"
            for call in st.get("calls", [])
        )
        return f"  {scen:<12} {label:<22} run {rep}: ns unfinished/finished: {calls}"
    q, b = run["quiet"], run.get("busy", {})
    if "answers_per_s" in q:
        return (
            f"  {scen:<12} {label:<22} run {rep}: "
            f"{fmt(q.get('tasks_per_s'), '{:,.0f}')} submits/s "
            f"(flush {fmt(q.get('flush_ms'), '{:.1f}')} ms), "
            f"p50 {fmt(q.get('lat_p50_ms'), '{:.2f}')} ms, CPU {fmt(q.get('cpu_s'), '{:.3f}')} s"
        )
    flush = "" if q.get("flush_ms") is None else f", flush {q['flush_ms']:.1f} ms"
    return (
        f"  {scen:<12} {label:<22} run {rep}: "
        f"makespan {fmt(q.get('makespan_s'), '{:.3f}')} s, "
        f"reg {fmt(q.get('reg_us'), '{:.2f}')} us, CPU {fmt(q.get('cpu_s'), '{:.3f}')} s, "
        f"main speed {fmt(b.get('main_speed'), '{:.2f}')} "
        f"(on-CPU {fmt(b.get('main_speed_oncpu'), '{:.2f}')}){flush}"
    )


def measure_pair(
    scen: str, label: str, impl: str, options: dict[str, Any], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int]:
    """Repeats the passes of one implementation on one scenario: quiet and
    busy (see wants_busy_pass; skipped when the quiet pass saw every task end
    during registration), or a status or HTTP scenario's own pass."""
    quick = args.quick
    idle_s, cap_s, warmup_s = (0.2, 1.0, 0.3) if quick else (0.5, 3.0, 0.6)
    timeout = 120.0 if quick else 900.0
    status = is_status(scen, quick)
    http = scenarios(quick)[scen].passes == "http"
    base = {
        "impl": impl,
        "scenario": scen,
        "quick": quick,
        "options": options,
        "warmup_s": warmup_s,
    }
    passes: dict[str, dict[str, Any]] = {"status": {}} if status else {"quiet": {}}
    if http:
        passes = {"quiet": {"pass": "http"}}  # its figures read as the quiet pass's
    elif not status and wants_busy_pass(scen, quick, ALL[impl].journaled):
        passes["busy"] = {"idle_s": idle_s, "cap_s": cap_s}
    reps: list[dict[str, Any]] = []
    failures = 0
    for rep in range(args.repeat):
        run: dict[str, Any] = {}
        for part, extra in passes.items():
            if part == "busy" and run["quiet"].get("tail_s", 1.0) < MIN_WINDOW_S:
                # Its loop would get no window: the tasks end while they are registered.
                run[part] = {"skipped": "every task ended during registration"}
                continue
            run[part] = run_child({**base, "pass": part, **extra}, timeout)
            if "error" in run[part]:
                failures += 1
                print(
                    f"!! {scen} {label} {part}: {run[part]['error']}", file=sys.stderr, flush=True
                )
        reps.append(run)
        print(progress_line(scen, label, rep + 1, run), file=sys.stderr, flush=True)
        first = run["status" if status else "quiet"]
        if "error" in first or first.get("process_s", 0) > args.repeat_limit:
            break
    return reps, failures


def is_status(scen: str, quick: bool) -> bool:
    return scenarios(quick)[scen].passes == "status"


def journaled(entry: dict[str, Any]) -> bool:
    return ALL[entry["impl"]].journaled


def ratio_rows(
    results: dict, only: list[str], trs: list[str], peers: list[str], quick: bool
) -> tuple:
    """taskrunner against the best peer, figure by figure: a journaled row
    against the journaled peers, an in-memory one against the others."""
    rows, ratios = [], {}
    for scen in only:
        for tr in trs:
            mates = [
                p for p in peers if journaled(results[scen][p]) == journaled(results[scen][tr])
            ]
            for key, header, f, lower in STATUS_FIGURES if is_status(scen, quick) else FIGURES:
                mine = results[scen][tr]["median"].get(key)
                peer_vals = [
                    (results[scen][p]["median"][key], p)
                    for p in mates
                    if results[scen][p]["median"].get(key) is not None
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


def status_rows(results: dict, scens: list[str], labels: list[str]) -> list[list[str]]:
    """Each implementation's status checks: ns per call, and as a multiple of a dict lookup."""
    rows = []
    for scen in scens:
        for label in labels:
            res = results[scen][label]
            med = res["median"]
            floor = med.get("ns:d[i]")
            for call in res["calls"]:
                slower = med.get(f"ns:{call}")
                if call in res["unavailable"]:
                    note = "not in this build"
                elif call == res["primary"]:
                    note = "its own done check"
                else:
                    note = ""
                rows.append(
                    [
                        scen,
                        label,
                        call,
                        fmt(med.get(f"ns_open:{call}"), "{:.1f}"),
                        fmt(med.get(f"ns_final:{call}"), "{:.1f}"),
                        fmt(slower / floor if slower is not None and floor else None, "{:.1f}"),
                        note,
                    ]
                )
    return rows


def same_run_verdict(t: SameRun, runs: list[dict[str, Any]]) -> tuple[int, int, Optional[bool]]:
    """How many runs met every part, of how many measured, and whether most did."""
    verdicts = [t.check_run(figures_of([run])) for run in runs]
    known = [v for v in verdicts if v is not None]
    met = sum(1 for v in known if v)
    return met, len(known), (2 * met > len(known)) if known else None


def target_note(t: Any, res: dict[str, Any]) -> str:
    med = res["median"]
    if t.figure == "main_speed":
        return (
            f"on-CPU speed {fmt(med['main_speed_oncpu'], '{:.2f}')}, "
            f"blocked {fmt(med['main_blocked_pct'], '{:.1f}')}%"
        )
    if t.figure.startswith("ns:"):
        call = t.figure[3:]
        if call in res.get("unavailable", []):
            return "not in this build"
        return (
            f"unfinished {fmt(med.get('ns_open:' + call), '{:.1f}')} ns, "
            f"finished {fmt(med.get('ns_final:' + call), '{:.1f}')} ns"
        )
    return ""


def relative_verdict(
    t: Relative, res: dict[str, Any], base: Optional[dict[str, Any]]
) -> tuple[Optional[float], Optional[bool], str]:
    """A journaled row's median over the in-memory row's, the verdict, and a note."""
    f = FORMATS.get(t.figure, "{:.1f}")
    mine = res["median"].get(t.figure)
    theirs = base["median"].get(t.figure) if base else None
    if base is None:
        return None, None, f"needs the {t.of} row"
    ratio = mine / theirs if mine is not None and theirs else None
    return ratio, t.check(mine, theirs), f"{fmt(mine, f)} against {fmt(theirs, f)} ({t.of})"


def target_rows(
    results: dict, only: list[str], trs: list[str], quick: bool
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Each target with its measured median (runs that met it, for a
    same-run target; the ratio, for a journaled row's share of the in-memory
    row's figure) and PASS / MISS. An in-memory row gets the in-memory
    targets, a journaled row the journal's."""
    rows, checks = [], []
    for t in targets(quick):
        if t.scenario not in only:
            continue
        for tr in trs:
            res = results[t.scenario][tr]
            if journaled(res) != t.journal:
                continue
            check: dict[str, Any] = {
                "scenario": t.scenario,
                "implementation": tr,
                "target": t.label,
            }
            if isinstance(t, Relative):
                ratio, ok, note = relative_verdict(t, res, results[t.scenario].get(t.of))
                check.update(figure=f"{t.figure} / {t.of}'s", value=ratio)
                shown = fmt(ratio, "{:.3f}")
            elif isinstance(t, SameRun):
                met, measured, ok = same_run_verdict(t, res["runs"])
                check.update(figure="+".join(p.figure for p in t.parts), value=met, runs=measured)
                shown = f"{met} of {measured} runs"
                note = "; ".join(p.label for p in t.parts)
            else:
                value = res["median"].get(t.figure)
                ok = t.check(value)
                check.update(figure=t.figure, value=value)
                shown = fmt(value, FORMATS.get(t.figure, "{:.1f}"))
                note = target_note(t, res)
            if res.get("skipped"):
                note = f"not run: {res['skipped']}"
            verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
            checks.append({**check, "result": verdict})
            rows.append([t.scenario, tr, t.label, shown, verdict, note])
    return rows, checks


def not_run_lines(results: dict, only: list[str], labels: list[str]) -> list[str]:
    """One line per implementation and reason: the scenarios it did not run."""
    by_reason: dict[tuple[str, str], list[str]] = {}
    for scen in only:
        for label in labels:
            reason = results[scen][label].get("skipped")
            if reason:
                by_reason.setdefault((label, reason), []).append(scen)
    return [f"#   {label} on {', '.join(s)}: {why}" for (label, why), s in by_reason.items()]


def report(results: dict, only: list[str], runs: list[tuple], quick: bool) -> tuple:
    """Prints the tables; returns the ratios and the target checks."""
    scens = scenarios(quick)
    labels = [label for label, *_ in runs]

    def ran(scen: str) -> list[str]:
        return [label for label in labels if not results[scen][label].get("skipped")]

    print("\n# results (median of runs); scenarios:")
    for s in only:
        print(f"#   {s}: {scens[s].description}")
    timed = [s for s in only if not is_status(s, quick)]
    if timed:
        rows = [
            [scen, label] + [fmt(results[scen][label]["median"][k], f) for k, _, f, _ in FIGURES]
            for scen in timed
            for label in ran(scen)
        ]
        print(table(["scenario", "implementation"] + [h for _, h, _, _ in FIGURES], rows))
    skipped = not_run_lines(results, only, labels)
    if skipped:
        print("# not run:")
        print("\n".join(skipped))
    status = [s for s in only if is_status(s, quick)]
    if status:
        print(
            "\n# status checks: ns per call (median of runs; the calling thread's CPU time, "
            "an empty loop's cost taken out)"
        )
        headers = ["scenario", "implementation", "call", "unfinished ns", "finished ns"]
        rows = [row for s in status for row in status_rows(results, [s], ran(s))]
        print(table(headers + ["x d[i]", "note"], rows, left=3))

    trs = [label for label, impl, _ in runs if impl in TASKRUNNERS]
    peers = [label for label, impl, _ in runs if impl in PEERS]
    ratios: dict[str, Any]
    rrows, ratios = ratio_rows(results, only, trs, peers, quick) if trs and peers else ([], {})
    if rrows:
        print(
            "\n# taskrunner / best peer per figure (advantage > 1: taskrunner is better; "
            "a journaled row against journaled peers)"
        )
        headers = ["scenario", "implementation", "figure", "taskrunner", "best peer"]
        print(table(headers + ["ratio", "advantage"], rrows, left=3))

    checks: list[dict[str, Any]] = []
    if trs:
        note = " (--quick: shrunk scenarios, scaled targets, indicative only)" if quick else ""
        print(f"\n# targets{note}")
        trows, checks = target_rows(results, only, trs, quick)
        headers = ["scenario", "implementation", "target", "measured", "result", "note"]
        print(table(headers, trows, left=3))
    return ratios, checks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shrunk scenarios (CI smoke run)")
    parser.add_argument("--only", default="", help="scenarios, comma-separated")
    parser.add_argument("--impl", default="", help="implementations, comma-separated")
    parser.add_argument("--repeat", type=int, default=None, help="runs per pair (median)")
    parser.add_argument("--repeat-limit", type=float, default=20.0, metavar="SECONDS")
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
        runs.append((name, name, parse_options(args.tr) if name in TASKRUNNERS else {}))
    for spec in args.variant:
        label, _, opts = spec.partition(":")
        options = {**parse_options(args.tr), **parse_options([p for p in opts.split(",") if p])}
        impl = "taskrunner_journal" if any(k in options for k in JOURNAL_OPTIONS) else "taskrunner"
        runs.append((f"taskrunner[{label}]", impl, options))

    info = machine()
    print(
        f"# taskrunner benchmark{' --quick' if quick else ''}: "
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"taskrunner {info['taskrunner']} at {info['commit']}; "
        f"journals in {info['journal_dir']} ({info['journal_fs']})",
        flush=True,
    )
    started = time.perf_counter()
    busy0, own0 = cpu_busy_s(), own_cpu_s()
    failures = 0
    results: dict[str, dict[str, Any]] = {}
    for scen in only:
        results[scen] = {}
        for label, impl, options in runs:
            entry: dict[str, Any] = {"impl": impl, "options": options}
            reason = ALL[impl].unsupported(scens[scen])
            if reason:
                entry.update(skipped=reason, median={}, runs=[], calls=[], unavailable=[])
                entry["primary"] = None
                results[scen][label] = entry
                continue
            reps, failed = measure_pair(scen, label, impl, options, args)
            failures += failed
            if is_status(scen, quick):
                entry["median"] = status_figures_of(reps)
                entry["calls"] = status_calls(reps)
                entry["unavailable"] = status_unavailable(reps)
                primary = [r["status"].get("primary") for r in reps]
                entry["primary"] = next((p for p in primary if p), None)
            else:
                entry["median"] = figures_of(reps)
            entry["runs"] = reps
            results[scen][label] = entry

    ratios, checks = report(results, only, runs, quick)

    total = time.perf_counter() - started
    # CPU that other processes used meanwhile: the noise this run competed with.
    others = max(0.0, (cpu_busy_s() - busy0) - (own_cpu_s() - own0))
    print(
        f"\n# {len(only)} scenario(s) x {len(runs)} implementation(s) in {total:.0f} s; "
        + competing_cpu(total, others)
    )
    if args.json:
        write_json(
            args.json,
            info=info,
            quick=quick,
            repeat=args.repeat,
            scenarios={s: scens[s].description for s in only},
            results=results,
            ratios=ratios,
            targets=checks,
            total_s=total,
            others_cpu_s=others,
        )
    if failures:
        print(f"{failures} measurement(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
