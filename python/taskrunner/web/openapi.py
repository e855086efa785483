"""The OpenAPI 3.1 document of the HTTP API, as served at ``/api/openapi.json``.

Written by hand next to the views; a test holds every response the server
gives to it, and checks that every response it promises can be produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import taskrunner
from taskrunner import KINDS, STATES
from taskrunner.web.limits import MAX_LIMIT, MAX_PER_SECONDS
from taskrunner.web.submission import (
    IDEMPOTENCY_KEY,
    MAX_ATTEMPTS,
    MAX_BACKOFF_SECONDS,
    MAX_DELAY_SECONDS,
    MAX_KEY_CHARS,
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    MAX_PRIORITY,
    MAX_TASK_ID,
    MAX_TIMEOUT_SECONDS,
    MAX_WAIT_SECONDS,
    MIN_PRIORITY,
    REPLAYED,
)

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str, media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return _json(_ref("Problem"), description, PROBLEM)


_COUNT = {"type": "integer", "minimum": 0}

# A task over HTTP: the status dict (``taskrunner.STATUS_KEYS``, in order),
# with ``result_is_repr`` after ``result``. Every key is required.
TASK_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer", "minimum": 1},
    "name": {"type": "string"},
    "kind": {"enum": [*KINDS, None], "description": "None until known"},
    "state": {"enum": list(STATES)},
    "done": {"type": "boolean", "description": "the state is final"},
    "result": {"description": "the output once succeeded, else null"},
    "result_is_repr": {
        "type": "boolean",
        "description": "true when JSON cannot hold the result: it is then its repr()",
    },
    "error": _nullable(_ref("TaskError")),
    "submitted_at": {"type": "number", "description": "Unix seconds"},
    "started_at": _nullable({"type": "number"}),
    "finished_at": _nullable({"type": "number"}),
    "runtime": _nullable({"type": "number", "minimum": 0}),
    "polls": {
        "type": "integer",
        "minimum": 0,
        "description": "get_output() calls made so far (a blocking task makes none)",
    },
    "attempt": {
        "type": "integer",
        "minimum": 1,
        "description": "1 for a task's first run; counts up when it runs again "
        "(a retry; after a crash, for a durable task; after its cluster worker was "
        "lost). Once final, the number of attempts made",
    },
    "worker": _nullable(
        {
            "type": "string",
            "description": "the cluster worker's address where the task runs or ran; "
            "null for a task run in the runner's own process",
        }
    ),
    "progress": _nullable(_ref("Progress")),
    "priority": {
        "type": "integer",
        "description": "among pending tasks, a higher priority starts first (0 by default)",
    },
    "not_before": _nullable(
        {
            "type": "number",
            "description": "Unix seconds before which the pending task does not start: "
            "its delay, or the back-off before its next attempt; null otherwise",
        }
    ),
    "after": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "description": "ids of the tasks this one starts after (all must succeed)",
    },
    "limit": _nullable(
        {"type": "string", "description": "the label of the limit the task runs under"}
    ),
    "type": _nullable(
        {
            "type": "string",
            "description": "the task type it was submitted as (POST /api/tasks), or the "
            "type= label given to submit() in Python; null otherwise",
        }
    ),
}

# The runner's stats (``taskrunner.STATS_KEYS``, in order) between the counts
# and what the server adds.
STATS_PROPERTIES: dict[str, Any] = {
    "counts": _ref("Counts"),
    **{name: _COUNT for name in ("max_workers", "workers", "workers_busy", "workers_idle")},
    "workers_timed_out": {
        **_COUNT,
        "description": (
            "workers still inside the run() of a task that already timed out (Python "
            "cannot interrupt them); workers_busy does not count them. Absent from "
            "servers whose core does not report it."
        ),
    },
    "workers_attaching": {
        **_COUNT,
        "description": "busy workers that hold a task and wait for the GIL to run it",
    },
    **{name: _COUNT for name in ("queued", "polling", "poller_queue", "polls", "unfinished")},
    "journal": {
        "type": ["string", "null"],
        "enum": ["ok", "degraded", None],
        "description": "the journal's health: degraded while it cannot write (tasks go on "
        "in memory, and their rows are written once it can); null without a journal",
    },
    "journal_problem": {
        "type": ["string", "null"],
        "description": "why the journal is degraded; null when it is not",
    },
    "paused": {
        "type": "boolean",
        "description": "true while the runner starts no task (POST /api/pause); running "
        "tasks go on and submits are accepted",
    },
    "polls_per_second": {"type": "number", "minimum": 0},
    "max_unfinished": _COUNT,
    "event_streams": _COUNT,
    "closed": {"type": "boolean"},
}
OPTIONAL_STATS = {"workers_timed_out"}

# One cluster worker, as ``TaskRunner.workers()`` lists it; the figures after
# ``tasks`` come from the worker's last report (null before its first).
_REPORTED_COUNT = _nullable(_COUNT)
WORKER_PROPERTIES: dict[str, Any] = {
    "address": {"type": "string", "description": "the Dask worker's address"},
    "tasks": {**_COUNT, "description": "this server's unfinished tasks placed on the worker"},
    "running": {**_COUNT, "description": "tasks running there now (of every client)"},
    "threads": {**_REPORTED_COUNT, "description": "taskrunner's pool threads there"},
    "busy": {**_REPORTED_COUNT, "description": "of those, the threads inside a run()"},
    "polling": {**_REPORTED_COUNT, "description": "polling tasks its poller holds"},
    "queued": {**_REPORTED_COUNT, "description": "blocking tasks waiting for a thread"},
    "heartbeat": {
        **_nullable({"type": "number", "minimum": 0}),
        "description": "seconds since the worker last reported (about once a second, once "
        "it has taken a task of this server); null before its first report",
    },
}
CLUSTER = {
    "type": "object",
    "required": ["scheduler", "reachable"],
    "additionalProperties": False,
    "properties": {
        "scheduler": _nullable({"type": "string"}),
        "reachable": {"type": "boolean"},
    },
    "description": "the runner's Dask cluster; absent when tasks run in the server's process",
}

# ``GET /api/stats/history`` (``TaskRunner.history``) and the ``stats`` event.
FINAL_STATES = [state for state in STATES if state not in ("pending", "running")]
_SERIES = {"type": "array", "items": {"type": "number", "minimum": 0}}
_COUNT_SERIES = {"type": "array", "items": _COUNT}
_SECONDS = _nullable({"type": "number", "minimum": 0})
_RUNTIME = {
    "type": "object",
    "required": ["count", "p50", "p90", "p99"],
    "additionalProperties": False,
    "properties": {"count": _COUNT, "p50": _SECONDS, "p90": _SECONDS, "p99": _SECONDS},
    "description": "runtimes (seconds, last attempt) of the tasks that finished after "
    "starting; each percentile is within 6.25 % of the true one; null when none finished",
}
HISTORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["window", "step", "at", "finished", "running", "pending", "runtime"],
    "additionalProperties": False,
    "properties": {
        "window": {"enum": ["1m", "1h", "1d"]},
        "step": {"enum": [1, 10, 60], "description": "seconds per point"},
        "at": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "each step's start (Unix seconds), oldest first",
        },
        "finished": {
            "type": "object",
            "required": FINAL_STATES,
            "additionalProperties": False,
            "properties": {state: _SERIES for state in FINAL_STATES},
            "description": "tasks finished per second in each step, averaged over it",
        },
        "running": {**_COUNT_SERIES, "description": "tasks running at each step's end"},
        "pending": {**_COUNT_SERIES, "description": "tasks pending at each step's end"},
        "runtime": {
            "type": "object",
            "required": ["1m", "1h", "1d"],
            "additionalProperties": False,
            "properties": {window: _RUNTIME for window in ("1m", "1h", "1d")},
        },
    },
}
STATS_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["at", "finished", "running", "pending"],
    "additionalProperties": False,
    "properties": {
        "at": {"type": "number", "description": "the second's start (Unix seconds)"},
        "finished": {
            "type": "object",
            "required": FINAL_STATES,
            "additionalProperties": False,
            "properties": {state: _COUNT for state in FINAL_STATES},
            "description": "tasks finished in that second",
        },
        "running": _COUNT,
        "pending": _COUNT,
    },
}

SCHEMAS: dict[str, Any] = {
    "Task": {
        "type": "object",
        "description": "A task's status dict.",
        "required": list(TASK_PROPERTIES),
        "additionalProperties": False,
        "properties": TASK_PROPERTIES,
    },
    "TaskError": {
        "type": "object",
        "required": ["type", "message", "traceback"],
        "properties": {
            "type": {"type": "string"},
            "message": {"type": "string"},
            "traceback": {"type": "string"},
        },
    },
    "Progress": {
        "type": "object",
        "required": ["fraction", "message"],
        "description": "what the task's progress() last said",
        "properties": {
            "fraction": {
                "oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]
            },
            "message": {"type": ["string", "null"]},
        },
    },
    "TaskList": {
        "type": "object",
        "required": ["tasks", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "tasks": {"type": "array", "items": _ref("Task")},
            "next_cursor": {
                **_nullable({"type": "integer", "minimum": 1}),
                "description": "pass as cursor for the next page; null on the last page",
            },
        },
    },
    "Submission": {
        "type": "object",
        "required": ["type", "input"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "minLength": 1, "description": "a task type's name"},
            "input": {
                "description": "a JSON value, handed to the task type's factory once it "
                "matches the type's input_schema (GET /api/task-types); a mismatch is a 400 "
                "invalid-params naming each failing place (input, input/width, ...)"
            },
            "wait": _nullable({"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS}),
            "timeout": _nullable(
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECONDS}
            ),
            "name": _nullable({"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}),
            "retries": {
                **_nullable(
                    {
                        "oneOf": [
                            {"type": "integer", "minimum": 0, "maximum": MAX_ATTEMPTS - 1},
                            _ref("Retry"),
                        ]
                    }
                ),
                "description": "runs a failing task again: this many more times with the "
                "default back-off, or as a Retry says. Every Exception is retried (a policy's "
                "exception classes cannot come over HTTP)",
            },
            "delay": {
                **_nullable({"type": "number", "minimum": 0, "maximum": MAX_DELAY_SECONDS}),
                "description": "seconds before the task starts (it is pending meanwhile); "
                "not with not_before",
            },
            "not_before": {
                **_nullable({"type": "number", "minimum": 0}),
                "description": "a time in Unix seconds, at most a year ahead, before which "
                "the task does not start; not with delay",
            },
            "priority": {
                **_nullable({"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY}),
                "description": "among pending tasks, a higher priority starts first (default 0)",
            },
            "after": {
                **_nullable(
                    {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 1, "maximum": MAX_TASK_ID},
                    }
                ),
                "description": "ids of tasks that must succeed before this one starts; if one "
                "ends otherwise, this one is cancelled. An id the server does not hold is a 400 "
                "naming after",
            },
            "limit": {
                **_nullable({"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS}),
                "description": "the label of a limit (GET /api/limits) the task runs under; "
                "a label not declared is a 400 naming limit",
            },
        },
    },
    "Retry": {
        "type": "object",
        "description": "a retry policy: the wait after attempt k is backoff * 2**(k-1) "
        "seconds, at most max_backoff; with jitter, a random point in its upper half",
        "required": ["attempts"],
        "additionalProperties": False,
        "properties": {
            "attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ATTEMPTS,
                "description": "every run, the first included",
            },
            "backoff": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_BACKOFF_SECONDS,
                "description": "seconds (default 1)",
            },
            "max_backoff": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_BACKOFF_SECONDS,
                "description": "seconds, not below backoff (default 60)",
            },
            "jitter": {"type": "boolean", "description": "default true"},
        },
    },
    "Limit": {
        "oneOf": [
            {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_LIMIT,
                "description": "at most this many tasks of the label at once; 0 holds them all",
            },
            _ref("Rate"),
        ]
    },
    "Rate": {
        "type": "object",
        "description": "at most count tasks of the label start in any window of per seconds",
        "required": ["count", "per"],
        "additionalProperties": False,
        "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "per": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PER_SECONDS},
        },
    },
    "LimitState": {
        "type": "object",
        "required": ["label", "limit", "running", "waiting"],
        "additionalProperties": False,
        "properties": {
            "label": {"type": "string"},
            "limit": _ref("Limit"),
            "running": {**_COUNT, "description": "tasks holding a slot of the limit"},
            "waiting": {**_COUNT, "description": "pending tasks the limit holds back"},
        },
    },
    "Limits": {
        "type": "object",
        "required": ["limits"],
        "additionalProperties": False,
        "properties": {
            "limits": {
                "type": "array",
                "items": _ref("LimitState"),
                "description": "every limit, by label",
            }
        },
    },
    "LimitUpdate": {
        "type": "object",
        "required": ["limit"],
        "additionalProperties": False,
        "properties": {"limit": _ref("Limit")},
    },
    "TaskTypes": {
        "type": "object",
        "required": ["task_types"],
        "properties": {
            "task_types": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "description", "input_schema", "takes_wait"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "input_schema": {
                            "type": ["object", "boolean", "null"],
                            "description": "the JSON Schema a submission's input must match "
                            "(draft 2020-12 unless its $schema names another); null when "
                            "the type takes any JSON",
                        },
                        "takes_wait": {
                            "type": "boolean",
                            "description": "a submission may give this type a wait",
                        },
                    },
                },
            }
        },
    },
    "Counts": {
        "type": "object",
        "required": list(STATES),
        "additionalProperties": False,
        "properties": {state: {"type": "integer", "minimum": 0} for state in STATES},
    },
    "Stats": {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name in STATS_PROPERTIES if name not in OPTIONAL_STATS],
        "properties": STATS_PROPERTIES,
    },
    "History": HISTORY_SCHEMA,
    "StatsEvent": STATS_EVENT_SCHEMA,
    "Meta": {
        "type": "object",
        "description": "The names a client reads tasks with, each list in its order.",
        "required": ["states", "kinds", "status_keys"],
        "additionalProperties": False,
        "properties": {
            "states": {
                "type": "array",
                "items": {"type": "string"},
                "description": "every state, pending and running first, then the final ones",
            },
            "kinds": {"type": "array", "items": {"type": "string"}},
            "status_keys": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the keys of the status dict (a Task adds result_is_repr)",
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "journal", "journal_problem"],
        "additionalProperties": False,
        "properties": {
            "status": {
                "enum": ["ok", "degraded"],
                "description": "degraded while the journal cannot write or the cluster's "
                "scheduler is out of reach: tasks run on and can be read, submissions get 503",
            },
            "journal": STATS_PROPERTIES["journal"],
            "journal_problem": STATS_PROPERTIES["journal_problem"],
            "cluster": CLUSTER,
        },
    },
    "Worker": {
        "type": "object",
        "required": list(WORKER_PROPERTIES),
        "additionalProperties": False,
        "properties": WORKER_PROPERTIES,
    },
    "Workers": {
        "type": "object",
        "required": ["cluster", "scheduler", "reachable", "workers"],
        "additionalProperties": False,
        "properties": {
            "cluster": {"type": "boolean", "description": "tasks run on a Dask cluster"},
            "scheduler": {
                **_nullable({"type": "string"}),
                "description": "the cluster's scheduler address; null without a cluster",
            },
            "reachable": {
                **_nullable({"type": "boolean"}),
                "description": "the scheduler is in reach now; null without a cluster",
            },
            "workers": {
                "type": "array",
                "items": _ref("Worker"),
                "description": "the cluster's live workers; empty without a cluster",
            },
        },
    },
    "Timeline": {
        "type": "object",
        "description": "A task's history: its states with their times, its attempts with "
        "their errors, the tasks before and after it.",
        "required": ["id", "events", "attempts", "after", "dependents", "again"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "events": {
                "type": "array",
                "items": _ref("TimelineEvent"),
                "description": "oldest first: pending at submit, running at each start, "
                "pending again at each retry or lost run (with that attempt's error), the "
                "final state (with the task's error)",
            },
            "attempts": {
                "type": "array",
                "items": _ref("Attempt"),
                "description": "the runs the task made, oldest first; none for a task that "
                "never started",
            },
            "after": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "description": "ids of the tasks this one starts after",
            },
            "dependents": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "description": "ids of the tasks that start after this one",
            },
            "again": {
                "type": "boolean",
                "description": "POST /api/tasks/{task_id}/again would make a new task of it",
            },
        },
    },
    "TimelineEvent": {
        "type": "object",
        "required": ["at", "state", "attempt", "error"],
        "additionalProperties": False,
        "properties": {
            "at": {"type": "number", "description": "Unix seconds"},
            "state": {"enum": list(STATES), "description": "the state the task entered"},
            "attempt": {
                "type": "integer",
                "minimum": 1,
                "description": "the attempt the task was on (or, pending again, waited for)",
            },
            "error": {
                **_nullable(_ref("TaskError")),
                "description": "pending again: the error that ended the attempt before; "
                "the final state: the task's error; null otherwise",
            },
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["attempt", "started_at", "ended_at", "error"],
        "additionalProperties": False,
        "properties": {
            "attempt": {"type": "integer", "minimum": 1},
            "started_at": {
                **_nullable({"type": "number"}),
                "description": "Unix seconds; null for an attempt lost before it started",
            },
            "ended_at": {
                **_nullable({"type": "number"}),
                "description": "Unix seconds; null while it runs, and for an attempt lost "
                "with its process (when is not known)",
            },
            "error": {
                **_nullable(_ref("TaskError")),
                "description": "why it ended: what it raised, or TaskLost for a run lost "
                "with its process or cluster worker; null for one that did not fail",
            },
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "invalid_params": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "state": {"enum": list(STATES), "description": "the task's state, on a 409"},
            "id": {
                "type": "integer",
                "minimum": 1,
                "description": "the task accepted but not recorded, on a not-recorded 503",
            },
            "program": {
                "type": "string",
                "description": "the program as the client named it, on a command-not-allowed 403",
            },
        },
    },
}

# The runner-wide operations: pause, resume, and cancel in bulk.
CONTROL_SCHEMAS: dict[str, Any] = {
    "Paused": {
        "type": "object",
        "required": ["paused"],
        "additionalProperties": False,
        "properties": {"paused": STATS_PROPERTIES["paused"]},
    },
    "CancelRequest": {
        "type": "object",
        "required": ["ids"],
        "additionalProperties": False,
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": 1000,
                "description": "the tasks to cancel (a repeated id counts once)",
            }
        },
    },
    "CancelResult": {
        "type": "object",
        "required": ["cancelled", "not_cancelled"],
        "additionalProperties": False,
        "properties": {
            "cancelled": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "description": "the tasks cancelled now, or already cancelled before",
            },
            "not_cancelled": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "reason"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "integer", "minimum": 1},
                        "reason": {
                            "enum": ["finished", "running", "unknown"],
                            "description": "finished: in another final state; running: a "
                            "blocking task already running; unknown: no task with that id",
                        },
                    },
                },
            },
        },
    },
}
SCHEMAS.update(CONTROL_SCHEMAS)


def _control_paths() -> dict[str, Any]:
    paused = _json(_ref("Paused"), "whether the runner is paused now")
    not_here = _problem("the runner's tasks run on a cluster, which cannot pause yet")
    return {
        "/api/pause": {
            "post": {
                "operationId": "pause",
                "summary": "Stop starting tasks (running ones go on, submits are accepted)",
                "responses": {
                    "200": paused,
                    "501": not_here,
                    "503": _problem("the runner is shut down"),
                },
            }
        },
        "/api/resume": {
            "post": {
                "operationId": "resume",
                "summary": "Start at once what waited while paused",
                "responses": {"200": paused, "501": not_here},
            }
        },
        "/api/tasks/cancel": {
            "post": {
                "operationId": "cancelTasks",
                "summary": "Cancel several tasks at once",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("CancelRequest")}},
                },
                "responses": {
                    "200": _json(_ref("CancelResult"), "what was cancelled, and why not the rest"),
                    "400": _problem(
                        "bad JSON, an unknown field, or ids that are not 1 to 1000 task ids"
                    ),
                    "413": _problem("the body is too large"),
                    "415": _problem("the body is declared as something other than JSON"),
                },
            }
        },
    }


TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

LABEL = {
    "name": "label",
    "in": "path",
    "required": True,
    # A "/" would end the path segment: such a label cannot be set over HTTP.
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_LABEL_CHARS,
        "pattern": "^[^/]+$",
    },
}

LIST_PARAMETERS = [
    {
        "name": "state",
        "in": "query",
        "description": "only tasks in this state",
        "schema": {"enum": list(STATES)},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "the most tasks in the page (default 100, at most the server's max_page)",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "next_cursor of the previous page: tasks older than it",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "name",
        "in": "query",
        "description": "only tasks whose name contains this text",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
    },
    {
        "name": "kind",
        "in": "query",
        "description": "only tasks of this kind (a task whose kind is not known yet has none)",
        "schema": {"enum": list(KINDS)},
    },
    {
        "name": "type",
        "in": "query",
        "description": "only tasks of this task type (exact)",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS},
    },
    {
        "name": "worker",
        "in": "query",
        "description": "only tasks that run or ran on this cluster worker (its address, exact)",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS},
    },
    {
        "name": "error",
        "in": "query",
        "description": "only tasks whose error has this type name (exact, such as ValueError): "
        "failed tasks, and tasks waiting for a retry after one",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS},
    },
    {
        "name": "since",
        "in": "query",
        "description": "only tasks submitted at or after this time (Unix seconds)",
        "schema": {"type": "number"},
    },
    {
        "name": "until",
        "in": "query",
        "description": "only tasks submitted before this time (Unix seconds)",
        "schema": {"type": "number"},
    },
]

HISTORY_WINDOW = {
    "name": "window",
    "in": "query",
    "description": "1m (1 s steps), 1h (10 s steps, the default) or 1d (60 s steps)",
    "schema": {"enum": ["1m", "1h", "1d"], "default": "1h"},
}

EVENTS_DESCRIPTION = (
    "Server-sent events. `ready` {counts, paused} when subscribed; then, twice a second "
    "when something changed, `task` (a Task) for each task whose state changed (its changes "
    "in that half second folded into one, its status as it is when sent; at most 100, the "
    "latest changed) and `counts` (Counts); `resync` {counts} when task events were left out "
    "or dropped (reload the list; at most one every 10 s); `paused` {paused} when the runner "
    "is paused or resumed; `forgotten` {id}; `stats` (StatsEvent) once a second: the tasks "
    "finished in the last whole second, and those running and pending at its end. A comment "
    "line is sent after some quiet seconds. The stream ends when the server shuts down."
)


IDEMPOTENCY_KEY_PARAMETER = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "description": (
        "Makes the submission safe to repeat: a POST with a key sent in the last 24 hours "
        "(even before a restart) creates nothing and answers with the task the key first "
        "made, as the first answer did (202 and its Location). The key is the value as "
        "sent; the body of a repeat is checked, not compared with the first."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_CHARS,
        "pattern": "^[ -~]+$",
    },
}

RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "schema": {"type": "string"},
}


def _task_link(operation_id: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {"task_id": "$response.body#/id"}}


def _paths() -> dict[str, Any]:
    task = _json(_ref("Task"), "the task's status")
    no_such_task = _problem("no task with that id")
    return {
        "/api/tasks": {
            "post": {
                "operationId": "submitTask",
                "summary": "Start a task of a registered type",
                "parameters": [IDEMPOTENCY_KEY_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("Submission")}},
                },
                "responses": {
                    "202": {
                        **_json(
                            _ref("Task"),
                            "accepted, and recorded in the journal when the server has "
                            "one: the task's status",
                        ),
                        "headers": {
                            "Location": {
                                "description": "the task's URL",
                                "required": True,
                                "schema": {"type": "string"},
                            },
                            REPLAYED: {
                                "description": "true when the Idempotency-Key had made the "
                                "task before",
                                "schema": {"const": "true"},
                            },
                        },
                        "links": {
                            "GetTask": _task_link("getTask"),
                            "CancelTask": _task_link("cancelTask"),
                        },
                    },
                    "400": _problem(
                        "bad JSON, missing, unknown or invalid fields, or a bad Idempotency-Key"
                    ),
                    "404": _problem("no task type of that name"),
                    "413": _problem("the body is too large"),
                    "415": _problem("the body is declared as something other than JSON"),
                    "500": _problem("the task type's factory failed"),
                    "503": {
                        **_problem(
                            "too many unfinished tasks, shutting down, the cluster's scheduler "
                            "is out of reach (cluster-unreachable: nothing was submitted), or "
                            "the journal cannot record the task (journal-degraded: nothing was "
                            "submitted; not-recorded: the task runs but is not recorded yet, "
                            "its id is given)"
                        ),
                        "headers": {"Retry-After": RETRY_AFTER},
                    },
                },
            },
            "get": {
                "operationId": "listTasks",
                "summary": "Tasks, newest first, a page at a time",
                "parameters": LIST_PARAMETERS,
                "responses": {
                    "200": _json(_ref("TaskList"), "a page of tasks"),
                    "400": _problem("a query parameter is invalid"),
                },
            },
        },
        "/api/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": {
                "operationId": "getTask",
                "summary": "One task's status",
                "responses": {"200": task, "404": no_such_task},
            },
            "delete": {
                "operationId": "cancelTask",
                "summary": "Cancel a task",
                "responses": {
                    "200": _json(_ref("Task"), "cancelled (or already was)"),
                    "404": no_such_task,
                    "409": _problem("a running blocking task, or one already finished"),
                },
            },
        },
        "/api/tasks/{task_id}/timeline": {
            "parameters": [TASK_ID],
            "get": {
                "operationId": "getTimeline",
                "summary": "A task's states, attempts and dependencies over time",
                "responses": {
                    "200": _json(_ref("Timeline"), "the task's timeline"),
                    "404": no_such_task,
                },
            },
        },
        "/api/tasks/{task_id}/again": {
            "parameters": [TASK_ID],
            "post": {
                "operationId": "runAgain",
                "summary": "Submit a new task of a finished task's type, input, wait and timeout",
                "parameters": [IDEMPOTENCY_KEY_PARAMETER],
                "responses": {
                    "202": {
                        **_json(
                            _ref("Task"),
                            "accepted, and recorded in the journal when the server has "
                            "one: the new task's status",
                        ),
                        "headers": {
                            "Location": {
                                "description": "the new task's URL",
                                "required": True,
                                "schema": {"type": "string"},
                            },
                            REPLAYED: {
                                "description": "true when the Idempotency-Key had made the "
                                "task before",
                                "schema": {"const": "true"},
                            },
                        },
                        "links": {"GetTask": _task_link("getTask")},
                    },
                    "400": _problem("a bad Idempotency-Key"),
                    "404": no_such_task,
                    "409": _problem(
                        "the task cannot run again (cannot-run-again): it was not submitted "
                        "over HTTP, has not finished, its type is no longer served, or its "
                        "type now refuses its input"
                    ),
                    "500": _problem("the task type's factory failed"),
                    "503": {
                        **_problem(
                            "as for POST /api/tasks: too many unfinished tasks, shutting "
                            "down, the cluster out of reach, or the journal cannot record it"
                        ),
                        "headers": {"Retry-After": RETRY_AFTER},
                    },
                },
            },
        },
        "/api/task-types": {
            "get": {
                "operationId": "listTaskTypes",
                "summary": "The task types a client may submit",
                "responses": {"200": _json(_ref("TaskTypes"), "the registry")},
            }
        },
        "/api/meta": {
            "get": {
                "operationId": "getMeta",
                "summary": "The states, kinds and status keys of tasks",
                "responses": {"200": _json(_ref("Meta"), "the lists, each in order")},
            }
        },
        "/api/access": {
            "get": {
                "operationId": "getAccess",
                "summary": "What the request's token may do, and its name",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["label", "can_change", "token_required"],
                            "additionalProperties": False,
                            "properties": {
                                "label": {
                                    "type": "string",
                                    "description": "the token's name in the audit log "
                                    "(anonymous on a server with no token)",
                                },
                                "can_change": {
                                    "type": "boolean",
                                    "description": "false for the read-only token",
                                },
                                "token_required": {"type": "boolean"},
                            },
                        },
                        "the access",
                    )
                },
            }
        },
        "/api/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "Counts per state, workers, poller queue, polls per second",
                "responses": {"200": _json(_ref("Stats"), "the runner's numbers")},
            }
        },
        "/api/stats/history": {
            "get": {
                "operationId": "getStatsHistory",
                "summary": "Tasks finished, running and pending over time; runtime percentiles",
                "parameters": [HISTORY_WINDOW],
                "responses": {
                    "200": _json(_ref("History"), "one point per step, oldest first"),
                    "400": _problem("an unknown window"),
                },
            }
        },
        "/api/workers": {
            "get": {
                "operationId": "listWorkers",
                "summary": "The cluster's workers: tasks, threads, last report",
                "responses": {"200": _json(_ref("Workers"), "the workers; none without a cluster")},
            }
        },
        "/api/limits": {
            "get": {
                "operationId": "listLimits",
                "summary": "Every limit, with its running and waiting tasks",
                "responses": {"200": _json(_ref("Limits"), "the limits, by label")},
            }
        },
        "/api/limits/{label}": {
            "parameters": [LABEL],
            "put": {
                "operationId": "setLimit",
                "summary": "Set a limit, or declare a new label",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("LimitUpdate")}},
                },
                "responses": {
                    "200": _json(_ref("LimitState"), "the limit as it is now"),
                    "400": _problem("bad JSON, or a missing, unknown or invalid field"),
                    "413": _problem("the body is too large"),
                    "415": _problem("the body is declared as something other than JSON"),
                },
            },
        },
        "/api/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "State changes as server-sent events",
                "responses": {
                    "200": _json({"type": "string"}, EVENTS_DESCRIPTION, "text/event-stream"),
                    "503": _problem("too many open event streams, or shutting down"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
        **_control_paths(),
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: 200 while the runner runs tasks",
                "security": [],
                "responses": {
                    "200": _json(
                        _ref("Health"),
                        "running; degraded while the journal cannot write or the cluster's "
                        "scheduler is out of reach",
                    ),
                    "503": _problem("shutting down"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format, or OpenMetrics when asked for",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
        "/": {
            "get": {
                "operationId": "dashboard",
                "summary": "The live dashboard (HTML)",
                "security": [],
                "responses": {"200": _json({"type": "string"}, "the page", "text/html")},
            }
        },
        "/tasks/{task_id}": {
            "get": {
                "operationId": "taskPage",
                "summary": "A task's own page (HTML), the same for any id: its script reads it",
                "security": [],
                "parameters": [{**TASK_ID, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "string"}, "the page", "text/html")},
            }
        },
    }


def _version() -> str:
    return taskrunner.__version__


def _require_token(paths: dict[str, Any]) -> None:
    """Adds the 401 to every operation that needs the token."""
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters" and operation.get("security") != []:
                operation["responses"]["401"] = _problem("the bearer token is missing or wrong")


def _schemas(task_types: Optional[Sequence[str]]) -> dict[str, Any]:
    """The schemas, with the submission's ``type`` limited to the registered names."""
    if task_types is None:
        return SCHEMAS
    submission = SCHEMAS["Submission"]
    type_name = {**submission["properties"]["type"], "enum": list(task_types)}
    properties = {**submission["properties"], "type": type_name}
    return {**SCHEMAS, "Submission": {**submission, "properties": properties}}


