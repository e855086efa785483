"""The command line: ``python -m taskrunner demo``, ``serve`` and ``tasks``."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, Optional, TextIO
from urllib.parse import unquote, urlparse

from taskrunner._core import KINDS, STATES, JournalError, JournalView
from taskrunner.faketasks import gen_task
from taskrunner.runner import TaskRunner

PROG = "python -m taskrunner"
DESCRIPTION = """\
Launch long-running tasks without blocking, and see how each one is doing.
Run "%(prog)s COMMAND --help" for a command's options."""
EXAMPLES = """\
examples:
  %(prog)s demo --tasks 50 --wait 2
  %(prog)s demo --cluster local
  %(prog)s serve --port 8000
  %(prog)s serve --types imaging.tasks:TASK_TYPES
  %(prog)s serve --allow-command /usr/bin/convert
  %(prog)s serve --cluster tcp://scheduler:8786 --db tasks.db
  %(prog)s tasks --db taskrunner.db --state failed"""
SERVE_DESCRIPTION = """\
Serve the HTTP API (/api/...) and the live dashboard (/) with waitress, in
this one process, until Ctrl-C or SIGTERM. Tasks are journaled to an SQLite
file (--db): after a restart, even after a crash, their history is there and
unfinished ones run again. A stop waits for running blocking tasks and leaves
pending and polling ones to the next start (without a journal, it cancels
them); a second Ctrl-C quits at once.

Clients submit tasks of the types --types names (each MODULE:ATTRIBUTE, a
registry of task types; repeatable) and of those installed packages offer in
the taskrunner.task_types entry-point group (unless --no-entry-points); with
neither, of the built-in fake types.

With --allow-command PROGRAM (repeatable), clients may also run those
programs, and only those, as the task type command: without a shell, but
with any arguments they choose. Allow only programs safe to hand to clients
(see the HTTP API's documentation).

With --cluster (or TASKRUNNER_CLUSTER), the tasks run on a Dask cluster
instead of in this process; it needs the dask extra, and the task types'
modules importable on every worker (the built-in fake tasks ship in
taskrunner, so installing taskrunner there is enough)."""
CLUSTER_HELP = (
    "run the tasks on a Dask cluster: a scheduler's address (tcp://host:8786), or local "
    "for worker processes on this machine (needs the dask extra)"
)
# Importable names of the packages the web and dask extras install (pyproject.toml).
WEB_MODULES = ("flask", "waitress", "prometheus_client", "jsonschema")
DASK_MODULES = ("dask", "distributed")
# How long a stop waits quietly for running blocking tasks before saying so.
QUIET_WAIT = 1.0

# One mark per state, in the core's order (a test holds the two together).
STATE_MARKS = dict(zip(STATES, ("·", "▸", "✓", "✗", "-", "⌛"), strict=True))


def _progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return "█" * filled + "░" * (width - filled)


def _progress(status: dict) -> str:
    """A task's progress as a short bar and a percentage; blank without one."""
    fraction = (status.get("progress") or {}).get("fraction")
    if fraction is None:
        return ""
    return f"{_progress_bar(round(fraction * 100), 100, width=5)}{fraction:4.0%}"


def _worker(status: dict) -> str:
    # The scheme is the same for every worker: the host and port tell them apart.
    return (status.get("worker") or "-").removeprefix("tcp://")


