"""The ``command`` task type: programs of an allow-list, run without a shell.

It is served only when the server's owner names programs
(``serve --allow-command PROGRAM`` or ``TASKRUNNER_ALLOW_COMMANDS``). A
client sends ``{"args": [program, arg, ...], "cwd": ...}``; the task is a
``SubprocessTask`` and its result that task's output dict.

A program is allowed when it is the same file as an entry of the list
(``os.path.realpath``) called by the same name: a program may act on the
name it is called by (busybox is ``ls`` or ``sh`` by name), so a link of
another name to an allowed file is another program. It then runs by the
entry's path, never by the client's spelling, so a client chooses which
allowed program runs, never where from (a Python in another virtual
environment is the same file with other packages).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from taskrunner.tasks import SubprocessTask
from taskrunner.web.problems import COMMAND_NOT_ALLOWED, Problem
from taskrunner.web.tasktypes import TaskType, TaskTypes

COMMAND = "command"
NO_NUL = "^[^\\u0000]*$"
# What a client may name: an absolute path, or a bare name looked up on PATH.
# A relative path would be found from the client's cwd, which it also picks.
ABSOLUTE_OR_BARE = "^(/[^\\u0000]*|[^/\\u0000]*)$"


def _schema(example: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "args": {
                "type": "array",
                "description": "the program, then its arguments, passed as they are (no shell)",
                "minItems": 1,
                "prefixItems": [
                    {
                        "type": "string",
                        "minLength": 1,
                        "pattern": ABSOLUTE_OR_BARE,
                        "description": "an absolute path, or a name looked up on the "
                        "server's PATH; it must be on the server's allow-list",
                    }
                ],
                "items": {"type": "string", "pattern": NO_NUL},
            },
            "cwd": {
                "type": "string",
                "minLength": 1,
                "pattern": NO_NUL,
                "description": "the directory to run it in (default: the server's)",
            },
        },
        "required": ["args"],
        "additionalProperties": False,
        "examples": [{"args": [example, "--version"]}],
    }


def _is_path(name: str) -> bool:
    return os.sep in name or (os.altsep is not None and os.altsep in name)


def find_program(name: str) -> Optional[str]:
    """The absolute path of the executable file ``name`` names: a path as
    given (made absolute), a bare name on PATH; None when there is none."""
    if _is_path(name):
        path = os.path.abspath(name)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    found = shutil.which(name)
    return None if found is None else os.path.abspath(found)


@dataclass(frozen=True)
class Program:
    """An allowed program: the path it runs by, and the file that path led to at start."""

    path: str
    real: str

    @property
    def key(self) -> tuple[str, str]:
        """The same file, called by the same name."""
        return (self.real, os.path.basename(self.path))


def _entry(name: str) -> Program:
    """The program an allow-list entry names, found now.

    Raises:
        ValueError: one line, for an entry that names no executable file.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"cannot allow the command {name!r}: not a program's name or path")
    path = find_program(name)
    if path is None:
        if not _is_path(name):
            why = "no executable of that name on PATH"
        elif not os.path.exists(name):
            why = "no such file"
        else:
            why = "not an executable file"
        raise ValueError(f"cannot allow the command {name!r}: {why}")
    return Program(path, os.path.realpath(path))


class AllowList:
    """The programs clients may run, each found once, at start.

    Args:
        names: absolute paths, bare names looked up on PATH now, or paths
            relative to the current directory.

    Raises:
        ValueError: one line naming the first entry that is no executable file.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._programs: dict[tuple[str, str], Program] = {}
        for name in names:
            program = _entry(name)
            self._programs.setdefault(program.key, program)

    def paths(self) -> list[str]:
        """The paths the programs run by, in the order given."""
        return [program.path for program in self._programs.values()]

    def resolve(self, name: str) -> str:
        """The path to run for the program a client names.

        Raises:
            Problem: 403 for a program not on the list, or one whose entry
                leads to another file than it did at start.
        """
        path = find_program(name)
        program = None
        if path is not None:
            program = self._programs.get((os.path.realpath(path), os.path.basename(path)))
        # The list holds what each entry was at start: a link changed since is not trusted.
        if program is None or os.path.realpath(program.path) != program.real:
            # 403, not 400: the request is well formed, the server's policy refuses
            # it, and only its owner can change that. The same words whether the
            # program exists or not: a refusal tells a client nothing of the disk.
            raise Problem(
                403,
                f"the program {name!r} is not on this server's allow-list",
                type=COMMAND_NOT_ALLOWED,
                program=name,
            )
        return program.path


class CommandFactory:
    """Makes the ``SubprocessTask`` of a ``command`` input, once its program is allowed."""

    def __init__(self, allow_list: AllowList) -> None:
        self.allow_list = allow_list

    def __call__(self, input: dict[str, Any]) -> SubprocessTask:
        args = input["args"]
        program = self.allow_list.resolve(args[0])
        return SubprocessTask([program, *args[1:]], cwd=input.get("cwd"))


def command_task_type(programs: Iterable[str]) -> TaskType:
    """The ``command`` task type, running only ``programs``, without a shell.

    Args:
        programs: absolute paths or bare names (looked up on PATH now);
            at least one.

    Raises:
        ValueError: one line, for no programs, or one that is no executable file.
    """
    allow_list = AllowList(programs)
    paths = allow_list.paths()
    if not paths:
        raise ValueError("the command task type needs at least one program to allow")
    return TaskType(
        COMMAND,
        CommandFactory(allow_list),
        schema=_schema(paths[0]),
        description=f"Runs one of these programs, without a shell: {', '.join(paths)}",
    )


def serves_commands(task_types: TaskTypes) -> bool:
    """Whether ``task_types`` has the ``command`` type of this module."""
    return COMMAND in task_types.names() and isinstance(
        task_types.get(COMMAND).factory, CommandFactory
    )
