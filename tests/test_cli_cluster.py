"""``serve --cluster`` and ``demo --cluster`` at the command line: help, no Dask, a
scheduler out of reach, and the demo's worker column."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from taskrunner import cli

USAGE_ERROR = 2
# Dask waits this long for a scheduler that does not answer (30 s by default).
QUICK_CONNECT = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}


def run_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNER_")}
    return subprocess.run(
        [sys.executable, "-m", "taskrunner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, **env},
    )


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_dask(tmp_path) -> str:
    """A PYTHONPATH on which ``distributed`` cannot be imported, as if never installed."""
    (tmp_path / "distributed.py").write_text("raise ImportError('No module named distributed')\n")
    return os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])


def test_help_says_what_cluster_does_and_that_it_needs_the_dask_extra():
    for command in ("serve", "demo"):
        out = run_cli(command, "--help")
        assert out.returncode == 0, out.stderr
        text = " ".join(out.stdout.split())
        assert "--cluster ADDRESS|local" in text
        assert "run the tasks on a Dask cluster" in text and "(needs the dask extra)" in text
    serve = " ".join(run_cli("serve", "--help").stdout.split())
    assert "TASKRUNNER_CLUSTER" in serve and "importable on every worker" in serve


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "0", "--db", ":memory:", "--cluster", "local"),
        ("demo", "--cluster", "local"),
    ],
)
def test_without_dask_cluster_says_what_to_install_on_one_line(tmp_path, args):
    pytest.importorskip("flask")
    out = run_cli(*args, PYTHONPATH=without_dask(tmp_path))
    assert out.returncode == USAGE_ERROR
    assert out.stderr.count("\n") == 1, out.stderr
    assert "--cluster needs the dask extra" in out.stderr and "missing: distributed" in out.stderr
    assert out.stderr.rstrip().endswith(f"install it with: {cli.extra_command('dask')}")


def test_the_cluster_setting_without_dask_says_so_too(tmp_path):
    pytest.importorskip("flask")
    out = run_cli(
        "serve",
        "--port",
        "0",
        "--db",
        ":memory:",
        PYTHONPATH=without_dask(tmp_path),
        TASKRUNNER_CLUSTER="local",
    )
    assert out.returncode == USAGE_ERROR
    assert "--cluster needs the dask extra" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, by", [("serve", "option"), ("serve", "setting"), ("demo", "option")]
)
def test_a_scheduler_out_of_reach_is_one_clear_line(command, by):
    pytest.importorskip("distributed")
    pytest.importorskip("flask")
    address = f"tcp://127.0.0.1:{closed_port()}"
    args = ["serve", "--port", "0", "--db", ":memory:"] if command == "serve" else ["demo"]
    env = dict(QUICK_CONNECT)
    if by == "option":
        args += ["--cluster", address]
    else:
        env["TASKRUNNER_CLUSTER"] = address
    out = run_cli(*args, **env)
    assert out.returncode == 1, out.stderr
    assert f"cannot reach the Dask scheduler at {address}" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr


def test_an_address_dask_cannot_use_is_a_usage_error():
    pytest.importorskip("distributed")
    pytest.importorskip("flask")
    out = run_cli("serve", "--port", "0", "--db", ":memory:", "--cluster", "nonsense://x")
    assert out.returncode == USAGE_ERROR
    assert "cannot use the cluster 'nonsense://x'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_demo_shows_each_tasks_worker_without_its_scheme():
    statuses = [
        {
            "id": 1,
            "name": "FakeTaskBlocking",
            "kind": "blocking",
            "state": "succeeded",
            "done": True,
            "runtime": 0.5,
            "polls": 0,
            "error": None,
            "result": 2,
            "worker": "tcp://127.0.0.1:40211",
        }
    ]
    lines = cli.render(statuses, 1.0, 120, 10, workers=True)
    assert "worker" in lines[3]
    assert "127.0.0.1:40211" in lines[4] and "tcp://" not in lines[4]
    assert "worker" not in cli.render(statuses, 1.0, 120, 10)[3]


@pytest.mark.slow
def test_the_demo_on_a_local_cluster_runs_its_tasks_on_the_workers():
    from dask_cluster import WORKER_PATH

    done = subprocess.run(
        [sys.executable, "-m", "taskrunner", "demo", "--cluster", "local", "--tasks", "8"]
        + ["--wait", "0.2"],
        env={**os.environ, "PYTHONPATH": WORKER_PATH},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "all 8 tasks done" in done.stdout and "8 succeeded" in done.stdout
    assert re.search(r"ran on [2-4] workers: 127\.0\.0\.1:\d+ \(\d+ tasks\)", done.stdout)