def render(
    statuses: list[dict], elapsed: float, width: int, max_rows: int, workers: bool = False
) -> list[str]:
    """The demo's screen: a progress line, counts per state, then a table of tasks
    (with the worker of each when ``workers``)."""
    total = len(statuses)
    done = sum(s["done"] for s in statuses)
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    lines = [
        f"{_progress_bar(done, total)} {done}/{total} done in {elapsed:5.1f}s",
        "  ".join(f"{state} {n}" for state, n in counts.items()),
        "",
        f"{'id':>5}  {'name':<17} {'kind':<9} {'state':<11} {'elapsed':>8} {'polls':>6} "
        f"{'progress':<10} " + (f"{'worker':<21} " if workers else "") + "result",
    ]
    # Unfinished tasks first: they are the interesting ones while the demo runs.
    ordered = sorted(statuses, key=lambda s: (s["done"], s["id"]))
    for s in ordered[:max_rows]:
        runtime = "" if s["runtime"] is None else f"{s['runtime']:7.2f}s"
        outcome = s["error"]["type"] if s["error"] else ("" if s["result"] is None else s["result"])
        mark = STATE_MARKS.get(s["state"], " ")
        row = (
            f"{s['id']:>5}  {s['name']:<17} {s['kind'] or '?':<9} {mark} {s['state']:<9} "
            f"{runtime:>8} {s['polls']:>6} {_progress(s):<10} "
            + (f"{_worker(s):<21} " if workers else "")
            + str(outcome)
        )
        lines.append(row[:width])
    if total > max_rows:
        lines.append(f"  … and {total - max_rows} more")
    return lines


