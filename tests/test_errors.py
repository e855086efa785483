"""Failures inside tasks, unknown ids and objects that are not tasks."""

from __future__ import annotations

import types

import pytest

from taskrunner.faketasks import FakeTaskBlocking

from conftest import Blocking, Polling


class RaisesIn:
    def __init__(self, where: str, exc: BaseException) -> None:
        self.where, self.exc, self.started = where, exc, False

    def run(self):
        self.started = True
        if self.where == "run":
            raise self.exc

    def get_output(self):
        if self.where == "get_output":
            raise self.exc
        return None


@pytest.mark.parametrize("kind", [None, "blocking", "polling"])
def test_run_raising_fails_the_task(runner, kind):
    h = runner.submit(RaisesIn("run", KeyError("missing")), kind=kind)
    exc = h.exception(timeout=10)
    assert isinstance(exc, KeyError)
    with pytest.raises(KeyError, match="missing"):
        h.result()
    error = h.status()["error"]
    assert error["type"] == "KeyError" and "missing" in error["message"]
    assert "raise self.exc" in error["traceback"]


@pytest.mark.parametrize("kind", [None, "polling"])
def test_get_output_raising_fails_the_task(runner, kind):
    h = runner.submit(RaisesIn("get_output", RuntimeError("sensor gone")), kind=kind)
    assert isinstance(h.exception(timeout=10), RuntimeError)
    status = h.status()
    assert status["state"] == "failed"
    assert "in get_output" in status["error"]["traceback"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_base_exceptions_fail_only_their_task(runner, exc):
    h = runner.submit(RaisesIn("run", exc), kind="blocking")
    assert isinstance(h.exception(timeout=10), type(exc))
    assert h.status()["error"]["type"] == type(exc).__name__
    # The worker and the runner carry on.
    assert runner.submit(FakeTaskBlocking(1, wait=0)).result(timeout=10) == 2


def test_a_failing_task_does_not_harm_others(runner):
    bad = [runner.submit(RaisesIn("get_output", ValueError(i)), kind="polling") for i in range(20)]
    good = [runner.submit(Polling(i, wait=0.05), kind="polling") for i in range(20)]
    assert [h.result(timeout=10) for h in good] == list(range(20))
    assert all(isinstance(h.exception(timeout=10), ValueError) for h in bad)
    assert all(h.status()["state"] == "failed" for h in bad)


def test_unprintable_exception_still_fails_cleanly(runner):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str for you")

    h = runner.submit(RaisesIn("run", Unprintable()), kind="blocking")
    assert isinstance(h.exception(timeout=10), Unprintable)
    assert h.status()["error"]["type"].endswith("Unprintable")


def test_unknown_id_raises_key_error_naming_it(runner):
    for call in (runner.status, runner.cancel, runner.handle, runner.result, runner.forget):
        with pytest.raises(KeyError, match="12345"):
            call(12345)
    for out_of_range in (-1, 2**70):
        with pytest.raises(KeyError, match=str(out_of_range)):
            runner.status(out_of_range)
        with pytest.raises(KeyError):
            runner.wait([out_of_range])
    with pytest.raises(TypeError, match="int"):
        runner.status("1")
    with pytest.raises(KeyError, match="777"):
        runner.wait([777])
    with pytest.raises(KeyError):
        list(runner.as_completed([888]))


@pytest.mark.parametrize(
    "obj",
    [object(), 42, "run", type("NoOutput", (), {"run": lambda self: 1})()],
    ids=["object", "int", "str", "no-get_output"],
)
def test_objects_without_run_and_get_output_are_refused(runner, obj):
    with pytest.raises(TypeError, match="run\\(\\) and get_output\\(\\)"):
        runner.submit(obj)
    assert runner.tasks() == []


def test_non_callable_methods_are_refused(runner):
    class Attr:
        run = 1
        get_output = None

    with pytest.raises(TypeError):
        runner.submit(Attr())


def test_methods_set_on_the_instance_alone_are_accepted(runner):
    # The shape check looks on the class first, then on the object.
    task = types.SimpleNamespace(run=lambda: None, get_output=lambda: 7)
    assert runner.submit(task, kind="blocking").result(timeout=10) == 7
    # A class is remembered as checked only when it has the methods itself.
    with pytest.raises(TypeError, match="run\\(\\) and get_output\\(\\)"):
        runner.submit(types.SimpleNamespace(run=lambda: None))


def test_each_task_is_checked_and_named_by_its_own_class(runner):
    class Other(Blocking):
        pass

    first = runner.submit(Blocking(1))
    with pytest.raises(TypeError, match="int"):
        runner.submit(42)
    second = runner.submit(Other(2))
    third = runner.submit(Blocking(3))
    assert [runner.status(h.id)["name"] for h in (first, second, third)] == [
        "Blocking",
        "Other",
        "Blocking",
    ]


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_bad_timeout_is_refused(runner, timeout):
    with pytest.raises(ValueError, match="timeout"):
        runner.submit(Blocking(), timeout=timeout)


@pytest.mark.parametrize("timeout", [1e19, 2.0**64, 1e308, float("inf")])
def test_a_timeout_beyond_the_clock_means_no_timeout(runner, timeout):
    h = runner.submit(Blocking(5), timeout=timeout)
    assert h.result(timeout=10) == 5
    assert runner.submit(Polling(1, wait=60), kind="polling", timeout=timeout).cancel()


def test_ids_take_any_int(runner):
    ids = [runner.submit(Blocking(i)).id for i in range(3)]
    runner.wait(timeout=10)
    assert runner.ids(before=2**64) == ids[::-1]
    assert runner.ids(before=-1) == []
    assert runner.ids(limit=2**70) == ids[::-1]
    with pytest.raises(ValueError, match="limit"):
        runner.ids(limit=-1)


def test_bad_runner_parameters_are_refused():
    import taskrunner

    with pytest.raises(ValueError, match="max_workers"):
        taskrunner.TaskRunner(max_workers=0)
    with pytest.raises(ValueError, match="max_poll_rate"):
        taskrunner.TaskRunner(max_poll_rate=0)
    with pytest.raises(ValueError, match="keep_alive"):
        taskrunner.TaskRunner(keep_alive=-1)
    with pytest.raises(ValueError, match="min_interval"):
        taskrunner.PollPolicy(min_interval=0)
    with pytest.raises(ValueError, match="must not exceed"):
        taskrunner.PollPolicy(min_interval=2, max_interval=1)
