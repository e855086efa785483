"""The Rust core's modules depend on each other one way: no circle."""

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _uses() -> dict[str, set[str]]:
    """Each module's `crate::` imports, leaving out its unit tests."""
    graph = {}
    for path in SRC.glob("*.rs"):
        code = path.read_text().split("#[cfg(test)]")[0]
        graph[path.stem] = set(re.findall(r"crate::(\w+)", code)) - {path.stem}
    return graph


@pytest.mark.skipif(not SRC.is_dir(), reason="the Rust sources are not here")
def test_the_module_graph_has_no_circle():
    graph = _uses()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, "import circle: " + " -> ".join([*path, module])
        if module in done:
            return
        for used in graph.get(module, ()):
            visit(used, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


@pytest.mark.skipif(not SRC.is_dir(), reason="the Rust sources are not here")
def test_the_engine_knows_nothing_of_the_python_faces():
    assert not _uses()["engine"] & {"runner", "handle", "wait", "status"}
    assert _uses()["record"] <= {"policy", "names", "limits", "retry", "attempts", "siblings"}
    assert not _uses()["limits"] & {"record", "engine"}
