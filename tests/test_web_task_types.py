"""Task types of one's own: ``TaskType`` declarations with input schemas, ``serve --types``,
the ``taskrunner.task_types`` entry points, and the errors of each at start."""

from __future__ import annotations

import itertools
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest
import requests
from conftest_web import CheckedClient, ServerProcess, assert_problem, invalid_names, run_serve

from taskrunner import TaskRunner
from taskrunner.web import FAKE_TASK_TYPES, TaskType, create_app, default_task_types
from taskrunner.web.discovery import GROUP, configured_task_types, find_task_types
from taskrunner.web.settings import Settings
from taskrunner.web.tasktypes import MAX_INPUT_ERRORS, MAX_REASON_CHARS, TaskTypes, recipe

from conftest import wait_for

USAGE_ERROR = 2
WAIT = 10.0


class Area:
    """Multiplies a rectangle's sides."""

    def __init__(self, input: Any) -> None:
        self.input = input

    def run(self) -> Any:
        return self.input["width"] * self.input["height"]

    def get_output(self) -> Any:
        return None


SIDES = {
    "type": "object",
    "properties": {
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
    },
    "required": ["width", "height"],
    "additionalProperties": False,
    "examples": [{"width": 3, "height": 4}],
}

# The same declarations, as the module a server's owner writes.
TYPES_MODULE = f'''
from taskrunner.web import TaskType


class Area:
    """Multiplies a rectangle's sides."""

    def __init__(self, input):
        self.input = input

    def run(self):
        return self.input["width"] * self.input["height"]

    def get_output(self):
        return None


SIDES = {SIDES!r}
TASK_TYPES = [TaskType("area", Area, schema=SIDES, description="The area of a rectangle")]
'''


class App:
    """An app over its own runner, with a checked client."""

    def __init__(self, task_types: Any = None, **config: Any) -> None:
        self.runner = TaskRunner()
        config = {"TESTING": True, "TASKRUNNER_TOKEN": None, **config}
        self.app = create_app(runner=self.runner, task_types=task_types, config=config)
        self.client = CheckedClient(self.app)

    def submit(self, type: str, input: Any, **fields: Any) -> Any:
        return self.client.post("/api/tasks", json={"type": type, "input": input, **fields})

    def result(self, task: dict) -> Any:
        done, _ = self.runner.wait([task["id"]], timeout=WAIT)
        assert done, f"task {task['id']} did not finish"
        return self.runner.status(task["id"])["result"]

    def types(self) -> list[dict]:
        return self.client.get("/api/task-types").get_json()["task_types"]

    def close(self) -> None:
        self.app.extensions["taskrunner"].close()
        self.runner.shutdown(wait=True, cancel_pending=True)


@pytest.fixture
def make_app():
    apps: list[App] = []

    def make(task_types: Any = None, **config: Any) -> App:
        app = App(task_types, **config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


_names = itertools.count()


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Writes a module into a directory on sys.path; its name, unique to the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(source: str, name: Optional[str] = None) -> str:
        name = name or f"own_types_{os.getpid()}_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def install_distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """A distribution as an installer leaves it: its dist-info, with entry points."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = [f"{key} = {value}" for key, value in entry_points.items()]
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n" + "\n".join(lines) + "\n")


# ---- declarations and schemas ------------------------------------------------


def test_input_that_matches_the_schema_reaches_the_factory(make_app):
    app = make_app([TaskType("area", Area, schema=SIDES)])
    response = app.submit("area", {"width": 3, "height": 4})
    assert response.status_code == 202, response.get_json()
    assert app.result(response.get_json()) == 12


def test_input_against_the_schema_is_a_400_naming_each_failing_place(make_app):
    made: list[Any] = []

    def area(input: Any) -> Area:
        made.append(input)
        return Area(input)

    app = make_app([TaskType("area", area, schema=SIDES)])
    response = app.submit("area", {"width": 0, "height": "4", "depth": 1})
    assert invalid_names(response) == {"input/width", "input/height", "input"}
    reasons = {p["name"]: p["reason"] for p in response.get_json()["invalid_params"]}
    assert "minimum of 1" in reasons["input/width"]
    assert "is not of type 'integer'" in reasons["input/height"]
    assert "'depth' was unexpected" in reasons["input"]
    assert invalid_names(app.submit("area", [3, 4])) == {"input"}
    assert invalid_names(app.submit("area", {"width": 3})) == {"input"}
    assert made == [], "the factory saw input its schema refuses"


def test_two_failures_at_one_place_share_its_entry(make_app):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}
    app = make_app([TaskType("n", Area, schema=schema)])
    body = assert_problem(app.submit("n", {"n": "x"}), 400, "/problems/invalid-params")
    assert [p["name"] for p in body["invalid_params"]] == ["input/n"]
    assert "; " in body["invalid_params"][0]["reason"]


