"""``python -m taskrunner`` as a newcomer meets it: help, version, bad arguments, pipes, extras."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from dataclasses import fields

import pytest

import taskrunner
from taskrunner import cli

USAGE_ERROR = 2


def run_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taskrunner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def test_help_is_plain_text_and_names_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    assert "``" not in out.stdout
    for word in ("demo", "serve", "--version", "examples:"):
        assert word in out.stdout


def test_demo_help_describes_it_and_gives_units_and_defaults():
    out = run_cli("demo", "--help")
    assert out.returncode == 0, out.stderr
    assert "fake tasks" in out.stdout.split("options:")[0]
    refresh = " ".join(out.stdout.split("--refresh SECONDS", 2)[2].split())
    assert refresh.startswith("seconds between frames (default 0.2)")


def test_serve_help_names_every_setting_and_the_web_extra():
    settings = pytest.importorskip("taskrunner.web.settings")
    out = run_cli("serve", "--help")
    assert out.returncode == 0, out.stderr
    for field in fields(settings.Settings):
        assert settings.ENV_PREFIX + field.name.upper() in out.stdout
    assert "web extra" in out.stdout and "[web]'" in out.stdout
    assert "``" not in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0, out.stderr
    dist = cli.distribution()
    assert dist is not None, "the package is installed for the tests"
    assert out.stdout == f"taskrunner {dist.version}\n"


def test_the_distribution_is_found_by_its_files_whatever_its_name(monkeypatch, tmp_path):
    # A wheel's install: the package and its dist-info side by side.
    site = tmp_path / "site-packages"
    (site / "taskrunner").mkdir(parents=True)
    # Python 3.13's Distribution.files lists only files that exist.
    for name in ("__init__.py", "cli.py"):
        (site / "taskrunner" / name).write_text("")
    info = site / "taskrunner_renamed-9.8.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: taskrunner-renamed\nVersion: 9.8.7\n"
    )
    (info / "RECORD").write_text("taskrunner/__init__.py,,\ntaskrunner/cli.py,,\n")
    monkeypatch.setattr(cli, "__file__", str(site / "taskrunner" / "cli.py"))
    assert cli.version() == "taskrunner 9.8.7"
    assert cli.web_extra_command() == "pip install 'taskrunner-renamed[web]'"


def test_version_when_not_installed(monkeypatch):
    monkeypatch.setattr(cli, "distribution", lambda: None)
    assert cli.version() == "taskrunner (version unknown: not installed)"


@pytest.mark.parametrize(
    "option, value",
    [
        ("--refresh", "-1"),
        ("--refresh", "0"),
        ("--refresh", "inf"),
        ("--tasks", "-5"),
        ("--tasks", "0"),
        ("--tasks", "two"),
        ("--wait", "-1"),
        ("--wait", "nan"),
    ],
)
def test_demo_refuses_bad_numbers_with_its_own_usage(option, value):
    out = run_cli("demo", option, value)
    assert out.returncode == USAGE_ERROR
    assert out.stderr.startswith("usage: python -m taskrunner demo ")
    assert f"error: argument {option}: must be " in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_refuses_a_port_out_of_range():
    out = run_cli("serve", "--port", "65536")
    assert out.returncode == USAGE_ERROR
    assert out.stderr.startswith("usage: python -m taskrunner serve ")


def test_demo_without_tasks_says_so():
    out = io.StringIO()
    assert cli.demo(0, None, 0.2, out) == 0
    assert out.getvalue() == "no tasks to run\n"


def test_demo_into_a_pipe_that_closes_exits_quietly():
    # Like `demo | head -1`: the reader leaves after the first line.
    args = ["-m", "taskrunner", "demo", "--tasks", "20", "--wait", "0.3", "--refresh", "0.01"]
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().startswith("registered 20 tasks")
        process.stdout.close()
        assert process.wait(timeout=30) == 1
        assert process.stderr.read() == ""
    finally:
        process.kill()


def test_serve_without_the_web_extra_says_what_to_install(tmp_path):
    # A flask that cannot be imported stands in for one never installed.
    (tmp_path / "flask.py").write_text("raise ImportError('No module named flask')\n")
    out = run_cli("serve", "--port", "0", PYTHONPATH=str(tmp_path))
    assert out.returncode == USAGE_ERROR
    assert out.stderr.count("\n") == 1, out.stderr
    assert "needs the web extra" in out.stderr and "missing: flask" in out.stderr
    assert out.stderr.rstrip().endswith(f"install it with: {cli.web_extra_command()}")
    help = run_cli("serve", "--help", PYTHONPATH=str(tmp_path))
    assert help.returncode == 0, help.stderr
    assert "web extra, which is not installed" in help.stdout
    assert cli.web_extra_command() in help.stdout


class FakeDistribution:
    def __init__(self, name: str, direct_url: str | None) -> None:
        self.metadata = {"Name": name}
        self.direct_url = direct_url

    def read_text(self, filename: str) -> str | None:
        return self.direct_url if filename == "direct_url.json" else None


@pytest.mark.parametrize(
    "dist, command",
    [
        (None, "pip install '.[web]' in the checkout"),
        (FakeDistribution("task-runner-x", None), "pip install 'task-runner-x[web]'"),
        (
            FakeDistribution("x", '{"url": "file:///src/x", "dir_info": {"editable": true}}'),
            "pip install -e '/src/x[web]'",
        ),
        (
            FakeDistribution("x", '{"url": "file:///src/x", "dir_info": {}}'),
            "pip install '/src/x[web]'",
        ),
    ],
)
def test_the_web_extra_command_fits_the_install(monkeypatch, dist, command):
    monkeypatch.setattr(cli, "distribution", lambda: dist)
    assert cli.web_extra_command() == command


def test_serve_on_a_port_in_use_says_so():
    pytest.importorskip("flask")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = run_cli("serve", "--port", port, "--db", ":memory:")
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_demo_marks_every_state_the_core_has():
    assert tuple(cli.STATE_MARKS) == taskrunner.STATES


def test_the_demo_shows_each_tasks_progress_and_its_tasks_report_it():
    status = {
        "id": 1,
        "name": "FakeTaskPolling",
        "kind": "polling",
        "state": "running",
        "done": False,
        "runtime": 0.5,
        "polls": 3,
        "error": None,
        "result": None,
        "worker": None,
        "progress": {"fraction": 0.4, "message": "0.4 of 1 s"},
    }
    lines = cli.render([status, {**status, "id": 2, "progress": None}], 1.0, 120, 10)
    assert "progress" in lines[3]
    assert "██░░░ 40%" in lines[4]
    assert "%" not in lines[5]
    task = taskrunner.faketasks.gen_task(1, 0.2, reporting=True)
    assert task.progress() == {"fraction": 0.0, "message": "not started"}
    with taskrunner.TaskRunner() as runner:
        assert runner.submit(task).result(timeout=10) == 2
    assert task.progress()["fraction"] == 1.0
