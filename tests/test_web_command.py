"""The ``command`` task type: off by default, and with an allow-list only its
programs run, without a shell, checked again when a journal re-creates them."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest_web import CheckedClient, ServerProcess, assert_problem, invalid_names, run_serve

from taskrunner import TaskRunner
from taskrunner.tasks import SubprocessTask
from taskrunner.web import create_app, default_task_types
from taskrunner.web.commands import command_task_type
from taskrunner.web.settings import Settings
from taskrunner.web.tasktypes import TaskTypes, recipe

USAGE_ERROR = 2
NOT_ALLOWED = "/problems/command-not-allowed"
WAIT = 30.0
PYTHON = sys.executable


class App:
    """An app over its own runner whose types come from the settings, with a checked client."""

    def __init__(self, **config: Any) -> None:
        self.runner = TaskRunner()
        config = {"TESTING": True, "TASKRUNNER_ENTRY_POINTS": False, **config}
        self.app = create_app(runner=self.runner, config=config)
        self.client = CheckedClient(self.app)

    def submit(self, input: Any, type: str = "command") -> Any:
        return self.client.post("/api/tasks", json={"type": type, "input": input})

    def result(self, response: Any) -> Any:
        assert response.status_code == 202, response.get_json()
        id = response.get_json()["id"]
        done, _ = self.runner.wait([id], timeout=WAIT)
        assert done, f"task {id} did not finish"
        status = self.runner.status(id)
        assert status["state"] == "succeeded", status["error"]
        return status["result"]

    def type_names(self) -> list[str]:
        return [t["name"] for t in self.client.get("/api/task-types").get_json()["task_types"]]

    def close(self) -> None:
        self.app.extensions["taskrunner"].close()
        self.runner.shutdown(wait=True, cancel_pending=True)


@pytest.fixture
def make_app(monkeypatch):
    monkeypatch.delenv("TASKRUNNER_ALLOW_COMMANDS", raising=False)
    monkeypatch.delenv("TASKRUNNER_TYPES", raising=False)
    apps: list[App] = []

    def make(*programs: str, **config: Any) -> App:
        if programs:
            config["TASKRUNNER_ALLOW_COMMANDS"] = list(programs)
        app = App(**config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def write_program(path: Path, body: str) -> Path:
    """An executable Python script at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{PYTHON}\n{body}\n")
    path.chmod(0o755)
    return path


def python(code: str) -> list[str]:
    return [PYTHON, "-c", code]


# ---- off by default ----------------------------------------------------------------


def test_without_an_allow_list_there_is_no_command_type(make_app):
    app = make_app()
    assert app.type_names() == list(default_task_types())
    body = assert_problem(
        app.submit({"args": python("print(1)")}), 404, "/problems/unknown-task-type"
    )
    assert "'command'" in body["detail"]
    document = app.client.get("/api/openapi.json").get_json()
    assert "403" not in document["paths"]["/api/tasks"]["post"]["responses"]
    assert Settings.load({}, {}).allow_commands == ()


# ---- allowed programs run ----------------------------------------------------------


def test_an_allowed_program_runs_and_its_result_is_its_output(make_app):
    app = make_app(PYTHON)
    assert app.type_names() == [*default_task_types(), "command"]
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = app.result(app.submit({"args": python(code)}))
    assert result == {"returncode": 3, "stdout": "out\n", "stderr": "err\n", "truncated": False}


def test_arguments_reach_the_program_as_they_are_without_a_shell(make_app, tmp_path):
    app = make_app(PYTHON)
    tricky = ["$HOME", "a b", "; touch pwned", "*", "`id`"]
    code = "import json, os, sys; print(json.dumps([sys.argv[1:], os.getcwd()]))"
    response = app.submit({"args": [*python(code), *tricky], "cwd": str(tmp_path)})
    result = app.result(response)
    assert json.loads(result["stdout"]) == [tricky, str(tmp_path.resolve())]
    assert not (tmp_path / "pwned").exists()


