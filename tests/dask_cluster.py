"""Real Dask clusters on 127.0.0.1 for the tests: a `dask scheduler` and `dask worker`
processes, with taskrunner and the tests' task modules importable on the workers, and
``serve --cluster`` in front of one.

Also a pytest plugin (``pytest_plugins`` in conftest.py): the module-scoped fixtures
``dask_processes`` and ``server`` over it, for the modules that ask for them; a module's
own ``server`` fixture wins over this one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_web import ServerProcess

import taskrunner

TESTS = Path(__file__).resolve().parent
# The workers import the taskrunner these tests import (the checkout's, or an
# installed wheel's) and the tasks' module from here.
TASKRUNNER_HOME = Path(taskrunner.__file__).resolve().parent.parent
WORKER_PATH = os.pathsep.join([str(TASKRUNNER_HOME), str(TESTS), os.environ.get("PYTHONPATH", "")])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A `dask scheduler` and `dask worker` processes on loopback ports."""

    def __init__(self, workers: int = 2) -> None:
        import distributed  # here, so that the plugin loads without the [dask] extra

        self.env = {**os.environ, "PYTHONPATH": WORKER_PATH}
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._start(
            "scheduler", "--host", "127.0.0.1", "--port", port, "--dashboard-address", ":0"
        )
        # No nanny: a worker killed stays dead, as a lost machine would.
        self.workers = [
            self._start(
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
            )
            for _ in range(workers)
        ]
        self.client = distributed.Client(self.address, timeout=30, set_as_default=False)
        self.client.wait_for_workers(workers, timeout=60)

    def _start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def worker_pid(self, address: str) -> int:
        return self.client.run(os.getpid, workers=[address])[address]

    def close(self) -> None:
        self.client.close()
        for process in [*self.workers, self.scheduler]:
            process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def serve_command(cluster: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--cluster", cluster, *args]


def start_server(cluster: str, *args: str, **env: str) -> ServerProcess:
    """``serve --cluster`` with taskrunner and the tests' modules on its path (and so on
    its workers', for a local cluster)."""
    return ServerProcess(serve_command(cluster, *args), PYTHONPATH=WORKER_PATH, **env)


@pytest.fixture(scope="module")
def dask_processes():
    cluster = DaskProcesses()
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def server(dask_processes):
    process = start_server(dask_processes.address, "--db", ":memory:")
    yield process
    process.stop()
