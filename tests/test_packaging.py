"""The package as shipped: type stubs true to the built module, the command line, and the
packaging metadata and docs held to what CI builds and tests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import taskrunner

try:
    import tomllib
except ImportError:  # Python < 3.11; pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.slow
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


def normalized(name: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_distribution_is_not_the_unrelated_taskrunner_on_the_index():
    # `taskrunner` on the index is another project (0.3.0, 2017): installing it by that
    # name would bring in that one. The import name stays `taskrunner`.
    assert normalized(PROJECT["name"]) == "taskrunner-rs"
    assert PYPROJECT["tool"]["maturin"]["module-name"] == "taskrunner._core"


def test_requires_python_is_the_abi3_floor_of_the_extension():
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    floors = re.findall(r'"abi3-py3(\d+)"', cargo)
    assert len(floors) == 1, "Cargo.toml names one abi3-py3X feature"
    assert PROJECT["requires-python"] == f">=3.{floors[0]}"


def test_classifiers_name_the_pythons_ci_tests_the_wheel_on():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    tested = re.search(r'^PYTHONS="([^"]+)"$', ci, re.M)
    assert tested, ".ci/run lists the CPython versions it installs the wheel on in PYTHONS"
    versions = tested.group(1).split()
    prefix = "Programming Language :: Python :: 3."
    listed = [c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if c.startswith(prefix)]
    assert sorted(listed, key=lambda v: int(v[2:])) == versions
    assert PROJECT["requires-python"] == f">={versions[0]}"


def test_classifiers_say_what_is_shipped():
    classifiers = set(PROJECT["classifiers"])
    assert PROJECT["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert "Programming Language :: Python :: Implementation :: CPython" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers  # the platform CI builds on
    assert "Typing :: Typed" in classifiers
    assert (ROOT / "python" / "taskrunner" / "py.typed").exists()


def test_readme_keeps_its_two_commands_verbatim():
    assert "pip install . && python -m taskrunner demo" in README
    assert "pip install '.[web,test]' && python -m pytest" in README


def shell_lines(text: str) -> list[str]:
    """The lines inside the fenced code blocks of a Markdown text."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            lines.append(line)
    return lines


def installed_names(line: str) -> list[str]:
    """What each `pip install` on a shell line installs, as written."""
    names = []
    for command in re.split(r"&&|;|\|", line.split("#", 1)[0]):
        if "pip install" not in command:
            continue
        words = shlex.split(command.rstrip(" \\"))
        if "pip" in words and words[words.index("pip") + 1 :][:1] == ["install"]:
            names += [w for w in words[words.index("pip") + 2 :] if not w.startswith("-")]
    return names


def test_every_install_line_names_the_checkout_or_the_new_distribution():
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *DOCS]
    seen = 0
    for page in pages:
        for line in shell_lines(page.read_text(encoding="utf-8")):
            for name in installed_names(line):
                seen += 1
                project = re.match(r"[A-Za-z0-9._-]*", name).group(0)
                assert normalized(project) != "taskrunner", f"{page.name}: {line}"
                if normalized(project).startswith("taskrunner"):
                    assert normalized(project) == normalized(PROJECT["name"]), line
    assert seen >= 3


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    nav = nav[: re.search(r"^\S", nav[5:], re.M).start() + 5]
    entries = re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, re.M)
    assert len(entries) == len(set(entries))
    assert sorted(entries) == sorted(p.name for p in DOCS)
    assert "design.md" in entries


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (ROOT / target.split("#")[0]).exists(), target


def test_docs_extra_builds_the_site():
    extra = PROJECT["optional-dependencies"]["docs"]
    assert [normalized(re.match(r"[\w.-]+", r).group(0)) for r in extra] == [
        "mkdocs",
        "mkdocs-material",
    ]


@pytest.mark.skipif(
    not os.environ.get("TASKRUNNER_WHEEL_TEST"), reason="only where CI tests an installed wheel"
)
def test_the_installed_wheel_is_what_is_tested():
    package = Path(taskrunner.__file__).resolve()
    assert package.is_relative_to(Path(sys.prefix).resolve()), package
    assert not package.is_relative_to(ROOT), package
    assert taskrunner._core.__file__.endswith(".abi3.so")


def test_the_module_version_is_the_packages():
    import taskrunner

    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    crate = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert taskrunner.__version__ == crate == PROJECT["version"]