def quit_now(code: int) -> NoReturn:
    """Exits at once with ``code``, without waiting for the runners' threads.

    Interpreter exit would wait for them, and finalizing while they are
    still inside Python would crash; ``os._exit`` skips both.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def finish_running(runner: TaskRunner, interrupted: bool) -> None:
    """Stops ``runner``: cancels its pending and polling tasks, waits for running blocking ones.

    Blocking tasks cannot be interrupted. When they take over a second, a
    line on stderr says how many are left; Ctrl-C then quits at once (130).

    Args:
        runner: the runner to stop.
        interrupted: Ctrl-C was pressed once already (the hint says "again").
    """
    try:
        runner.shutdown(wait=False, cancel_pending=True)
        for id in runner.ids(state="running"):
            runner.cancel(id)  # polling tasks stop; blocking ones decline
        _, running = runner.wait(timeout=QUIET_WAIT)
        if running:
            tasks = "task" if len(running) == 1 else "tasks"
            again = " again" if interrupted else ""
            print(
                f"taskrunner: waiting for {len(running)} running {tasks} "
                f"(Ctrl-C{again} to quit now)",
                file=sys.stderr,
                flush=True,
            )
        runner.shutdown(wait=True)
    except KeyboardInterrupt:
        quit_now(130)


def _write(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()  # a pipe (| tee, | head) sees each line as it comes


def cluster_failed(command: str, cluster: str, error: Exception) -> NoReturn:
    """Says on one line why ``cluster`` cannot be used, and exits: 1 when its
    scheduler is out of reach, 2 for anything else (an address that is none).

    Exits at once: Dask's half-made client would print a traceback at exit.
    """
    if isinstance(error, OSError):
        why = f"cannot reach the Dask scheduler at {cluster}: {error}"
    else:
        why = f"cannot use the cluster {cluster!r}: {error}"
    print(f"{command}: {why}", file=sys.stderr)
    quit_now(1 if isinstance(error, OSError) else 2)


def cluster_runner(command: str, cluster: str, out: TextIO) -> TaskRunner:
    """A runner on ``cluster`` (an address or ``local``); exits when it cannot be had."""
    if cluster == "local":
        _write(out, "starting a local Dask cluster of worker processes…\n")
    else:
        _write(out, f"connecting to the Dask scheduler at {cluster}…\n")
    try:
        return TaskRunner(cluster=cluster)
    except (OSError, ValueError) as error:
        cluster_failed(command, cluster, error)


def demo(
    tasks: int, wait: Optional[float], refresh: float, out: TextIO, cluster: Optional[str] = None
) -> int:
    """Launches ``tasks`` fake tasks and shows them live until all are done.

    Args:
        cluster: a Dask scheduler's address, or ``local``, to run the tasks
            there; None runs them in this process.

    Returns:
        0 when every task succeeded, else 1.

    Raises:
        KeyboardInterrupt, BrokenPipeError: after the running tasks are waited for.
    """
    if tasks < 1:
        _write(out, "no tasks to run\n")
        return 0
    runner = TaskRunner() if cluster is None else cluster_runner(f"{PROG} demo", cluster, out)
    started = time.time()
    try:
        made = [gen_task(i, wait, reporting=True) for i in range(tasks)]
        # Named as the plain fake tasks they extend with a progress() method.
        handles = [runner.submit(t, name=type(t).__mro__[2].__name__) for t in made]
        _write(out, f"registered {tasks} tasks in {(time.time() - started) * 1000:.1f} ms\n")
        statuses = _watch(runner, handles, started, refresh, out, workers=cluster is not None)
    except KeyboardInterrupt:
        if out.isatty():
            out.write("\n")  # below the echoed ^C
        finish_running(runner, interrupted=True)
        raise
    except BrokenPipeError:
        finish_running(runner, interrupted=False)
        raise
    runner.shutdown(wait=True)
    makespan = max(s["finished_at"] for s in statuses) - started
    longest = max((s["runtime"] or 0.0) for s in statuses)
    counts = {state: sum(s["state"] == state for s in statuses) for state in STATE_MARKS}
    outcome = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    _write(
        out,
        f"\nall {tasks} tasks done in {makespan:.2f} s (longest task {longest:.2f} s); {outcome}\n",
    )
    if cluster is not None:
        _write(out, _workers_line(statuses) + "\n")
    return 0 if counts["succeeded"] == tasks else 1


def _workers_line(statuses: list[dict]) -> str:
    """How many of the tasks each worker ran."""
    ran: dict[str, int] = {}
    for s in statuses:
        if s["worker"]:
            ran[_worker(s)] = ran.get(_worker(s), 0) + 1
    each = ", ".join(f"{address} ({n} tasks)" for address, n in sorted(ran.items()))
    workers = "worker" if len(ran) == 1 else "workers"
    return f"ran on {len(ran)} {workers}: {each}" if ran else "ran on no worker"


def _watch(
    runner: TaskRunner,
    handles: list,
    started: float,
    refresh: float,
    out: TextIO,
    workers: bool = False,
) -> list[dict]:
    """Draws the tasks every ``refresh`` seconds until all are done; their last statuses."""
    live = out.isatty()
    drawn = 0
    while True:
        statuses = [h.status() for h in handles]
        size = shutil.get_terminal_size((100, 30))
        lines = render(
            statuses, time.time() - started, size.columns, max(size.lines - 8, 5), workers
        )
        if live:
            # Move up over the previous frame and draw over it.
            _write(out, (f"\x1b[{drawn}F\x1b[J" if drawn else "") + "\n".join(lines) + "\n")
            drawn = len(lines)
        if all(s["done"] for s in statuses):
            break
        if not live:
            _write(out, lines[0] + "\n")
        runner.wait(timeout=refresh)
    if not live:
        _write(out, "\n".join(lines) + "\n")
    return statuses


def _local_source(dist: metadata.Distribution) -> Optional[tuple[Path, bool]]:
    """The directory ``dist`` was installed from, and whether editably; None if not local."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
        url = urlparse(direct["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if url.scheme != "file" or "dir_info" not in direct:
        return None
    return Path(unquote(url.path)), bool(direct["dir_info"].get("editable"))


def distribution() -> Optional[metadata.Distribution]:
    """The installed distribution this package comes from, whatever it is named."""
    package = Path(__file__).resolve().parent
    for dist in metadata.distributions():
        source = _local_source(dist)
        # An editable install of this checkout: the package is at its top or in python/.
        if source is not None and source[0].resolve() in (package.parent, package.parent.parent):
            return dist
    for dist in metadata.distributions(path=[str(package.parent)]):
        if any(f.as_posix() == f"{package.name}/__init__.py" for f in dist.files or ()):
            return dist
    return None


def version() -> str:
    """``taskrunner`` and the installed version."""
    dist = distribution()
    return f"taskrunner {dist.version}" if dist else "taskrunner (version unknown: not installed)"


def extra_command(extra: str) -> str:
    """The command that installs ``extra``, for how this package was installed."""
    dist = distribution()
    if dist is None:
        return f"pip install '.[{extra}]' in the checkout"
    source = _local_source(dist)
    if source is None:
        return f"pip install '{dist.metadata['Name']}[{extra}]'"
    path, editable = source
    target = "." if Path.cwd().resolve() == path.resolve() else str(path)
    return f"pip install {'-e ' if editable else ''}'{target}[{extra}]'"


def web_extra_command() -> str:
    """The command that installs the web extra, for how this package was installed."""
    return extra_command("web")


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """The packages of ``names`` that cannot be imported."""
    missing = []
    for name in names:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def missing_web_modules() -> list[str]:
    """The web extra's packages that cannot be imported."""
    return missing_modules(WEB_MODULES)


def dask_missing(command: str) -> bool:
    """Says on stderr, on one line, that ``--cluster`` needs the dask extra, if it is
    not installed; True then."""
    missing = missing_modules(DASK_MODULES)
    if missing:
        print(
            f"{command}: --cluster needs the dask extra, which is not installed "
            f"(missing: {', '.join(missing)}); install it with: {extra_command('dask')}",
            file=sys.stderr,
        )
    return bool(missing)


def _serve_epilog() -> str:
    missing = missing_web_modules()
    if missing:
        return (
            f"It needs the web extra, which is not installed (missing: {', '.join(missing)}):\n"
            f"  {web_extra_command()}\n"
            "Its settings (TASKRUNNER_* environment variables) are listed here once it is."
        )
    from taskrunner.web.serve import settings_help

    return (
        f"It needs the web extra, which is installed ({web_extra_command()}).\n\n" + settings_help()
    )


class _LazyHelp(argparse.Action):
    """``--help`` whose epilog is made only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, epilog: Callable[[], str]) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.epilog = epilog
        self.help = "show this help message and exit"

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.epilog = self.epilog()
        parser.print_help()
        parser.exit()


class _Version(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.help = "show the version and exit"

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version())  # to stdout, as argparse's own version action does
        parser.exit()


def _number(
    kind: Callable[[str], Any], minimum: float, *, above: bool = False, maximum: float = math.inf
) -> Callable[[str], Any]:
    """An argparse ``type``: a finite ``kind`` from ``minimum`` (or ``above`` it) to ``maximum``."""
    what = "a whole number" if kind is int else "a number"
    if maximum < math.inf:
        bound = f"from {minimum} to {maximum}"
    else:
        bound = f"> {minimum}" if above else f">= {minimum}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        low_ok = value > minimum if above else value >= minimum
        if not (math.isfinite(value) and low_ok and value <= maximum):
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m taskrunner``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_args = commands.add_parser(
        "demo",
        help="launch fake tasks, blocking and polling, and watch them live",
        description="Launch fake tasks, each at even odds blocking (it sleeps in run()) or "
        "polling (get_output() answers None until it is done), and show each one's state "
        "live until all are done. Ctrl-C stops: pending and polling tasks are "
        "cancelled, running blocking ones are waited for.",
    )
    demo_args.add_argument(
        "--tasks", type=_number(int, 1), default=20, help="how many tasks (default 20)"
    )
    demo_args.add_argument(
        "--wait",
        type=_number(float, 0),
        default=None,
        metavar="SECONDS",
        help="each task's wait in seconds (default: a random 1 to 9)",
    )
    demo_args.add_argument(
        "--refresh",
        type=_number(float, 0, above=True),
        default=0.2,
        metavar="SECONDS",
        help="seconds between frames (default 0.2)",
    )
    demo_args.add_argument("--cluster", metavar="ADDRESS|local", help=CLUSTER_HELP)
    serve_args = commands.add_parser(
        "serve",
        help="serve the HTTP API and the live dashboard (needs the web extra)",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    serve_args.add_argument("-h", "--help", action=_LazyHelp, epilog=_serve_epilog)
    serve_args.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine); on any other, the API "
        "needs a token: $TASKRUNNER_TOKEN, else one made up for the run and printed",
    )
    serve_args.add_argument(
        "--port",
        type=_number(int, 0, maximum=65535),
        default=8000,
        help="TCP port (default 8000; 0 picks a free one)",
    )
    serve_args.add_argument(
        "--threads", type=_number(int, 2), default=16, help="server threads (default 16)"
    )
    serve_args.add_argument(
        "--db",
        metavar="PATH",
        help="the journal, an SQLite file that keeps every task across restarts (unfinished "
        "ones run again); default $TASKRUNNER_DB, else ./taskrunner.db; :memory: for none",
    )
    serve_args.add_argument(
        "--cluster",
        metavar="ADDRESS|local",
        help=CLUSTER_HELP + "; default $TASKRUNNER_CLUSTER, else this process",
    )
    serve_args.add_argument(
        "--types",
        action="append",
        metavar="MODULE:ATTRIBUTE",
        help="serve the task types of this registry (a mapping of names to factories or "
        "TaskType, or a list of TaskType), imported from the current directory or the "
        "path; repeatable; default $TASKRUNNER_TYPES",
    )
    serve_args.add_argument(
        "--no-entry-points",
        dest="entry_points",
        action="store_false",
        default=None,
        help="do not serve the task types of installed packages (the taskrunner.task_types "
        "entry points)",
    )
    serve_args.add_argument(
        "--allow-command",
        dest="allow_commands",
        action="append",
        metavar="PROGRAM",
        help="serve the task type command, which runs this program (an absolute path, or a "
        "name looked up on PATH now) without a shell, with the arguments clients send; "
        "repeatable; default $TASKRUNNER_ALLOW_COMMANDS, else no command type",
    )
    serve_args.add_argument(
        "--limit",
        dest="limits",
        action="append",
        metavar="LABEL=N|LABEL=COUNT/PER",
        help="start with this limit, which tasks name in their limit field: at most N at "
        "once, or COUNT starts per PER (1s, 5m, 1h); repeatable; default $TASKRUNNER_LIMITS",
    )
    serve_args.add_argument(
        "--no-auth",
        dest="no_auth",
        action="store_true",
        default=None,
        help="no token even on an address beyond this machine: anyone who reaches the port "
        "may submit and cancel tasks (warns at start); default $TASKRUNNER_NO_AUTH",
    )
    serve_args.add_argument(
        "--proxy",
        type=_number(int, 0),
        metavar="N",
        help="trust the X-Forwarded-* headers of N reverse proxies in front (nginx, a load "
        "balancer); default $TASKRUNNER_PROXY, else 0",
    )
    tasks_args = commands.add_parser(
        "tasks",
        help="list the tasks in a journal, or show one (read-only)",
        description="List the newest tasks in a journal, or show one task's whole status. "
        "Reads only, so it is safe while a server is using the file.",
    )
    tasks_args.add_argument("id", nargs="?", type=_number(int, 0), help="show this task")
    tasks_args.add_argument(
        "--db",
        default=os.environ.get("TASKRUNNER_DB") or "taskrunner.db",
        metavar="PATH",
        help="the journal (default: $TASKRUNNER_DB, else taskrunner.db)",
    )
    tasks_args.add_argument("--state", choices=STATES, help="only tasks in this state")
    tasks_args.add_argument("--name", help="only tasks whose name contains this text")
    tasks_args.add_argument("--kind", choices=KINDS, help="only tasks of this kind")
    tasks_args.add_argument("--type", help="only tasks of this task type")
    tasks_args.add_argument("--worker", help="only tasks that ran on this cluster worker")
    tasks_args.add_argument("--error", help="only tasks whose error has this type name")
    tasks_args.add_argument(
        "--limit", type=_number(int, 1), default=50, help="the most tasks listed (default 50)"
    )
    tasks_args.add_argument("--json", action="store_true", help="one JSON status per line")
    return parser


def _when(at: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at is not None else "-"


def _outcome(status: dict[str, Any], width: int) -> str:
    error = status["error"]
    text = f"{error['type']}: {error['message']}" if error else repr(status["result"])
    if status["state"] in ("pending", "running"):
        text = ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def task_lines(statuses: list[dict[str, Any]], width: int) -> list[str]:
    """One line a task: id, state, attempt, submit time, seconds taken, name, outcome."""
    header = f"{'ID':>8}  {'STATE':<9}  {'TRY':>3}  {'SUBMITTED':<19}  {'SECONDS':>8}  NAME"
    lines = [header]
    for s in statuses:
        took = s["runtime"]
        seconds = f"{took:8.3f}" if took is not None else f"{'-':>8}"
        line = (
            f"{s['id']:>8}  {s['state']:<9}  {s['attempt']:>3}  {_when(s['submitted_at']):<19}  "
            f"{seconds}  {s['name']}"
        )
        outcome = _outcome(s, max(width - len(line) - 2, 20))
        lines.append(f"{line}  {outcome}" if outcome else line)
    return lines


def show_tasks(
    db: str,
    task_id: Optional[int],
    state: Optional[str],
    name: Optional[str],
    limit: int,
    as_json: bool,
    out: TextIO,
    filters: Optional[dict[str, Optional[str]]] = None,
) -> int:
    """Prints one task's status, or a table of the newest tasks, from a journal.

    Reads only: a server may be writing the file meanwhile. ``filters`` holds
    the exact ones (``kind``, ``type``, ``worker``, ``error``). Returns the
    exit status: 1 for a journal that cannot be read or a task it does not hold.
    """
    if not os.path.exists(db):
        print(f"{PROG} tasks: no journal at {db}", file=sys.stderr)
        return 1
    try:
        view = JournalView(db)
        if task_id is not None:
            statuses = [view.status(task_id)]
        else:
            statuses = view.tasks(
                state, name=name, limit=limit, newest_first=True, **(filters or {})
            )
    except (JournalError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        print(f"{PROG} tasks: {message}", file=sys.stderr)
        return 1
    if as_json:
        for status in statuses:
            _write(out, json.dumps(status, default=repr) + "\n")
    elif task_id is not None:
        _write(out, json.dumps(statuses[0], default=repr, indent=2) + "\n")
    else:
        width = shutil.get_terminal_size().columns
        _write(out, "\n".join(task_lines(statuses, width)) + "\n")
    return 0


def _silence_stdout() -> None:
    # The reader left: point stdout at devnull so that the flush at exit
    # does not fail again (the recipe in the signal module's documentation).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Optional[list[str]] = None) -> int:
    """Runs the command line; returns the exit status (2 for a usage error)."""
    args = build_parser().parse_args(argv)
    if args.command == "tasks":
        try:
            filters = {key: getattr(args, key) for key in ("kind", "type", "worker", "error")}
            return show_tasks(
                args.db,
                args.id,
                args.state,
                args.name,
                args.limit,
                args.json,
                sys.stdout,
                filters,
            )
        except BrokenPipeError:
            _silence_stdout()
            return 1
    if args.command == "demo":
        if args.cluster and dask_missing(f"{PROG} demo"):
            return 2
        try:
            return demo(args.tasks, args.wait, args.refresh, sys.stdout, args.cluster or None)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            _silence_stdout()
            return 1
    try:
        from taskrunner.web.serve import main as serve
    except ImportError:
        missing = missing_web_modules()
        if not missing:
            raise
        print(
            f"{PROG} serve: needs the web extra, which is not installed "
            f"(missing: {', '.join(missing)}); install it with: {web_extra_command()}",
            file=sys.stderr,
        )
        return 2
    return serve(
        args.host,
        args.port,
        args.threads,
        args.db,
        args.cluster,
        args.types,
        args.entry_points,
        args.allow_commands,
        limits=args.limits,
        no_auth=args.no_auth,
        proxy=args.proxy,
    )
