"""The package as shipped: type stubs true to the built module, the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import taskrunner


def test_stub_matches_the_built_module():
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "taskrunner._core"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_ships_py_typed_and_stub():
    root = Path(taskrunner.__file__).parent
    assert (root / "py.typed").exists()
    assert (root / "_core.pyi").exists()


def test_demo_runs_fake_tasks_to_completion():
    out = subprocess.run(
        [sys.executable, "-m", "taskrunner", "demo", "--tasks", "12", "--wait", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "registered 12 tasks" in out.stdout
    assert "all 12 tasks done" in out.stdout and "12 succeeded" in out.stdout
    assert "FakeTaskPolling" in out.stdout or "FakeTaskBlocking" in out.stdout


def test_demo_refuses_bad_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "taskrunner", "demo", "--tasks", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--tasks" in out.stderr
