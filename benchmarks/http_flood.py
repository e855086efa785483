"""The HTTP scenario's clients, in a process of their own (run by ``measure.py``).

    python http_flood.py '{"port": 8000, "requests": 1000, "clients": 8, "warmup": 20}'

Opens one keep-alive connection per client thread (``http.client``), sends
``warmup`` untimed ``POST /api/tasks`` on each, prints ``warm``, waits for a
line on stdin, then sends ``requests`` submits in all, shared out between the
connections, each as soon as the answer to the last one is read. Prints one
JSON object: the flood's wall time, latency percentiles, answers by status,
and errors.

The clients are a process apart so that their own Python work does not take
the GIL from the server they measure.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from typing import Any

PATH = "/api/tasks"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def body(i: int) -> bytes:
    """A task that runs at once: a blocking fake task with no wait."""
    return json.dumps({"type": "fake_blocking", "input": i, "wait": 0}).encode()


class Client(threading.Thread):
    def __init__(self, port: int, requests: int, warmup: int, go: threading.Event) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.requests, self.warmup, self.go = requests, warmup, go
        self.warm = threading.Event()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []

    def post(self, i: int) -> int:
        self.conn.request("POST", PATH, body(i), HEADERS)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def run(self) -> None:
        try:
            for i in range(self.warmup):
                self.post(i)
        except (OSError, http.client.HTTPException) as error:
            self.errors.append(f"warm-up: {error!r}")
        self.warm.set()
        self.go.wait()
        clock, post, latencies = time.perf_counter, self.post, self.latencies
        statuses = self.statuses
        for i in range(self.requests):
            t0 = clock()
            try:
                status = str(post(i))
            except (OSError, http.client.HTTPException) as error:
                # The connection is reopened by the next request.
                self.errors.append(repr(error))
                self.conn.close()
                continue
            latencies.append(clock() - t0)
            statuses[status] = statuses.get(status, 0) + 1


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def flood(port: int, requests: int, clients: int, warmup: int) -> dict[str, Any]:
    go = threading.Event()
    shares = [requests // clients + (1 if k < requests % clients else 0) for k in range(clients)]
    threads = [Client(port, share, warmup, go) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.warm.wait()
    print("warm", flush=True)
    sys.stdin.readline()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    latencies = sorted(x for t in threads for x in t.latencies)
    statuses: dict[str, int] = {}
    for t in threads:
        for status, count in t.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    errors = [e for t in threads for e in t.errors]
    return {
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "lat_p50_ms": percentile(latencies, 50) * 1e3,
        "lat_p99_ms": percentile(latencies, 99) * 1e3,
        "lat_max_ms": (latencies[-1] if latencies else 0.0) * 1e3,
        "statuses": statuses,
        "errors": len(errors),
        "first_errors": errors[:5],
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    report = flood(config["port"], config["requests"], config["clients"], config["warmup"])
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
