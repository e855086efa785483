"""Serving the app on waitress: one process, many threads, a graceful stop.

waitress is a pure-Python threaded WSGI server that never forks, so the
runner's threads live in the one process that serves every request.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import os
import re
import secrets
import signal
import socket
import sys
import textwrap
from dataclasses import fields
from types import FrameType
from typing import Any, Optional

import waitress
from flask import Flask

from taskrunner import JournalError, TaskRunner
from taskrunner.cli import cluster_failed, dask_missing, finish_running, quit_now
from taskrunner.web.app import create_app
from taskrunner.web.commands import COMMAND, serves_commands
from taskrunner.web.discovery import Found, find_task_types, task_types_from
from taskrunner.web.limits import limit_text
from taskrunner.web.settings import ENV_PREFIX, Settings
from taskrunner.web.state import EXTENSION_KEY, WebState
from taskrunner.web.tasktypes import TaskTypes

logger = logging.getLogger("taskrunner.web")


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Where ``serve`` journals unless told otherwise: in the current directory.
DEFAULT_DB = "taskrunner.db"


class _Stop(SystemExit):
    """Raised in the main thread by SIGTERM; waitress's loop ends on SystemExit."""


def _stop_on_signals(state: WebState, stopped_by: list[int]) -> dict[int, Any]:
    def quit_at_once(signum: int, frame: Optional[FrameType]) -> None:
        quit_now(128 + signum)

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        logger.info("%s: stopping", signal.Signals(signum).name)
        stopped_by.append(signum)
        # Whoever asks twice means it: from here on, a signal quits at once.
        for sig in STOP_SIGNALS:
            signal.signal(sig, quit_at_once)
        # First let the event streams end, so that their threads come free.
        state.stopping.set()
        raise KeyboardInterrupt if signum == signal.SIGINT else _Stop(0)

    return {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}


