"""The registry of task types a client may ask for by name.

The server's owner builds it in Python, from plain factories by name or
from ``TaskType`` declarations, which add a JSON Schema for the input and a
description: ``factory(input)`` or, when the factory takes a ``wait``
parameter, ``factory(input, wait=wait)``; either returns a task object. A
client only ever picks a name and sends JSON data: nothing it sends is
imported, evaluated or unpickled.

Each task carries its recipe, the data the client sent (``{"type",
"input", "wait", "timeout"}``) and the class of the task the factory made
(``"class"``, a name compared, never imported). With a journal, a task is
re-created from it after a restart, by the same factory:
``TaskTypes.recreate`` is the runner's ``recreate``. With or without one,
``POST /api/tasks/{id}/again`` makes a new task from it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import referencing
from jsonschema import Draft202012Validator, SchemaError, validators

from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling, gen_task
from taskrunner.web.problems import UNKNOWN_TASK_TYPE, Problem, invalid_params

TaskFactory = Callable[..., Any]
# A JSON Schema: an object, or true (anything) or false (nothing).
Schema = Union[dict[str, Any], bool]
# What the journal keeps to re-create an HTTP task: ``recipe(...)``.
Recipe = dict[str, Any]
RECIPE_KEYS = ("type", "input", "wait", "timeout", "class")
# Recipes written before the timeout was kept: still re-created after a restart.
RECIPE_KEYS_WITHOUT_TIMEOUT = ("type", "input", "wait", "class")
# How often a factory that draws at random (``fake``) is asked again for a
# task of the class it first made: each try at even odds misses 2**-64 of the time.
MAX_DRAWS = 64
# The most failing places of an input a 400 lists, and the longest reason:
# a reason quotes the value, which may be most of a 64 KiB body.
MAX_INPUT_ERRORS = 20
MAX_REASON_CHARS = 300
# A schema's ``$ref`` resolves within the schema (and to the drafts' own
# meta-schemas), never over the network while a request waits.
NO_RETRIEVAL = referencing.Registry()


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


def _validator(name: str, schema: Schema) -> Any:
    """A validator for ``schema``, checked against its draft's meta-schema.

    The draft is the one ``$schema`` names, 2020-12 when it names none.
    """
    if not isinstance(schema, (dict, bool)):
        raise TypeError(
            f"the schema of task type {name!r} must be a JSON Schema (a dict or a bool), "
            f"not {type(schema).__name__}"
        )
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the schema of task type {name!r} is not JSON: {error}") from None
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as error:
        raise ValueError(
            f"the schema of task type {name!r} is not a valid JSON Schema: "
            f"at {error.json_path}: {error.message}"
        ) from None
    return cls(schema, registry=NO_RETRIEVAL)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _pointer(path: Iterable[Any]) -> str:
    """``input`` and the JSON Pointer (RFC 6901) of a place inside it: ``input/sizes/0``."""
    steps = (str(step).replace("~", "~0").replace("/", "~1") for step in path)
    return "/".join(["input", *steps])


def _place(error: Any) -> list[tuple[bool, Any]]:
    """A sort key for a validation error's place: indexes and keys never compared."""
    return [(isinstance(step, str), step) for step in error.absolute_path]