def test_a_place_inside_the_input_is_a_json_pointer(make_app):
    schema = {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    }
    app = make_app([TaskType("paths", Area, schema=schema)])
    response = app.submit("paths", {"a/b": ["ok", 1], "c~d": "x"})
    assert invalid_names(response) == {"input/a~1b/1", "input/c~0d"}


def test_a_huge_input_gets_at_most_the_first_failures_each_reason_short(make_app):
    app = make_app(
        [TaskType("strings", Area, schema={"type": "array", "items": {"type": "string"}})]
    )
    names = invalid_names(app.submit("strings", list(range(100))))
    assert names == {f"input/{i}" for i in range(MAX_INPUT_ERRORS)}
    schema = {"type": "string", "maxLength": 3}
    app = make_app([TaskType("short", Area, schema=schema)])
    body = app.submit("short", "x" * 5000).get_json()
    assert len(body["invalid_params"][0]["reason"]) <= MAX_REASON_CHARS


def test_a_factory_can_still_reject_input_the_schema_let_through(make_app):
    def picky(input: Any) -> Area:
        raise ValueError("no squares")

    app = make_app([TaskType("picky", picky, schema=SIDES)])
    body = app.submit("picky", {"width": 2, "height": 2}).get_json()
    assert body["invalid_params"] == [
        {"name": "input", "reason": "rejected by task type 'picky': no squares"}
    ]


def test_the_schema_draft_is_the_one_it_names_else_2020_12(make_app):
    # Draft 4's boolean exclusiveMinimum is no valid 2020-12 schema.
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    without_draft = {key: value for key, value in draft4.items() if key != "$schema"}
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        TaskType("x", Area, schema=without_draft)
    # prefixItems is 2020-12's.
    pairs = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}
    app = make_app([TaskType("old", Area, schema=draft4), TaskType("pair", Area, schema=pairs)])
    assert invalid_names(app.submit("old", 0)) == {"input"}
    assert app.submit("old", 0.5).status_code == 202
    assert invalid_names(app.submit("pair", [1, "a"])) == {"input/0", "input/1"}
    assert app.submit("pair", ["a", 1]).status_code == 202


def test_plain_factories_in_a_mapping_take_any_json_as_before(make_app):
    app = make_app(default_task_types())
    for input in (21, "ab", [1], {"a": 1}, None):
        assert app.submit("fake_blocking", input, wait=0).status_code == 202
    assert all(t["input_schema"] is None for t in app.types())


def test_the_listing_shows_name_description_schema_and_wait(make_app):
    def sized(input: Any, wait: Optional[float] = None) -> Area:
        """Takes a size, and a wait."""
        return Area(input)

    app = make_app(
        {
            "area": TaskType("area", Area, schema=SIDES, description="The area of a rectangle"),
            "sized": TaskType("sized", sized, schema=True),
            "plain": Area,
        }
    )
    assert app.types() == [
        {
            "name": "area",
            "description": "The area of a rectangle",
            "input_schema": SIDES,
            "takes_wait": False,
        },
        {
            "name": "sized",
            "description": "Takes a size, and a wait.",
            "input_schema": True,
            "takes_wait": True,
        },
        {
            "name": "plain",
            "description": "Multiplies a rectangle's sides.",
            "input_schema": None,
            "takes_wait": False,
        },
    ]
    document = app.client.get("/api/openapi.json").get_json()
    item = document["components"]["schemas"]["TaskTypes"]["properties"]["task_types"]["items"]
    assert "input_schema" in item["required"]


def test_a_rerun_after_a_restart_holds_the_input_to_the_schema():
    types = TaskTypes([TaskType("area", Area, schema=SIDES)])
    good = {"width": 2, "height": 5}
    assert types.recreate(recipe("area", good, None, Area(good))).run() == 10
    with pytest.raises(ValueError, match="minimum of 1"):
        types.recreate(recipe("area", {"width": 0, "height": 5}, None, Area(good)))


