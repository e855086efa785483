"""The task's shape has one source: the core's key lists, which the types follow."""

import taskrunner
from taskrunner.status import RunnerStats, TaskStatus


def test_the_status_dict_has_exactly_the_core_keys_in_order(runner):
    handle = runner.submit(taskrunner.FakeTaskBlocking(1, wait=0))
    handle.result(timeout=10)
    assert tuple(handle.status()) == taskrunner.STATUS_KEYS
    assert tuple(runner.status(handle.id)) == taskrunner.STATUS_KEYS


def test_the_status_typeddict_follows_the_core_keys():
    assert tuple(TaskStatus.__annotations__) == taskrunner.STATUS_KEYS


def test_the_stats_dict_and_its_typeddict_follow_the_core_keys(runner):
    assert tuple(runner.stats()) == taskrunner.STATS_KEYS
    assert tuple(RunnerStats.__annotations__) == taskrunner.STATS_KEYS


def test_states_and_kinds_are_the_documented_names():
    assert taskrunner.STATES == (
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
    )
    assert taskrunner.FINAL_STATES == set(taskrunner.STATES) - {"pending", "running"}
    assert taskrunner.KINDS == ("blocking", "polling")