def _refuse_read_token(paths: dict[str, Any]) -> None:
    """Adds the read token's 403 to every guarded operation that changes something."""
    for item in paths.values():
        for method, operation in item.items():
            if method in ("post", "put", "patch", "delete") and operation.get("security") != []:
                responses = operation["responses"]
                refused = "the token may only read (read-only-token): nothing was changed"
                if "403" in responses:
                    refused = f"{responses['403']['description']}; or {refused}"
                responses["403"] = _problem(refused)


def openapi_document(
    auth: bool = False,
    task_types: Optional[Sequence[str]] = None,
    commands: bool = False,
    read_token: bool = False,
    server_url: Optional[str] = None,
    protect_metrics: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server.

    Args:
        auth: the server requires a bearer token.
        task_types: the names of its task types (any string when None).
        commands: it serves the ``command`` task type, which refuses programs
            not on its allow-list with a 403.
        read_token: it has a read-only token too, which gets 403 for changes.
        server_url: the server's URL as the client reached it.
        protect_metrics: ``/metrics`` and ``/healthz`` need the token too.
    """
    paths = _paths()
    if protect_metrics:
        for path in ("/metrics", "/healthz"):
            del paths[path]["get"]["security"]
    if commands:
        paths["/api/tasks"]["post"]["responses"]["403"] = _problem(
            "the program of a command task is not on the server's allow-list "
            "(command-not-allowed): nothing was submitted"
        )
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "taskrunner",
            "version": _version(),
            "description": "Launch long-running tasks and watch their status.",
        },
        "paths": paths,
        "components": {"schemas": _schemas(task_types)},
    }
    if server_url is not None:
        document["servers"] = [{"url": server_url}]
    if read_token:
        _refuse_read_token(paths)
    if auth:
        _require_token(paths)
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
