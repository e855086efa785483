"""What the benchmark commands (run.py, cluster.py) report with: the machine they ran
on and its busy CPU, medians, numbers and plain text tables, and the ``--json`` file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


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


def filesystem(path: str) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts), or "?"."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                mount = fields[1]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except (OSError, IndexError):
        pass
    return kind


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
        import taskrunner

        tr_version = taskrunner.__version__
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
        # Journals and Huey's queue go to a fresh directory here ($TMPDIR):
        # on tmpfs a commit never reaches a disk.
        "journal_dir": tempfile.gettempdir(),
        "journal_fs": filesystem(tempfile.gettempdir()),
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


def competing_cpu(total_s: float, others_cpu_s: float) -> str:
    """What other processes used of the machine during a run: the noise it competed with."""
    cores = os.cpu_count() or 1
    return (
        f"other processes used {others_cpu_s:.0f} CPU s meanwhile "
        f"({100 * others_cpu_s / (total_s * cores):.0f}% of the machine)"
    )


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
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_json(
    path: str,
    *,
    info: dict[str, Any],
    quick: bool,
    repeat: int,
    scenarios: dict[str, str],
    results: dict[str, Any],
    ratios: dict[str, Any],
    targets: list[dict[str, Any]],
    total_s: float,
    others_cpu_s: float,
    **setup: Any,
) -> None:
    """Writes ``--json``: the machine (``info``, from machine()), the run's setup (quick,
    repeat and the command's own ``setup``), each scenario's description, every raw and
    median figure, the ratios, the targets' results, the run's seconds and the CPU seconds
    other processes used meanwhile."""
    report = {
        "machine": info,
        "quick": quick,
        "repeat": repeat,
        **setup,
        "scenarios": scenarios,
        "results": results,
        "ratios": ratios,
        "targets": targets,
        "total_s": total_s,
        "other_processes_cpu_s": others_cpu_s,
    }
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
