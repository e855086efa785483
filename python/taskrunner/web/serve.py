"""Serving the app on waitress: one process, many threads, a graceful stop.

waitress is a pure-Python threaded WSGI server that never forks, so the
runner's threads live in the one process that serves every request.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import Any, Optional

import waitress
from flask import Flask

from taskrunner.web.app import create_app
from taskrunner.web.state import EXTENSION_KEY, WebState

logger = logging.getLogger("taskrunner.web")


class _Stop(SystemExit):
    """Raised in the main thread by SIGTERM; waitress's loop ends on SystemExit."""


def _stop_on_signals(state: WebState) -> dict[int, Any]:
    def stop(signum: int, frame: Optional[FrameType]) -> None:
        logger.info("%s: stopping", signal.Signals(signum).name)
        # First let the event streams end, so that their threads come free.
        state.stopping.set()
        raise KeyboardInterrupt if signum == signal.SIGINT else _Stop(0)

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}


def run_server(app: Flask, host: str = "127.0.0.1", port: int = 8000, threads: int = 16) -> int:
    """Serves an app made by ``create_app`` until SIGTERM or Ctrl-C; returns the exit code.

    On the signal, event streams end, requests in flight finish, and the
    app's state is closed (pending tasks of its own runner are cancelled).

    Args:
        app: the app; its state is ``app.extensions["taskrunner"]``.
        host: the address to listen on; 127.0.0.1 keeps it to this machine.
        port: the TCP port; 0 picks a free one (the address is printed).
        threads: the server's threads, at least 2.
    """
    state: WebState = app.extensions[EXTENSION_KEY]
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="taskrunner",
        # Reading ahead lets an event stream notice at once that its client left.
        channel_request_lookahead=1,
    )
    previous = _stop_on_signals(state)
    try:
        print(
            f"taskrunner: serving on http://{host}:{server.effective_port}/ "
            f"with {threads} threads; Ctrl-C or SIGTERM stops",
            flush=True,
        )
        # run() returns on SystemExit or KeyboardInterrupt, after its threads end.
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        state.close()
        server.close()
    logger.info("stopped")
    return 0


def main(host: str = "127.0.0.1", port: int = 8000, threads: int = 16) -> int:
    """``python -m taskrunner serve``: the default app, served until SIGTERM or Ctrl-C.

    Args:
        host: the address to listen on; 127.0.0.1 keeps it to this machine.
        port: the TCP port; 0 picks a free one (the address is printed).
        threads: the server's threads; each open event stream holds one, so
            at most half of them (at least one) may serve event streams,
            unless ``TASKRUNNER_MAX_EVENT_STREAMS`` says otherwise.

    Returns:
        The exit code: 0 after a graceful stop, 2 for bad arguments.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if threads < 2:
        print("taskrunner serve: --threads must be at least 2", file=sys.stderr)
        return 2
    config = {}
    if "TASKRUNNER_MAX_EVENT_STREAMS" not in os.environ:
        config["TASKRUNNER_MAX_EVENT_STREAMS"] = max(threads // 2, 1)
    try:
        app = create_app(config=config)
    except (TypeError, ValueError) as error:
        print(f"taskrunner serve: {error}", file=sys.stderr)
        return 2
    return run_server(app, host, port, threads)