@pytest.mark.parametrize(
    "args, error, words",
    [
        (("", Area), ValueError, "non-empty string"),
        (("x", 42), TypeError, "factory of task type 'x' is not callable"),
        (("x", Area, "integer"), TypeError, "a dict or a bool"),
        (("x", Area, {"type": "integr"}), ValueError, "'x' is not a valid JSON Schema: at $.type"),
        (("x", Area, {"minimum": float("nan")}), ValueError, "'x' is not JSON"),
        (("x", Area, None, 3), TypeError, "description"),
    ],
)
def test_a_bad_declaration_is_refused_where_it_is_made(args, error, words):
    with pytest.raises(error) as raised:
        TaskType(*args)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    "registry, words",
    [
        ({"a": TaskType("b", Area)}, "the key 'a' holds the task type 'b'"),
        ([TaskType("a", Area), Area], "Area'>, which is not a TaskType"),
        ([TaskType("a", Area), TaskType("a", Area)], "'a' is declared twice"),
        ("area", "not str"),
        ({"a": None}, "not callable"),
    ],
)
def test_a_registry_of_the_wrong_shape_is_refused(registry, words):
    with pytest.raises((TypeError, ValueError), match=words):
        TaskTypes(registry)


def test_the_fake_types_are_declarations_too():
    assert [t.name for t in FAKE_TASK_TYPES] == list(default_task_types())
    assert TaskTypes(FAKE_TASK_TYPES).describe() == TaskTypes(default_task_types()).describe()


# ---- settings ------------------------------------------------------------------


def test_the_types_setting_is_split_on_commas_and_whitespace():
    settings = Settings.load({}, {"TASKRUNNER_TYPES": " a.b:C, d:E\n f:G,,"})
    assert settings.type_sources == ["a.b:C", "d:E", "f:G"]
    assert Settings.load({}, {}).type_sources == []


@pytest.mark.parametrize(
    "raw, value", [("0", False), ("false", False), ("", False), ("1", True), ("Yes", True)]
)
def test_the_entry_points_setting_is_a_switch(raw, value):
    assert Settings.load({}, {"TASKRUNNER_ENTRY_POINTS": raw}).entry_points is value
    assert Settings.load({"TASKRUNNER_ENTRY_POINTS": value}, {}).entry_points is value


def test_a_switch_that_is_neither_is_refused():
    with pytest.raises(ValueError, match="TASKRUNNER_ENTRY_POINTS must be true or false"):
        Settings.load({}, {"TASKRUNNER_ENTRY_POINTS": "maybe"})


# ---- loading: module:ATTRIBUTE and entry points --------------------------------


def test_create_app_serves_the_types_the_setting_names(make_app, write_module):
    module = write_module(TYPES_MODULE)
    plain = write_module("def double(input):\n    return input * 2\nTYPES = {'double': double}\n")
    app = make_app(TASKRUNNER_TYPES=f"{module}:TASK_TYPES,{plain}:TYPES")
    assert [t["name"] for t in app.types()] == ["area", "double"]
    assert app.submit("area", {"width": 2, "height": 3}).status_code == 202
    assert invalid_names(app.submit("area", {"width": 2})) == {"input"}


def test_without_sources_the_fake_types_are_served(make_app):
    app = make_app(TASKRUNNER_ENTRY_POINTS=False)
    assert [t["name"] for t in app.types()] == list(default_task_types())


def test_types_given_to_create_app_are_served_as_given(make_app, write_module):
    module = write_module(TYPES_MODULE)
    app = make_app({"plain": Area}, TASKRUNNER_TYPES=f"{module}:TASK_TYPES")
    assert [t["name"] for t in app.types()] == ["plain"]


def test_an_attribute_path_may_be_dotted(write_module):
    module = write_module("class Holder:\n    TYPES = {'a': print}\n")
    [found] = find_task_types([f"{module}:Holder.TYPES"], entry_points=False)
    assert [t.name for t in found.task_types] == ["a"]