@dataclass(frozen=True)
class TaskType:
    """A task type: what clients ask for by name, and what it accepts.

    Args:
        name: what a client puts in a submission's ``type``.
        factory: ``factory(input)``, or ``factory(input, wait=...)`` when it
            takes a ``wait`` parameter, returning a task object; a
            ``TypeError`` or ``ValueError`` from it rejects the input (400).
        schema: a JSON Schema the input must match before the factory sees
            it (draft 2020-12 unless its ``$schema`` names another); None
            takes any JSON.
        description: one line for clients; by default the first line of the
            factory's docstring.

    Raises:
        ValueError: for an empty name or a schema that is not a valid JSON Schema.
        TypeError: for a factory that is not callable, or a schema that is
            neither a dict nor a bool.
    """

    name: str
    factory: TaskFactory
    schema: Optional[Schema] = None
    description: Optional[str] = None
    takes_wait: bool = field(init=False, repr=False, compare=False)
    _validator: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a task type name must be a non-empty string, got {self.name!r}")
        if not callable(self.factory):
            raise TypeError(f"the factory of task type {self.name!r} is not callable")
        if self.description is not None and not isinstance(self.description, str):
            raise TypeError(f"the description of task type {self.name!r} must be a string")
        validator = None if self.schema is None else _validator(self.name, self.schema)
        # Frozen: derived fields are set past the dataclass's guard, once.
        object.__setattr__(self, "takes_wait", _takes_wait(self.factory))
        object.__setattr__(self, "_validator", validator)
        if self.description is None:
            object.__setattr__(self, "description", _summary(self.factory))

    def check(self, input: Any) -> None:
        """Holds ``input`` to the schema.

        Raises:
            Problem: 400 naming each failing place of the input (``input``,
                ``input/size``, ...) and why, at most 20.
        """
        if self._validator is None:
            return
        reasons: dict[str, str] = {}
        for error in sorted(self._validator.iter_errors(input), key=_place):
            name = _pointer(error.absolute_path)
            reason = _shorten(error.message)
            reasons[name] = f"{reasons[name]}; {reason}" if name in reasons else reason
            if len(reasons) == MAX_INPUT_ERRORS:
                break
        if reasons:
            raise invalid_params(reasons, where="body")

    def build(self, input: Any, wait: Optional[float]) -> Any:
        """A new task object for ``input``.

        Raises:
            Problem: 400 when ``wait`` is given to a type without one, the
                input does not match the schema, or the factory rejects it
                with ``TypeError`` or ``ValueError``.
        """
        if wait is not None and not self.takes_wait:
            raise invalid_params({"wait": f"task type {self.name!r} takes no wait"}, where="body")
        self.check(input)
        try:
            return self.factory(input) if wait is None else self.factory(input, wait=wait)
        except (TypeError, ValueError) as error:
            reason = f"rejected by task type {self.name!r}: {error}"
            raise invalid_params({"input": reason}, where="body") from None

    def describe(self) -> dict[str, Any]:
        """The JSON description a client sees."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.schema,
            "takes_wait": self.takes_wait,
        }


# The fake tasks as declarations: ``--types taskrunner.web:FAKE_TASK_TYPES``
# serves them next to types of one's own.
FAKE_TASK_TYPES = tuple(TaskType(name, factory) for name, factory in default_task_types().items())

# A registry: factories or declarations by name, or a list of declarations.
TaskTypeRegistry = Union[Mapping[str, Union[TaskFactory, TaskType]], Sequence[TaskType]]


def declarations(registry: Any) -> list[TaskType]:
    """The task types of a registry, in its order.

    Raises:
        TypeError: for a registry that is neither a mapping nor a list of
            ``TaskType``, or a factory that is not callable.
        ValueError: for a bad name, a mapping's key that is not its
            declaration's name, or a bad schema.
    """
    if isinstance(registry, Mapping):
        found = []
        for name, entry in registry.items():
            if isinstance(entry, TaskType):
                if entry.name != name:
                    raise ValueError(f"the key {name!r} holds the task type {entry.name!r}")
                found.append(entry)
            else:
                found.append(TaskType(name, entry))
        return found
    if isinstance(registry, (list, tuple)):
        for entry in registry:
            if not isinstance(entry, TaskType):
                raise TypeError(
                    f"a list of task types holds {entry!r}, which is not a TaskType "
                    "(a list names none of its factories: declare TaskType(name, factory))"
                )
        return list(registry)
    raise TypeError(
        "task types must be a mapping of names to factories or TaskType, or a list of "
        f"TaskType, not {type(registry).__name__}"
    )


class TaskTypes:
    """Task types by name, fixed when the app is created.

    Args:
        registry: factories or ``TaskType`` declarations by name, or a list
            of declarations.

    Raises:
        ValueError: for a name given twice, and as ``declarations``.
        TypeError: as ``declarations``.
    """

    def __init__(self, registry: TaskTypeRegistry) -> None:
        self._types: dict[str, TaskType] = {}
        for task_type in declarations(registry):
            if task_type.name in self._types:
                raise ValueError(f"task type {task_type.name!r} is declared twice")
            self._types[task_type.name] = task_type

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
        if not is_recipe(recipe):
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


def recipe(
    type: str, input: Any, wait: Optional[float], task: Any, timeout: Optional[float] = None
) -> Recipe:
    """What rebuilds ``task`` through the registry: its type's name, input, wait
    and timeout, and the class of the task the factory made."""
    return {
        "type": type,
        "input": input,
        "wait": wait,
        "timeout": timeout,
        "class": class_name(task),
    }


def is_recipe(value: Any) -> bool:
    """True for a recipe as ``recipe`` makes one (or as it made one before it kept the timeout)."""
    return isinstance(value, dict) and set(value) in (
        set(RECIPE_KEYS),
        set(RECIPE_KEYS_WITHOUT_TIMEOUT),
    )
