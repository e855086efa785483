"""The server's settings: from the app's config, else the environment, else defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Optional

from taskrunner.web.limits import parse_limits

ENV_PREFIX = "TASKRUNNER_"
# The longest name of a token in the audit log.
MAX_LABEL_CHARS = 64
# The journal "file" that means no journal, as SQLite names an in-memory database.
MEMORY = ":memory:"


@dataclass(frozen=True)
class Settings:
    """What the owner of a server can tune.

    Each is read from the config key, or else the environment variable, named
    ``TASKRUNNER_`` plus the field's name in capitals (``TASKRUNNER_TOKEN``).

    Attributes:
        token: the bearer token that may do everything; unset or empty for
            none. Unset, ``serve`` on an address beyond this machine makes
            one up for the run and prints it (see ``no_auth``).
        token_label: the name the audit log gives the ``token``'s requests.
        read_token: a second bearer token that may only read: lists,
            statuses, events, stats, the dashboard; a change answers 403.
            Needs ``token`` set.
        read_token_label: the name the audit log gives the ``read_token``.
        no_auth: serve with no token even on an address beyond this
            machine, where anyone who reaches the port may submit and cancel
            tasks (``serve`` warns at start).
        protect_metrics: ``/metrics`` and ``/healthz`` need a token too
            (either one); by default they are open, for scrapers and load
            balancers.
        proxy: how many reverse proxies in front to trust: their
            ``X-Forwarded-For``, ``-Proto``, ``-Host`` and ``-Port`` headers
            give the client's address and the URL it used (for ``Location``
            headers and the OpenAPI document's server). 0 trusts none.
        max_unfinished: the most pending and running tasks; a submission past
            it gets 503.
        max_event_streams: the most open ``/api/events`` connections (each
            holds a server thread); one past it gets 503.
        retain_finished: how many finished tasks the app's own runner
            keeps in memory; older ones are forgotten there (with a journal,
            they are read back from it, for 7 days). 0 keeps them all. A
            runner given to ``create_app`` keeps its own retention.
        retain_seconds: how long the app's own runner keeps a finished task
            in memory. 0 keeps it for ever.
        heartbeat: seconds of quiet after which an event stream sends a comment.
        max_page: the largest ``limit`` of ``GET /api/tasks``.
        db: the journal of the app's own runner, an SQLite file that keeps
            every task across restarts; empty or ``:memory:`` for none (tasks
            then live in memory only). Unset, ``create_app`` keeps none and
            ``serve`` keeps ``taskrunner.db``. A runner given to
            ``create_app`` keeps its own journal.
        commit_timeout: seconds a submission waits for its task to be
            committed to the journal before it gets 503 instead of 202.
        cluster: where the app's own runner runs its tasks: a Dask
            scheduler's address (``tcp://host:8786``) or ``local`` for a
            cluster of worker processes on this machine; unset or empty for
            this process. Needs the ``[dask]`` extra, and the task types
            importable on the workers. A runner given to ``create_app``
            keeps its own.
        types: where the app's task types come from: ``module:ATTRIBUTE``
            names, separated by commas or whitespace, each a registry (a
            mapping of names to factories or ``TaskType``, or a list of
            ``TaskType``). Unset or empty, and with no entry point offering
            types, the fake tasks. Task types given to ``create_app`` are
            served as given.
        entry_points: load the task types that installed packages offer in
            the ``taskrunner.task_types`` entry-point group (true or false).
        allow_commands: the programs clients may run as the ``command`` task
            type, without a shell, beside the other types: absolute paths or
            names looked up on PATH at start, separated by the path separator
            (``:``, as in PATH); in the app's config, a list too. Unset or
            empty, no ``command`` type. Its arguments reach the program
            unfiltered: allow only programs safe to hand to clients.
        limits: the limits the app's own runner starts with, which tasks
            name in their ``limit``: ``LABEL=N`` (at most N tasks at once)
            or ``LABEL=COUNT/PER`` (at most COUNT starts in any PER, such as
            ``1s``, ``5m`` or ``1h``), separated by commas or whitespace
            (``gpu=2,api=100/1s``). ``PUT /api/limits/LABEL`` changes them at
            run time. A runner given to ``create_app`` keeps its own.
    """

    token: Optional[str] = None
    token_label: str = "token"
    read_token: Optional[str] = None
    read_token_label: str = "read_token"
    no_auth: bool = False
    protect_metrics: bool = False
    proxy: int = 0
    max_unfinished: int = 10_000
    max_event_streams: int = 8
    retain_finished: int = 10_000
    retain_seconds: float = 3600.0
    heartbeat: float = 15.0
    max_page: int = 1000
    db: Optional[str] = None
    commit_timeout: float = 5.0
    cluster: Optional[str] = None
    types: Optional[str] = None
    entry_points: bool = True
    allow_commands: tuple[str, ...] = ()
    limits: Optional[str] = None

    @classmethod
    def load(cls, config: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from ``config``, falling back on ``environ``.

        Raises:
            ValueError: for a value of the wrong type or out of range.
        """
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = ENV_PREFIX + field.name.upper()
            if key in config:
                raw = config[key]
            elif key in environ:
                raw = environ[key]
            else:
                continue
            values[field.name] = _convert(key, raw, field.default)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raises ValueError for a setting out of range."""
        if self.read_token and not self.token:
            raise ValueError(
                f"{ENV_PREFIX}READ_TOKEN needs {ENV_PREFIX}TOKEN too: without it, "
                "anyone could change what the read token may only read"
            )
        if self.read_token and self.read_token == self.token:
            raise ValueError(f"{ENV_PREFIX}READ_TOKEN must differ from {ENV_PREFIX}TOKEN")
        for name in ("token_label", "read_token_label"):
            label = getattr(self, name)
            if not (0 < len(label) <= MAX_LABEL_CHARS and label.isprintable()):
                length = f"1 to {MAX_LABEL_CHARS}"
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()} must be {length} printable characters"
                )
        if self.proxy < 0:
            raise ValueError(f"{ENV_PREFIX}PROXY must be >= 0")
        for name in ("max_unfinished", "max_event_streams", "max_page"):
            if getattr(self, name) < 1:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be >= 1")
        for name in ("retain_finished", "retain_seconds"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be >= 0")
        for name in ("heartbeat", "commit_timeout"):
            if not getattr(self, name) > 0:  # NaN too
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be > 0")
        try:
            parse_limits(self.limits or "")
        except ValueError as error:
            raise ValueError(f"{ENV_PREFIX}LIMITS: {error}") from None

    def runner_options(self) -> dict[str, Any]:
        """The retention, journal, cluster and limits arguments of the ``TaskRunner`` an app makes
        for itself."""
        options: dict[str, Any] = {
            "retain_finished": self.retain_finished or None,
            "retain_seconds": self.retain_seconds or None,
            "journal": self.journal,
        }
        if self.cluster:
            options["cluster"] = self.cluster
        if self.limits:
            options["limits"] = parse_limits(self.limits)
        return options

    @property
    def type_sources(self) -> list[str]:
        """The ``module:ATTRIBUTE`` names of ``types``, in order."""
        return (self.types or "").replace(",", " ").split()

    @property
    def journal(self) -> Optional[str]:
        """The journal's path; None for none (``db`` unset, empty or ``:memory:``)."""
        return None if self.db in (None, "", MEMORY) else self.db


# How a switch may be spelled in the environment.
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def _convert(key: str, raw: Any, default: Any) -> Any:
    if isinstance(default, tuple):  # the programs: paths, so split as PATH is
        if isinstance(raw, str):
            return tuple(name for name in raw.split(os.pathsep) if name)
        if isinstance(raw, (list, tuple)) and all(isinstance(name, str) for name in raw):
            return tuple(name for name in raw if name)
        raise ValueError(f"{key} must be a string or a list of strings, got {raw!r}")
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in TRUE + FALSE:
            return str(raw).strip().lower() in TRUE
        raise ValueError(f"{key} must be true or false (or 1 or 0), got {raw!r}")
    if default is None:  # the tokens, journal, cluster, types, limits: "" means none
        return str(raw) if raw else None
    try:
        return type(default)(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a {type(default).__name__}, got {raw!r}") from None