def test_a_program_not_on_the_list_is_refused_and_never_run(make_app, tmp_path):
    marker = tmp_path / "ran"
    other = write_program(tmp_path / "other", f"open({str(marker)!r}, 'w').close()")
    app = make_app(PYTHON)
    for name in (str(other), "no-such-program-anywhere"):
        body = assert_problem(app.submit({"args": [name]}), 403, NOT_ALLOWED)
        assert body["program"] == name
        assert repr(name) in body["detail"]
    time.sleep(0.2)
    assert not marker.exists(), "a refused program ran"
    assert app.runner.ids() == [], "a refused submission made a task"


def test_a_bare_name_is_looked_up_on_path(make_app, tmp_path, monkeypatch):
    greet = write_program(tmp_path / "bin" / "greet", "import sys; print('hello', sys.argv[1])")
    monkeypatch.setenv("PATH", f"{greet.parent}{os.pathsep}{os.environ['PATH']}")
    # Allowed by name, asked for by name or by path: the same program.
    app = make_app("greet")
    assert app.result(app.submit({"args": ["greet", "world"]}))["stdout"] == "hello world\n"
    assert app.result(app.submit({"args": [str(greet), "path"]}))["stdout"] == "hello path\n"
    # Allowed by path, asked for by name.
    app = make_app(str(greet))
    assert app.result(app.submit({"args": ["greet", "name"]}))["stdout"] == "hello name\n"
    # A name no longer on PATH is refused.
    monkeypatch.setenv("PATH", os.defpath)
    assert_problem(app.submit({"args": ["greet", "x"]}), 403, NOT_ALLOWED)


def test_a_link_is_the_program_it_leads_to_when_called_by_its_name(make_app, tmp_path):
    app = make_app(PYTHON)
    same_name = tmp_path / "links" / os.path.basename(PYTHON)
    same_name.parent.mkdir()
    same_name.symlink_to(PYTHON)
    # The same file by the same name: allowed, and run by the list's path, not the link.
    code = "import sys; print(sys.executable)"
    result = app.result(app.submit({"args": [str(same_name), "-c", code]}))
    assert result["stdout"] == f"{PYTHON}\n"
    other_name = tmp_path / "links" / "sh"
    other_name.symlink_to(PYTHON)
    # The same file by another name may be another program (busybox's sh and ls).
    assert_problem(app.submit({"args": [str(other_name), "-c", "1"]}), 403, NOT_ALLOWED)


def test_the_list_holds_what_each_entry_led_to_at_start(make_app, tmp_path):
    first = write_program(tmp_path / "first" / "tool", "print('first')")
    second = write_program(tmp_path / "second" / "tool", "print('second')")
    entry = tmp_path / "bin" / "tool"
    entry.parent.mkdir()
    entry.symlink_to(first)
    app = make_app(str(entry))
    # The file behind the entry, by the same name, runs by the entry's path.
    assert app.result(app.submit({"args": [str(first)]}))["stdout"] == "first\n"
    assert_problem(app.submit({"args": [str(second)]}), 403, NOT_ALLOWED)
    entry.unlink()
    entry.symlink_to(second)
    # Pointed elsewhere since: neither the entry nor its old file runs.
    assert_problem(app.submit({"args": [str(entry)]}), 403, NOT_ALLOWED)
    assert_problem(app.submit({"args": [str(first)]}), 403, NOT_ALLOWED)


# ---- the input's schema ----------------------------------------------------------


@pytest.mark.parametrize(
    "input, names",
    [
        ({"args": []}, {"input/args"}),
        ({"args": "python -c 1"}, {"input/args"}),
        ({"args": [PYTHON, 1, None]}, {"input/args/1", "input/args/2"}),
        ({"args": [7]}, {"input/args/0"}),
        ({"args": [""]}, {"input/args/0"}),
        ({"args": ["./relative/program"]}, {"input/args/0"}),
        ({"args": [PYTHON, "nul\u0000"]}, {"input/args/1"}),
        ({"args": [PYTHON], "cwd": 3}, {"input/cwd"}),
        ({"args": [PYTHON], "env": {"LD_PRELOAD": "/tmp/x.so"}}, {"input"}),
        ({}, {"input"}),
        ([PYTHON], {"input"}),
    ],
)
def test_input_against_the_schema_is_a_400(make_app, input, names):
    app = make_app(PYTHON)
    assert invalid_names(app.submit(input)) == names
    assert app.runner.ids() == []


