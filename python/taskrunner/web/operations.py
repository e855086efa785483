"""``/healthz`` and ``/metrics``: the views that load balancers and scrapers poll."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from taskrunner.web.auth import guard
from taskrunner.web.metrics import metrics_response
from taskrunner.web.problems import SHUTTING_DOWN, Problem
from taskrunner.web.state import current_state

operations = Blueprint("taskrunner_operations", __name__)
# Load balancers and scrapers ask without credentials, unless the owner says otherwise.
guard(operations, metrics={"healthz", "metrics"})


@operations.get("/healthz")
def healthz() -> Response:
    """200 while the runner runs tasks, 503 once it is shutting down.

    A journal that cannot write, or a cluster whose scheduler is out of
    reach, makes the status ``degraded``, still with 200: tasks run on and
    their status can be read, so a load balancer should keep the server;
    submissions get 503 meanwhile. With a cluster, ``cluster`` says where
    its scheduler is and whether it is in reach.
    """
    state = current_state()
    if state.stopping.is_set() or state.runner.closed:
        raise Problem(503, "the task runner is shutting down", type=SHUTTING_DOWN)
    stats = state.runner.stats()
    cluster = state.cluster()
    degraded = stats["journal"] == "degraded" or (cluster is not None and not cluster["reachable"])
    health = {
        "status": "degraded" if degraded else "ok",
        "journal": stats["journal"],
        "journal_problem": stats["journal_problem"],
    }
    if cluster is not None:
        health["cluster"] = cluster
    return jsonify(health)


@operations.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of the runner and the HTTP server."""
    return metrics_response(current_state().metrics_registry)
