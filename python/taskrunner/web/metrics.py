"""``GET /metrics``: the runner and the HTTP server in Prometheus text format."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from taskrunner.web.state import WebState


class RunnerCollector(Collector):
    """Reads the runner's counts and stats at each scrape."""

    def __init__(self, state: WebState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        runner = self._state.runner
        stats = runner.stats()
        tasks = GaugeMetricFamily("taskrunner_tasks", "Tasks known, by state.", labels=["state"])
        for state, count in runner.counts().items():
            tasks.add_metric([state], count)
        yield tasks
        workers = GaugeMetricFamily(
            "taskrunner_workers", "Worker threads for blocking tasks.", labels=["activity"]
        )
        workers.add_metric(["busy"], stats["workers_busy"])
        workers.add_metric(["idle"], stats["workers_idle"])
        # Still inside the run() of a task that timed out: Python cannot stop them.
        if "workers_timed_out" in stats:
            workers.add_metric(["timed_out"], stats["workers_timed_out"])
        yield workers
        yield GaugeMetricFamily(
            "taskrunner_workers_attaching",
            "Busy workers holding a task while they wait for the GIL to run it.",
            value=stats["workers_attaching"],
        )
        yield GaugeMetricFamily(
            "taskrunner_paused", "1 while the runner starts no task, else 0.", value=stats["paused"]
        )
        yield GaugeMetricFamily(
            "taskrunner_max_workers", "The most worker threads.", value=stats["max_workers"]
        )
        yield GaugeMetricFamily(
            "taskrunner_queued_tasks", "Blocking tasks waiting for a worker.", value=stats["queued"]
        )
        yield GaugeMetricFamily(
            "taskrunner_polling_tasks", "Polling tasks being polled.", value=stats["polling"]
        )
        yield GaugeMetricFamily(
            "taskrunner_poller_queue_length",
            "Polling tasks in the poller's deadline queue.",
            value=stats["poller_queue"],
        )
        yield CounterMetricFamily(
            "taskrunner_polls", "Calls of get_output() so far.", value=stats["polls"]
        )
        yield CounterMetricFamily(
            "taskrunner_tasks_submitted",
            "Tasks submitted over HTTP.",
            value=self._state.submitted,
        )
        yield GaugeMetricFamily(
            "taskrunner_event_streams", "Open /api/events streams.", value=self._state.streams.open
        )
        if stats["journal"] is not None:
            yield GaugeMetricFamily(
                "taskrunner_journal_degraded",
                "1 while the journal cannot write (submissions get 503), else 0.",
                value=stats["journal"] == "degraded",
            )


def instrument(app: Flask, state: WebState) -> None:
    """Exports the runner's numbers, and counts and times the requests of ``app``,
    in ``state.metrics_registry``."""
    state.metrics_registry.register(RunnerCollector(state))
    _count_requests(app, state.metrics_registry)


def _count_requests(app: Flask, registry: CollectorRegistry) -> None:
    """Counts and times every request of ``app`` by method, route and status."""
    requests = Counter(
        "taskrunner_http_requests",
        "HTTP requests answered.",
        ["method", "endpoint", "status"],
        registry=registry,
    )
    latency = Histogram(
        "taskrunner_http_request_seconds",
        "Seconds to produce a response (an event stream counts until it starts).",
        ["method", "endpoint"],
        registry=registry,
    )

    @app.before_request
    def _start_clock() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        # The route, not the path: ids in paths would make a series per task.
        endpoint = request.endpoint or "unmatched"
        requests.labels(request.method, endpoint, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            latency.labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response


def metrics_response(registry: CollectorRegistry) -> Response:
    """The exposition, in the format the scraper's Accept header asks for."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), content_type=content_type)