def test_an_installed_distribution_offers_types_through_its_entry_point(
    tmp_path, monkeypatch, write_module, make_app
):
    module = write_module(TYPES_MODULE)
    install_distribution(tmp_path, "imaging-tasks", {"imaging": f"{module}:TASK_TYPES"})
    [found] = find_task_types([], entry_points=True)
    assert found.source == f"entry point imaging = {module}:TASK_TYPES of imaging-tasks 1.0"
    assert [t.name for t in found.task_types] == ["area"]
    assert find_task_types([], entry_points=False) == []
    # Served by default, in place of the fake types.
    app = make_app()
    assert [t["name"] for t in app.types()] == ["area"]
    assert app.submit("area", {"width": 2, "height": 3}).status_code == 202
    # Named by --types too, the same registry counts once.
    assert len(find_task_types([f"{module}:TASK_TYPES"])) == 1
    served = configured_task_types(Settings(entry_points=False)).names()
    assert served == list(default_task_types())


def test_an_entry_point_that_fails_to_load_is_named(tmp_path, write_module):
    module = write_module("raise RuntimeError('the GPU is missing')\n")
    install_distribution(tmp_path, "broken-tasks", {"broken": f"{module}:TYPES"})
    with pytest.raises(ValueError) as raised:
        find_task_types([])
    message = str(raised.value)
    assert f"entry point broken = {module}:TYPES of broken-tasks 1.0" in message
    assert f"group {GROUP}" in message and "RuntimeError: the GPU is missing" in message


def test_one_name_from_two_sources_is_refused_naming_both(tmp_path, write_module):
    first = write_module(TYPES_MODULE)
    second = write_module(TYPES_MODULE)
    install_distribution(tmp_path, "more-tasks", {"more": f"{second}:TASK_TYPES"})
    with pytest.raises(ValueError) as raised:
        find_task_types([f"{first}:TASK_TYPES"])
    assert str(raised.value) == (
        f"task type 'area' is declared by {first}:TASK_TYPES and by "
        f"entry point more = {second}:TASK_TYPES of more-tasks 1.0"
    )


@pytest.mark.parametrize(
    "source, attribute, words",
    [
        ("", "no_such_module_here:TYPES", "cannot import no_such_module_here: ModuleNotFound"),
        ("x = 1\n", "{m}", "is not MODULE:ATTRIBUTE"),
        ("x = 1\n", "{m}:", "is not MODULE:ATTRIBUTE"),
        ("x = 1\n", "{m}:TYPES", "{m} has no attribute TYPES"),
        ("TYPES = 42\n", "{m}:TYPES", "{m}:TYPES: task types must be a mapping"),
        ("TYPES = {'a': 42}\n", "{m}:TYPES", "the factory of task type 'a' is not callable"),
        ("def (:\n", "{m}:TYPES", "cannot import {m}: SyntaxError"),
        (
            "from taskrunner.web import TaskType\nTYPES = [TaskType('a', print, {'type': 1})]\n",
            "{m}:TYPES",
            "cannot import {m}: ValueError: the schema of task type 'a' is not a valid",
        ),
        ("import sys\nsys.exit(3)\n", "{m}:TYPES", "cannot import {m}: SystemExit: 3"),
    ],
)
def test_a_source_that_cannot_be_loaded_is_named(write_module, source, attribute, words):
    module = write_module(source)
    with pytest.raises(ValueError) as raised:
        find_task_types([attribute.format(m=module)], entry_points=False)
    assert words.format(m=module) in str(raised.value)
    assert "\n" not in str(raised.value)


# ---- the command line ----------------------------------------------------------


def with_path(site: Path) -> str:
    return os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


BAD_MODULES = {
    "syntax": "def (:\n",
    "shape": "TYPES = 'area'\n",
    "twice": "from taskrunner.web import TaskType\nTYPES = [TaskType('a', print)] * 2\n",
    "schema": "from taskrunner.web import TaskType\nTYPES = [TaskType('a', print, {'type': 1})]\n",
    "uncallable": "TYPES = {'a': 'print'}\n",
}


