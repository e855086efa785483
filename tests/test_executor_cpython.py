"""CPython's own thread-pool tests of ``concurrent.futures``, run against ``taskrunner.Executor``.

The running interpreter's ``test.test_concurrent_futures`` (a package from
CPython 3.12, one module before) is run in a fresh interpreter by
``cpython_futures_suite.py``, with ``taskrunner.Executor`` as the executor of
its thread-pool classes (``test_thread_pool``, ``test_as_completed``,
``test_wait``, ``test_shutdown``, ``test_init``), less the tests in
``LEFT_OUT``. Some Python installs leave CPython's ``test`` package out; the
test then skips and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SUITE_RUNNER = Path(__file__).with_name("cpython_futures_suite.py")

_OURS = "test_executor.py::"
_PRIVATE = (
    "inspects ThreadPoolExecutor's private _threads (Executor has no such attribute); "
    "what it checks is covered by " + _OURS + "{}"
)
_BY_NAME = (
    "runs a script in a fresh isolated interpreter (-I) that imports the executor by "
    "its class name from concurrent.futures ({}), so it can only ever test "
    "ThreadPoolExecutor; what it checks is covered by " + _OURS + "{}"
)

# CPython's thread-pool tests that are not run, "Class.test" -> why. Only tests
# that look at ThreadPoolExecutor's internals or that can only ever run
# ThreadPoolExecutor itself are left out.
LEFT_OUT = {
    "ThreadPoolExecutorTest.test_saturation": _PRIVATE.format(
        "test_max_workers_caps_concurrent_calls"
    ),
    "ThreadPoolExecutorTest.test_idle_thread_reuse": _PRIVATE.format(
        "test_an_idle_worker_takes_the_next_call"
    ),
    "ThreadPoolShutdownTest.test_threads_terminate": _PRIVATE.format(
        "test_executor_collected_without_shutdown_finishes_its_calls (threads gone)"
    )
    + "; and its calls would block for ever on a semaphore the test releases only after "
    "that check, so the test's tearDown (shutdown(wait=True)) would never return",
    "ThreadPoolShutdownTest.test_context_manager_shutdown": _PRIVATE.format(
        "test_context_manager_shuts_down_and_waits"
    ),
    "ThreadPoolShutdownTest.test_del_shutdown": _PRIVATE.format(
        "test_executor_collected_without_shutdown_finishes_its_calls"
    ),
    "ThreadPoolShutdownTest.test_shutdown_no_wait": _PRIVATE.format(
        "test_shutdown_without_wait_returns_while_calls_run"
    ),
    "ThreadPoolShutdownTest.test_thread_names_assigned": _PRIVATE.format(
        "test_thread_names_use_the_prefix"
    ),
    "ThreadPoolShutdownTest.test_thread_names_default": _PRIVATE.format(
        "test_default_thread_names_differ_between_executors"
    )
    + "; it also expects the default names ThreadPoolExecutor-N_M",
    "ThreadPoolExecutorTest.test_hang_global_shutdown_lock": (
        "forks a ProcessPoolExecutor's workers from a process whose Executor has live Rust "
        "threads; a fork at the instant one of them is inside parking_lot's parking-table "
        "bookkeeping can hang the child (the known limit in docs/reliability.md), and the "
        "test then hangs in ProcessPoolExecutor.shutdown: seen once in three CI runs on 3.13. "
        "Forks of a runner are covered by tests/test_process.py"
    ),
    "ThreadPoolShutdownTest.test_interpreter_shutdown": _BY_NAME.format(
        "`from concurrent.futures import Executor` would be the abstract base class",
        "test_interpreter_exit_runs_queued_calls_before_atexit_hooks",
    ),
    "ThreadPoolShutdownTest.test_submit_after_interpreter_shutdown": _BY_NAME.format(
        "as above", "test_interpreter_exit_runs_queued_calls_before_atexit_hooks"
    ),
    "ThreadPoolShutdownTest.test_hang_gh83386": _BY_NAME.format(
        "as above", "test_exit_after_shutdown_without_wait_lets_a_running_call_finish"
    ),
    "ThreadPoolShutdownTest.test_cancel_futures_wait_false": _BY_NAME.format(
        "it names ThreadPoolExecutor in the script",
        "test_exit_after_shutdown_without_wait_lets_a_running_call_finish",
    ),
}


# Quick enough for the quick runs: the initializer tests (they read Executor._broken).
QUICK_CLASSES = ("ThreadPoolInitializerTest", "ThreadPoolFailingInitializerTest")


def run_cpython_suite(tmp_path: Path, classes: tuple[str, ...] = ()) -> dict:
    """Runs the suite (or only ``classes`` of it) in a fresh interpreter.

    Returns:
        Its outcome (see cpython_futures_suite.py), with the unittest report
        as ``report``; the test skips if this interpreter has no such suite.
    """
    result_file = tmp_path / "outcome.json"
    command = [sys.executable, str(SUITE_RUNNER), str(result_file), json.dumps(sorted(LEFT_OUT))]
    if classes:
        command.append(json.dumps(classes))
    try:
        process = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=240,  # the runner gives up after 200 s, showing where it hung
            env=dict(os.environ, PYTHONFAULTHANDLER="1"),
        )
    except subprocess.TimeoutExpired as expired:
        report = expired.stderr or b""  # bytes, whatever text= says
        if isinstance(report, bytes):
            report = report.decode(errors="replace")
        pytest.fail(f"the suite hung:\n{report[-20_000:]}")
    assert process.returncode == 0 and result_file.exists(), process.stderr[-20_000:]
    outcome = json.loads(result_file.read_text(encoding="utf-8"))
    if "missing" in outcome:
        pytest.skip(outcome["missing"])
    outcome["report"] = process.stderr
    print(
        f"CPython {outcome['python']}, {outcome['location']}: {outcome['ran']} ran, "
        f"{len(outcome['failures']) + len(outcome['errors'])} failed, "
        f"{len(outcome['skipped'])} skipped, {len(outcome['left_out'])} left out"
    )
    return outcome


def short_name(test_id: str) -> str:
    """``Class.test`` of a unittest id such as ``test.module.Class.test (subtest)``."""
    return ".".join(test_id.split(" ")[0].split(".")[-2:])


def problems_of(outcome: dict) -> dict[str, list[str]]:
    """The failures and errors, by ``Class.test``."""
    problems: dict[str, list[str]] = {}
    for test_id, detail in outcome["failures"] + outcome["errors"]:
        problems.setdefault(short_name(test_id), []).append(f"{test_id}\n{detail}")
    return problems


def assert_passed(outcome: dict) -> None:
    """Every test that ran passed or skipped itself."""
    assert outcome["ran"] > 0, outcome["report"][-30_000:]
    problems = [detail for details in problems_of(outcome).values() for detail in details]
    assert not problems, "\n\n".join(problems)
    assert not outcome["unexpected_successes"], outcome["report"][-30_000:]


def test_cpython_initializer_tests_pass_against_executor(tmp_path):
    outcome = run_cpython_suite(tmp_path, classes=QUICK_CLASSES)
    assert sorted(outcome["classes"]) == sorted(QUICK_CLASSES)
    assert_passed(outcome)


@pytest.mark.slow
def test_cpython_thread_pool_tests_pass_against_executor(tmp_path):
    outcome = run_cpython_suite(tmp_path)
    assert len(outcome["classes"]) == 6, outcome["classes"]
    assert_passed(outcome)