def is_loopback(host: str) -> bool:
    """Whether ``host`` keeps the server to this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _dashboard_url(host: str, port: int) -> str:
    """The dashboard's address for people elsewhere: a wildcard address
    becomes this machine's name."""
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def run_server(
    app: Flask,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 16,
    made_token: Optional[str] = None,
) -> int:
    """Serves an app made by ``create_app`` until SIGTERM or Ctrl-C; returns the exit code.

    On the signal, event streams end, requests in flight finish, and the
    app's state is closed. If the app made its own runner, its running
    blocking tasks are waited for, with a line on stderr when that takes over
    a second; its pending and polling tasks are cancelled, or, with a
    journal, left unfinished in it at the interpreter's exit, so that the
    next start runs them again. A second signal quits at once, with status
    128 + its number (130 for Ctrl-C).

    Args:
        app: the app; its state is ``app.extensions["taskrunner"]``.
        host: the address to listen on; 127.0.0.1 keeps it to this machine.
        port: the TCP port; 0 picks a free one (the address is printed).
        threads: the server's threads, at least 2.
        made_token: a token made up for this run, printed once in the
            dashboard's URL.

    Returns:
        0 after a graceful stop; 1 when it cannot listen on ``host:port``.
    """
    state: WebState = app.extensions[EXTENSION_KEY]
    try:
        server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="taskrunner",
            # Reading ahead lets an event stream notice at once that its client left.
            channel_request_lookahead=1,
            # waitress drops X-Forwarded-* headers by default; with trusted
            # proxies, the app's ProxyFix reads them (the last N hops only).
            clear_untrusted_proxy_headers=not state.settings.proxy,
        )
    except OSError as error:  # the port is taken, the host unknown, ...
        print(f"taskrunner: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        state.close()
        return 1
    stopped_by: list[int] = []
    previous = _stop_on_signals(state, stopped_by)
    try:
        try:
            print(
                f"taskrunner: serving on http://{host}:{server.effective_port}/ "
                f"with {threads} threads; Ctrl-C or SIGTERM stops",
                flush=True,
            )
            if made_token is not None:
                _announce_made_token(made_token, host, server.effective_port)
            # run() returns on SystemExit or KeyboardInterrupt, after its threads end.
            server.run()
        finally:
            state.close()
            server.close()
        logger.info("stopped")
        # A journaled runner is left to the interpreter's exit, which leaves
        # its pending and polling tasks unfinished in the journal (to run
        # again at the next start) and waits for the running blocking ones.
        if state.owns_runner and state.runner.journal is None:
            finish_running(state.runner, interrupted=stopped_by[:1] == [signal.SIGINT])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _announce_made_token(token: str, host: str, port: int) -> None:
    # In the URL's fragment, which browsers never send: it stays out of server
    # and proxy logs. The dashboard moves it to the tab's storage.
    print(
        f"taskrunner: {host} is reachable beyond this machine and TASKRUNNER_TOKEN is not "
        "set, so every request needs this run's token. Open the dashboard at\n"
        f"    {_dashboard_url(host, port)}#token={token}\n"
        "  and send API requests with the header: Authorization: Bearer <the token>",
        flush=True,
    )


def _attribute_docs(cls: type) -> dict[str, str]:
    """Each name of the ``Attributes:`` section of ``cls``'s docstring, and its text."""
    docs: dict[str, str] = {}
    section = inspect.cleandoc(cls.__doc__ or "").partition("\nAttributes:\n")[2]
    name = None
    for line in section.splitlines():
        if line and not line[0].isspace():
            break  # the next section
        item = re.match(r"\s{4}(\w+): (.*)", line)
        if item:
            name = item[1]
            docs[name] = item[2]
        elif name and line.strip():
            docs[name] += " " + line.strip()
    # Plain text for a terminal: no reStructuredText literals.
    return {name: text.replace("``", "") for name, text in docs.items()}


def settings_help(width: int = 79) -> str:
    """The settings of ``serve --help``: each environment variable, its meaning and default."""
    docs = _attribute_docs(Settings)
    lines = ["settings, from environment variables:"]
    for field in fields(Settings):
        name = ENV_PREFIX + field.name.upper()
        default = "unset" if field.default is None else field.default
        if field.name == "max_event_streams":
            default = "half of --threads"  # main's choice, below
        elif field.name == "db":
            default = f"./{DEFAULT_DB} under serve; --db overrides"
        elif field.name == "cluster":
            default = "unset: this process; --cluster overrides"
        elif field.name == "types":
            default = "unset; --types overrides"
        elif field.name == "entry_points":
            default = "true; --no-entry-points turns it off"
        elif field.name == "allow_commands":
            default = "unset: no command type; --allow-command overrides"
        elif field.name == "limits":
            default = "unset: no limits; --limit overrides"
        elif field.name == "token":
            default = "unset: none on 127.0.0.1, else made up for the run and printed"
        elif field.name == "no_auth":
            default = "false; --no-auth overrides"
        elif field.name == "proxy":
            default = "0; --proxy overrides"
        lines += textwrap.wrap(
            f"{docs.get(field.name, '')} (default: {default})",
            width=width,
            initial_indent=f"  {name:<30}",
            subsequent_indent=" " * 32,
        )
    return "\n".join(lines)


def main(
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 16,
    db: Optional[str] = None,
    cluster: Optional[str] = None,
    types: Optional[list[str]] = None,
    entry_points: Optional[bool] = None,
    allow_commands: Optional[list[str]] = None,
    limits: Optional[list[str]] = None,
    no_auth: Optional[bool] = None,
    proxy: Optional[int] = None,
) -> int:
    """``python -m taskrunner serve``: the default app, served until SIGTERM or Ctrl-C.

    Args:
        host: the address to listen on; 127.0.0.1 keeps it to this machine.
        port: the TCP port; 0 picks a free one (the address is printed).
        threads: the server's threads; each open event stream holds one, so
            at most half of them (at least one) may serve event streams,
            unless ``TASKRUNNER_MAX_EVENT_STREAMS`` says otherwise.
        db: the journal's file, ``:memory:`` for none; None takes
            ``TASKRUNNER_DB``, else ``taskrunner.db`` in the current directory.
        cluster: the Dask scheduler's address, or ``local``, to run the
            tasks on; None takes ``TASKRUNNER_CLUSTER``, else this process.
        types: ``module:ATTRIBUTE`` names of task type registries; None
            takes ``TASKRUNNER_TYPES``.
        entry_points: serve the task types of the ``taskrunner.task_types``
            entry points too; None takes ``TASKRUNNER_ENTRY_POINTS``, else true.
        allow_commands: the programs the ``command`` task type may run
            (absolute paths, or names looked up on PATH); None takes
            ``TASKRUNNER_ALLOW_COMMANDS``, else none (no ``command`` type).
        limits: the limits to start with, each ``LABEL=N`` or
            ``LABEL=COUNT/PER`` (``gpu=2``, ``api=100/1s``); None takes
            ``TASKRUNNER_LIMITS``, else none.
        no_auth: serve with no token on an address beyond this machine (a
            warning is printed); None takes ``TASKRUNNER_NO_AUTH``. Without
            it, such an address with no ``TASKRUNNER_TOKEN`` gets a token
            made up for the run, printed in the dashboard's URL.
        proxy: how many reverse proxies' ``X-Forwarded-*`` headers to
            trust; None takes ``TASKRUNNER_PROXY``, else 0.

    Returns:
        The exit code: 0 after a graceful stop, 1 when the journal cannot be
        opened, the cluster's scheduler cannot be reached or the port is
        taken, 2 for bad arguments (a limit that is not ``LABEL=N`` or
        ``LABEL=COUNT/PER`` among them), task types that cannot be loaded, a
        program to allow that is no executable file, or without Dask for a
        cluster.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if threads < 2:
        print("taskrunner serve: --threads must be at least 2", file=sys.stderr)
        return 2
    config: dict[str, Any] = {}
    if "TASKRUNNER_MAX_EVENT_STREAMS" not in os.environ:
        config["TASKRUNNER_MAX_EVENT_STREAMS"] = max(threads // 2, 1)
    if db is not None:
        config["TASKRUNNER_DB"] = db
    elif "TASKRUNNER_DB" not in os.environ:
        config["TASKRUNNER_DB"] = DEFAULT_DB
    if cluster is not None:
        config["TASKRUNNER_CLUSTER"] = cluster
    if types is not None:
        config["TASKRUNNER_TYPES"] = " ".join(types)
    if entry_points is not None:
        config["TASKRUNNER_ENTRY_POINTS"] = entry_points
    if allow_commands is not None:
        config["TASKRUNNER_ALLOW_COMMANDS"] = tuple(allow_commands)
    if limits is not None:
        config["TASKRUNNER_LIMITS"] = " ".join(limits)
    if no_auth is not None:
        config["TASKRUNNER_NO_AUTH"] = no_auth
    if proxy is not None:
        config["TASKRUNNER_PROXY"] = proxy
    try:
        # Read here too: a cluster is checked for, and announced, before the wait to reach it.
        settings = Settings.load(config)
    except (TypeError, ValueError) as error:
        print(f"taskrunner serve: {error}", file=sys.stderr)
        return 2
    if settings.cluster and dask_missing("taskrunner serve"):
        return 2
    if settings.no_auth and settings.token:
        print(
            "taskrunner serve: --no-auth and TASKRUNNER_TOKEN contradict each other",
            file=sys.stderr,
        )
        return 2
    made_token = None
    if not is_loopback(host) and not settings.token:
        if settings.no_auth:
            print(
                f"taskrunner: WARNING: --no-auth on {host}: anyone who can reach port {port} "
                "may submit, cancel and pause tasks, and read every result",
                file=sys.stderr,
                flush=True,
            )
        else:
            made_token = config["TASKRUNNER_TOKEN"] = secrets.token_urlsafe(32)
    try:
        # Loaded here, not by create_app: a failure is the types', never the cluster's.
        found = find_task_types(settings.type_sources, settings.entry_points)
    except ValueError as error:
        print(f"taskrunner serve: cannot load the task types: {error}", file=sys.stderr)
        return 2
    try:
        task_types = task_types_from(found, settings.allow_commands)
    except ValueError as error:
        print(f"taskrunner serve: {error}", file=sys.stderr)
        return 2
    _announce_task_types(found, task_types)
    # Dask's own news (each worker registered, each connection made) would drown the log.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    _announce_cluster(settings.cluster)
    try:
        app = create_app(task_types=task_types, config=config)
    except JournalError as error:  # in use, not a journal, unwritable...
        print(f"taskrunner serve: cannot open the journal: {error}", file=sys.stderr)
        return 1
    except (TypeError, ValueError, OSError) as error:
        if settings.cluster:
            cluster_failed("taskrunner serve", settings.cluster, error)
        if isinstance(error, OSError):
            print(f"taskrunner serve: cannot open the journal: {error}", file=sys.stderr)
            return 1
        print(f"taskrunner serve: {error}", file=sys.stderr)
        return 2
    runner = app.extensions[EXTENSION_KEY].runner
    _announce_journal(runner)
    _announce_limits(runner)
    _announce_workers(runner)
    return run_server(app, host, port, threads, made_token)


def _announce_task_types(found: list[Found], task_types: TaskTypes) -> None:
    commands = serves_commands(task_types)
    if not found:
        fakes = [name for name in task_types.names() if not (commands and name == COMMAND)]
        print(
            f"taskrunner: task types: the fake tasks ({', '.join(fakes)}); "
            "--types MODULE:ATTRIBUTE serves your own",
            flush=True,
        )
    for each in found:
        served = ", ".join(task_type.name for task_type in each.task_types) or "none"
        print(f"taskrunner: task types from {each.source}: {served}", flush=True)
    if commands:
        print(f"taskrunner: task type {COMMAND}: {task_types.get(COMMAND).description}", flush=True)


def _announce_cluster(cluster: Optional[str]) -> None:
    if cluster == "local":
        print("taskrunner: starting a local Dask cluster of worker processes…", flush=True)
    elif cluster:
        print(f"taskrunner: connecting to the Dask scheduler at {cluster}…", flush=True)


def _announce_workers(runner: TaskRunner) -> None:
    if runner.cluster is None:
        return
    workers = len(runner.workers())
    print(
        f"taskrunner: tasks run on the Dask cluster at {runner.cluster.scheduler.address} "
        f"({workers} worker{'' if workers == 1 else 's'} now)",
        flush=True,
    )


def _announce_limits(runner: TaskRunner) -> None:
    limits = runner.limits()
    if limits:
        shown = ", ".join(
            f"{label}={limit_text(entry['limit'])}" for label, entry in sorted(limits.items())
        )
        print(f"taskrunner: limits: {shown}", flush=True)


def _announce_journal(runner: TaskRunner) -> None:
    if runner.journal is None:
        print(
            "taskrunner: no journal: tasks are kept in memory only, and lost at exit",
            flush=True,
        )
        return
    resumed = runner.stats()["unfinished"]
    again = f"; {resumed} unfinished tasks from the last run start again" if resumed else ""
    print(f"taskrunner: journal {os.path.abspath(runner.journal)}{again}", flush=True)