@pytest.mark.parametrize(
    "args, env, words",
    [
        (["--types", "nowhere:TYPES"], {}, "nowhere:TYPES: cannot import nowhere"),
        (["--types", "good"], {}, "'good' is not MODULE:ATTRIBUTE"),
        (["--types", "good:MISSING"], {}, "good has no attribute MISSING"),
        (["--types", "syntax:TYPES"], {}, "cannot import syntax: SyntaxError"),
        (["--types", "shape:TYPES"], {}, "shape:TYPES: task types must be a mapping"),
        (["--types", "twice:TYPES"], {}, "task type 'a' is declared twice in twice:TYPES"),
        (["--types", "schema:TYPES"], {}, "the schema of task type 'a' is not a valid JSON"),
        (["--types", "uncallable:TYPES"], {}, "the factory of task type 'a' is not callable"),
        (
            ["--types", "good:TASK_TYPES", "--types", "twin:TASK_TYPES"],
            {},
            "task type 'area' is declared by good:TASK_TYPES and by twin:TASK_TYPES",
        ),
        ([], {"TASKRUNNER_TYPES": "good:TASK_TYPES nowhere:X"}, "nowhere:X: cannot import"),
        ([], {"TASKRUNNER_ENTRY_POINTS": "maybe"}, "TASKRUNNER_ENTRY_POINTS must be true or"),
    ],
)
def test_serve_refuses_bad_task_types_in_one_line(tmp_path, args, env, words):
    (tmp_path / "good.py").write_text(TYPES_MODULE)
    (tmp_path / "twin.py").write_text(TYPES_MODULE)
    for name, source in BAD_MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    out = run_serve(*args, cwd=tmp_path, **env)
    assert out.returncode == USAGE_ERROR, out.stdout + out.stderr
    assert out.stderr.startswith("taskrunner serve: "), out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert words in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_serve_refuses_an_entry_point_that_fails_to_load(tmp_path):
    (tmp_path / "lost_tasks.py").write_text("import not_installed_anywhere\n")
    install_distribution(tmp_path, "lost-tasks", {"lost": "lost_tasks:TYPES"})
    out = run_serve(cwd=tmp_path, PYTHONPATH=with_path(tmp_path))
    assert out.returncode == USAGE_ERROR, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert "entry point lost = lost_tasks:TYPES of lost-tasks 1.0" in out.stderr
    assert "No module named 'not_installed_anywhere'" in out.stderr
    # Turned off, the entry points are not even loaded: the fake types are served.
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    for switch, env in ((["--no-entry-points"], {}), ([], {"TASKRUNNER_ENTRY_POINTS": "0"})):
        process = ServerProcess(command + switch, cwd=str(tmp_path), **env)
        try:
            types = requests.get(f"{process.url}/api/task-types", timeout=10).json()
            assert [t["name"] for t in types["task_types"]] == list(default_task_types())
        finally:
            process.stop()


def wait_until_done(url: str, task: dict) -> dict:
    status: dict = {}

    def done() -> bool:
        nonlocal status
        status = requests.get(f"{url}/api/tasks/{task['id']}", timeout=10).json()
        return status["done"]

    assert wait_for(done, WAIT), status
    return status


def test_serve_types_answers_a_submit_of_a_type_of_ones_own(tmp_path):
    (tmp_path / "rectangles.py").write_text(TYPES_MODULE)
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    process = ServerProcess(command + ["--types", "rectangles:TASK_TYPES"], cwd=str(tmp_path))
    try:
        assert "task types from rectangles:TASK_TYPES: area" in process.log()
        types = requests.get(f"{process.url}/api/task-types", timeout=10).json()["task_types"]
        assert [(t["name"], t["input_schema"]) for t in types] == [("area", SIDES)]
        body = {"type": "area", "input": {"width": 6, "height": 7}}
        task = requests.post(f"{process.url}/api/tasks", json=body, timeout=10).json()
        assert wait_until_done(process.url, task)["result"] == 42
        body["input"] = {"width": 6, "height": -1}
        refused = requests.post(f"{process.url}/api/tasks", json=body, timeout=10)
        assert invalid_names(refused) == {"input/height"}
    finally:
        process.stop()


def test_serve_offers_the_types_of_an_installed_distribution(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "squares_plugin.py").write_text(
        "class Square:\n"
        "    def __init__(self, input): self.input = input\n"
        "    def run(self): return self.input ** 2\n"
        "    def get_output(self): return None\n"
        "TYPES = {'square': Square}\n"
    )
    install_distribution(site, "squares-plugin", {"squares": "squares_plugin:TYPES"})
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    process = ServerProcess(command, cwd=str(tmp_path), PYTHONPATH=with_path(site))
    try:
        types = requests.get(f"{process.url}/api/task-types", timeout=10).json()["task_types"]
        assert [t["name"] for t in types] == ["square"]
        task = requests.post(
            f"{process.url}/api/tasks", json={"type": "square", "input": 9}, timeout=10
        ).json()
        assert wait_until_done(process.url, task)["result"] == 81
    finally:
        process.stop()
