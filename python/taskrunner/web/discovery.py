"""Finding task types: ``module:ATTRIBUTE`` names, and installed packages' entry points.

``serve --types imaging.tasks:TASK_TYPES`` (or ``TASKRUNNER_TYPES``) imports
``imaging.tasks`` and serves the registry in its ``TASK_TYPES``. An installed
package may offer a registry too, in the ``taskrunner.task_types`` entry-point
group of its ``pyproject.toml``::

    [project.entry-points."taskrunner.task_types"]
    imaging = "imaging.tasks:TASK_TYPES"

A registry is what ``create_app(task_types=...)`` takes: factories or
``TaskType`` declarations by name, or a list of declarations. A failure is a
``ValueError`` of one line naming the source and what is wrong with it: a
server refuses to start rather than serve some of its types.

The ``command`` type (``taskrunner.web.commands``) is served beside them when
the server's owner allows programs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import Any

from taskrunner.web.commands import COMMAND, command_task_type
from taskrunner.web.settings import Settings
from taskrunner.web.tasktypes import TaskType, TaskTypes, declarations, default_task_types

GROUP = "taskrunner.task_types"


@dataclass(frozen=True)
class Found:
    """The task types one source declared."""

    source: str
    task_types: list[TaskType]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_attribute(spec: str) -> Any:
    """The object ``module:attribute`` names (the attribute may be dotted).

    Raises:
        ValueError: for a name not of that form, a module that fails to
            import (whatever it raises), or a missing attribute.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name.strip() or not attribute.strip():
        raise ValueError(f"{spec!r} is not MODULE:ATTRIBUTE (such as imaging.tasks:TASK_TYPES)")
    try:
        target = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # whatever the module's code raises
        raise ValueError(f"{spec}: cannot import {module_name}: {_one_line(error)}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{spec}: {module_name} has no attribute {attribute}") from None
        except Exception as error:  # a module's __getattr__ or a property that fails
            raise ValueError(f"{spec}: cannot read {attribute}: {_one_line(error)}") from None
    return target


def _entry_point_loader(entry_point: metadata.EntryPoint) -> tuple[str, Callable[[], Any]]:
    dist = getattr(entry_point, "dist", None)
    offered_by = f" of {dist.name} {dist.version}" if dist is not None else ""
    label = f"entry point {entry_point.name} = {entry_point.value}{offered_by}"

    def load() -> Any:
        try:
            return entry_point.load()
        except (Exception, SystemExit) as error:
            raise ValueError(f"{label} (group {GROUP}): {_one_line(error)}") from None

    return label, load


def _sources(specs: Sequence[str], entry_points: bool) -> list[tuple[str, Callable[[], Any]]]:
    sources: list[tuple[str, Callable[[], Any]]] = [
        (spec, partial(load_attribute, spec)) for spec in specs
    ]
    if entry_points:
        sources += [_entry_point_loader(ep) for ep in metadata.entry_points(group=GROUP)]
    return sources


def find_task_types(specs: Sequence[str], entry_points: bool = True) -> list[Found]:
    """The task types of each ``module:ATTRIBUTE`` in ``specs`` then, when
    ``entry_points``, of each entry point of the ``taskrunner.task_types`` group.

    A registry reached twice (named by ``specs`` and offered by its
    package's entry point) counts once.

    Raises:
        ValueError: naming the source, for one that cannot be loaded, a
            registry of the wrong shape, a non-callable factory, a bad
            schema, or a task type name declared twice.
    """
    found: list[Found] = []
    registries: list[Any] = []
    declared_by: dict[str, str] = {}
    for source, load in _sources(specs, entry_points):
        registry = load()
        if any(registry is seen for seen in registries):
            continue
        registries.append(registry)
        try:
            task_types = declarations(registry)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {' '.join(str(error).split())}") from None
        for task_type in task_types:
            if task_type.name in declared_by:
                first = declared_by[task_type.name]
                where = f"twice in {source}" if first == source else f"by {first} and by {source}"
                raise ValueError(f"task type {task_type.name!r} is declared {where}")
            declared_by[task_type.name] = source
        found.append(Found(source, task_types))
    return found


def task_types_from(found: list[Found], commands: Sequence[str] = ()) -> TaskTypes:
    """The registry of what was found (the fake tasks when no source was found),
    and the ``command`` type when ``commands`` names programs to allow.

    Raises:
        ValueError: one line, for an entry of ``commands`` that is no
            executable file, or a type called ``command`` found beside it.
    """
    if not found:
        task_types = declarations(default_task_types())
    else:
        task_types = [task_type for each in found for task_type in each.task_types]
    if commands:
        for each in found:
            if any(task_type.name == COMMAND for task_type in each.task_types):
                raise ValueError(
                    f"task type {COMMAND!r} is declared by {each.source} and by the allowed "
                    "commands (TASKRUNNER_ALLOW_COMMANDS, --allow-command)"
                )
        task_types.append(command_task_type(commands))
    return TaskTypes(task_types)


def configured_task_types(settings: Settings) -> TaskTypes:
    """The task types ``TASKRUNNER_TYPES``, ``TASKRUNNER_ENTRY_POINTS`` and
    ``TASKRUNNER_ALLOW_COMMANDS`` call for.

    Raises:
        ValueError: as ``find_task_types`` and ``task_types_from``.
    """
    found = find_task_types(settings.type_sources, settings.entry_points)
    return task_types_from(found, settings.allow_commands)
