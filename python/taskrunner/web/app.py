"""``create_app``: the Flask app factory of the HTTP API and dashboard."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional, Union

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry
from werkzeug.middleware.proxy_fix import ProxyFix

from taskrunner import TaskRunner
from taskrunner.web.api import api
from taskrunner.web.control import control
from taskrunner.web.dashboard import dashboard
from taskrunner.web.discovery import configured_task_types
from taskrunner.web.encoding import JSONProvider
from taskrunner.web.metrics import instrument
from taskrunner.web.operations import operations
from taskrunner.web.problems import contain_base_exceptions, register_problem_handlers
from taskrunner.web.settings import Settings
from taskrunner.web.state import EXTENSION_KEY, WebState
from taskrunner.web.tasktypes import TaskTypeRegistry, TaskTypes

MAX_BODY_BYTES = 64 * 1024

access_log = logging.getLogger("taskrunner.web.access")


def _harden(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _log_access(response: Response) -> Response:
    path = request.full_path.rstrip("?")
    access_log.info("%s %s %s %s", request.remote_addr, request.method, path, response.status_code)
    return response


def create_app(
    runner: Optional[TaskRunner] = None,
    task_types: Union[TaskTypeRegistry, TaskTypes, None] = None,
    config: Optional[Mapping[str, Any]] = None,
) -> Flask:
    """A Flask app serving the HTTP API and the dashboard over a ``TaskRunner``.

    Args:
        runner: the runner to serve, with its own retention of finished
            tasks and its own journal (give it ``recreate=TaskTypes(...).recreate``
            so that unfinished tasks run again after a restart); by default
            the app makes its own, with the retention of
            ``TASKRUNNER_RETAIN_FINISHED`` and ``TASKRUNNER_RETAIN_SECONDS``
            and the journal of ``TASKRUNNER_DB`` (none when unset), which
            ``app.extensions["taskrunner"].close()`` shuts down. Its tasks
            left unfinished by the last process run again, re-created by
            their task types.
        task_types: the task types clients may submit: factories by name,
            ``factory(input)`` or ``factory(input, wait=...)`` returning a
            task object; or ``taskrunner.web.TaskType`` declarations (by
            name, or in a list), which add an input schema. By default those
            of ``TASKRUNNER_TYPES`` and of installed packages' entry points
            (``TASKRUNNER_ENTRY_POINTS``); when there are none, the fake
            tasks ``fake``, ``fake_blocking`` and ``fake_polling``.
        config: Flask config; ``TASKRUNNER_*`` keys are the settings of
            ``taskrunner.web.settings.Settings`` (each falls back on the
            environment variable of the same name). ``MAX_CONTENT_LENGTH``
            defaults to 64 KiB.

    Returns:
        The app; its state (runner, settings) is ``app.extensions["taskrunner"]``.

    Raises:
        ValueError: for a bad setting, task type name or input schema, or
            task types that cannot be loaded (one line saying where).
        TypeError: for a task type whose factory is not callable.
        taskrunner.JournalError: when the app's own runner cannot open its
            journal (in use by another process, not a journal, unwritable).
    """
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config.update(config or {})
    app.json = JSONProvider(app)

    settings = Settings.load(app.config)
    if task_types is None:
        types = configured_task_types(settings)
    else:
        types = task_types if isinstance(task_types, TaskTypes) else TaskTypes(task_types)
    owns_runner = runner is None
    if runner is None:
        runner = TaskRunner(**settings.runner_options(), recreate=types.recreate)
    # A metrics registry of this app's own, not the process-wide default one.
    metrics = CollectorRegistry(auto_describe=True)
    state = WebState(runner, owns_runner, types, settings, metrics)
    app.extensions[EXTENSION_KEY] = state

    register_problem_handlers(app)
    app.wsgi_app = contain_base_exceptions(app.wsgi_app)  # type: ignore[method-assign, assignment]
    if settings.proxy:
        hops = settings.proxy
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    instrument(app, state)
    app.after_request(_harden)
    app.after_request(_log_access)
    app.register_blueprint(api)
    app.register_blueprint(control)
    app.register_blueprint(operations)
    app.register_blueprint(dashboard)
    return app