# ---- a journal's re-created tasks --------------------------------------------------


def test_a_recreated_command_is_checked_against_the_list_of_that_time(tmp_path):
    input = {"args": [PYTHON, "-c", "print('again')"], "cwd": str(tmp_path)}
    allowing = TaskTypes([command_task_type([PYTHON])])
    task = allowing.recreate(recipe("command", input, None, SubprocessTask([PYTHON])))
    assert isinstance(task, SubprocessTask)
    assert list(task.args) == [PYTHON, "-c", "print('again')"] and task.cwd == str(tmp_path)
    other = write_program(tmp_path / "other", "pass")
    refusing = TaskTypes([command_task_type([str(other)])])
    with pytest.raises(ValueError, match="not on this server's allow-list"):
        refusing.recreate(recipe("command", input, None, SubprocessTask([PYTHON])))


# ---- settings and start-up errors ----------------------------------------------------


def test_the_setting_is_split_as_path_is(tmp_path):
    raw = f"{PYTHON}{os.pathsep}{os.pathsep}greet"
    assert Settings.load({}, {"TASKRUNNER_ALLOW_COMMANDS": raw}).allow_commands == (PYTHON, "greet")
    config = {"TASKRUNNER_ALLOW_COMMANDS": ["/opt/a:b"]}
    assert Settings.load(config, {}).allow_commands == ("/opt/a:b",)
    with pytest.raises(ValueError, match="TASKRUNNER_ALLOW_COMMANDS must be"):
        Settings.load({"TASKRUNNER_ALLOW_COMMANDS": 3}, {})


def test_a_type_called_command_beside_the_allowed_commands_is_refused(make_app, monkeypatch):
    module = type(sys)("own_command_types")
    module.TYPES = {"command": print}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "own_command_types", module)
    with pytest.raises(ValueError, match="'command' is declared by own_command_types:TYPES"):
        make_app(PYTHON, TASKRUNNER_TYPES="own_command_types:TYPES")


def test_a_bad_allow_list_entry_stops_serve_with_one_line(tmp_path):
    not_executable = tmp_path / "data.txt"
    not_executable.write_text("not a program\n")
    cases = [
        (["--allow-command", str(tmp_path / "missing")], {}, "no such file"),
        (["--allow-command", str(not_executable)], {}, "not an executable file"),
        (["--allow-command", str(tmp_path)], {}, "not an executable file"),
        (["--allow-command", PYTHON, "--allow-command", "no-such-program-anywhere"], {}, "PATH"),
        ([], {"TASKRUNNER_ALLOW_COMMANDS": "no-such-program-anywhere"}, "PATH"),
    ]
    for args, env, why in cases:
        out = run_serve(*args, **env)
        assert out.returncode == USAGE_ERROR, out.stdout + out.stderr
        assert len(out.stderr.splitlines()) == 1, out.stderr
        assert out.stderr.startswith("taskrunner serve: cannot allow the command "), out.stderr
        assert why in out.stderr
        assert "serving on" not in out.stdout


def test_serve_with_allow_command_runs_a_submitted_command():
    server = ServerProcess(
        [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--allow-command", PYTHON]
    )
    try:
        assert f"task type command: Runs one of these programs, without a shell: {PYTHON}" in (
            server.log()
        )
        types = requests.get(f"{server.url}/api/task-types", timeout=10).json()["task_types"]
        assert "command" in [t["name"] for t in types]
        body = {"type": "command", "input": {"args": python("print(6 * 7)")}}
        response = requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
        assert response.status_code == 202, response.text
        url = f"{server.url}/api/tasks/{response.json()['id']}"
        deadline = time.monotonic() + WAIT
        while not (task := requests.get(url, timeout=10).json())["done"]:
            assert time.monotonic() < deadline, task
            time.sleep(0.05)
        assert task["state"] == "succeeded", task
        assert task["result"]["returncode"] == 0 and task["result"]["stdout"] == "42\n"
        refused = requests.post(
            f"{server.url}/api/tasks",
            json={"type": "command", "input": {"args": ["/bin/sh", "-c", "echo no"]}},
            timeout=10,
        )
        assert_problem(refused, 403, NOT_ALLOWED)
    finally:
        server.stop()
