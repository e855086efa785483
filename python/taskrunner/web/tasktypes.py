"""The registry of task types a client may ask for by name.

The server's owner builds it in Python, mapping names to factories:
``factory(input)`` or, when the factory takes a ``wait`` parameter,
``factory(input, wait=wait)``; either returns a task object. A client only
ever picks a name and sends JSON data: nothing it sends is imported,
evaluated or unpickled.

With a journal, a task is re-created after a restart from its recipe, the
data the client sent (``{"type", "input", "wait"}``) and the class of the
task the factory made (``"class"``, a name compared, never imported), by
the same factory: ``TaskTypes.recreate`` is the runner's ``recreate``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling, gen_task
from taskrunner.web.problems import UNKNOWN_TASK_TYPE, Problem, invalid_params

TaskFactory = Callable[..., Any]
# What the journal keeps to re-create an HTTP task: ``recipe(...)``.
Recipe = dict[str, Any]
RECIPE_KEYS = ("type", "input", "wait", "class")
# How often a factory that draws at random (``fake``) is asked again for a
# task of the class it first made: each try at even odds misses 2**-64 of the time.
MAX_DRAWS = 64


def default_task_types() -> dict[str, TaskFactory]:
    """The fake tasks: ``fake`` (either kind at random), ``fake_blocking``, ``fake_polling``."""
    return {"fake": gen_task, "fake_blocking": FakeTaskBlocking, "fake_polling": FakeTaskPolling}


def _takes_wait(factory: TaskFactory) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "wait" or p.kind is p.VAR_KEYWORD for p in parameters)


def _summary(factory: TaskFactory) -> str:
    doc = (inspect.getdoc(factory) or "").strip()
    # Docstrings mark code with ``double backquotes``; a page shows them as noise.
    return doc.splitlines()[0].replace("``", "") if doc else ""


@dataclass(frozen=True)
class TaskType:
    """One entry of the registry."""

    name: str
    factory: TaskFactory
    takes_wait: bool
    description: str

    def build(self, input: Any, wait: Optional[float]) -> Any:
        """A new task object for ``input``.

        Raises:
            Problem: 400 when ``wait`` is given to a type without one, or the
                factory rejects the input with ``TypeError`` or ``ValueError``.
        """
        if wait is not None and not self.takes_wait:
            raise invalid_params({"wait": f"task type {self.name!r} takes no wait"}, where="body")
        try:
            return self.factory(input) if wait is None else self.factory(input, wait=wait)
        except (TypeError, ValueError) as error:
            reason = f"rejected by task type {self.name!r}: {error}"
            raise invalid_params({"input": reason}, where="body") from None

    def describe(self) -> dict[str, Any]:
        """The JSON description a client sees."""
        return {"name": self.name, "description": self.description, "takes_wait": self.takes_wait}


class TaskTypes:
    """Task types by name, fixed when the app is created."""

    def __init__(self, factories: Mapping[str, TaskFactory]) -> None:
        self._types: dict[str, TaskType] = {}
        for name, factory in factories.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a task type name must be a non-empty string, got {name!r}")
            if not callable(factory):
                raise TypeError(f"the factory of task type {name!r} is not callable")
            self._types[name] = TaskType(name, factory, _takes_wait(factory), _summary(factory))

    def names(self) -> list[str]:
        """The names, in the order the owner gave them."""
        return list(self._types)

    def get(self, name: str) -> TaskType:
        """The task type called ``name``.

        Raises:
            Problem: 404 for a name not in the registry.
        """
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(self._types) or "none"
            raise Problem(
                404, f"no task type {name!r}; known types: {known}", type=UNKNOWN_TASK_TYPE
            ) from None

    def describe(self) -> list[dict[str, Any]]:
        """Every task type as JSON."""
        return [task_type.describe() for task_type in self._types.values()]

    def recreate(self, recipe: Any) -> Any:
        """The task a recipe stands for, after a restart: the runner's ``recreate``.

        The factory is asked again until it makes a task of the recipe's
        class: one that draws at random (``fake``) would otherwise give a
        polling task where the journal knows a blocking one.

        Raises:
            ValueError: for a recipe that is not one, names a type no longer
                registered, or whose input the factory now rejects; or when
                the factory no longer makes a task of the recipe's class.
        """
        if not isinstance(recipe, dict) or set(recipe) != set(RECIPE_KEYS):
            raise ValueError(f"not a task recipe: {recipe!r}")
        try:
            task_type = self.get(recipe["type"])
            for _ in range(MAX_DRAWS):
                task = task_type.build(recipe["input"], recipe["wait"])
                if class_name(task) == recipe["class"]:
                    return task
        except Problem as problem:
            reasons = [p["reason"] for p in problem.extensions.get("invalid_params", ())]
            raise ValueError("; ".join(reasons) or problem.detail) from None
        raise ValueError(
            f"task type {recipe['type']!r} no longer makes a {recipe['class']} "
            f"(it made a {class_name(task)})"
        )


def class_name(task: Any) -> str:
    """The module and qualified name of a task's class."""
    cls = type(task)
    return f"{cls.__module__}.{cls.__qualname__}"


def recipe(type: str, input: Any, wait: Optional[float], task: Any) -> Recipe:
    """What rebuilds ``task`` through the registry: its type's name, input and wait,
    and the class of the task the factory made."""
    return {"type": type, "input": input, "wait": wait, "class": class_name(task)}
