"""taskrunner.Executor against ThreadPoolExecutor, case by case, and Futures of task handles.

Each behaviour test runs one body on both executors and expects the same
observable results.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import (
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    Future,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from concurrent.futures.thread import BrokenThreadPool

import pytest

from taskrunner import TaskTimeoutError
from taskrunner.executor import Executor

from conftest import Blocking, Gate, Polling, wait_for

TIMEOUT = 10.0

EXECUTORS = [
    pytest.param(ThreadPoolExecutor, id="ThreadPoolExecutor"),
    pytest.param(Executor, id="taskrunner.Executor"),
]


@pytest.fixture(params=EXECUTORS)
def executor_class(request):
    return request.param


@pytest.fixture
def make_executor(executor_class):
    """Builds executors of the class under test and shuts every one down afterwards."""
    made = []

    def make(*args, **kwargs):
        executor = executor_class(*args, **kwargs)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


class Blocker:
    """A call that holds its worker thread until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        if not self.release.wait(TIMEOUT):
            raise AssertionError("never released")
        return "released"


class CustomBaseError(BaseException):
    """Not an Exception: executors must still hand it to the future."""


def fail_with(exception: BaseException) -> None:
    raise exception


def thread_name() -> str:
    return threading.current_thread().name


# Results and exceptions


def test_submit_returns_a_standard_future_with_the_result(make_executor):
    executor = make_executor(max_workers=2)
    future = executor.submit(pow, 2, 10)
    assert type(future) is Future
    assert future.result(TIMEOUT) == 1024
    assert future.done() and not future.running() and not future.cancelled()


def test_submit_passes_keyword_arguments_even_named_fn_or_self(make_executor):
    executor = make_executor(max_workers=1)
    future = executor.submit(lambda **kwargs: kwargs, fn=1, self=2)
    assert future.result(TIMEOUT) == {"fn": 1, "self": 2}


def test_exceptions_reach_the_future(make_executor):
    executor = make_executor(max_workers=1)
    error = ValueError("boom")
    future = executor.submit(fail_with, error)
    assert future.exception(TIMEOUT) is error
    with pytest.raises(ValueError, match="boom"):
        future.result()
    base_error = executor.submit(fail_with, CustomBaseError("not an Exception"))
    assert isinstance(base_error.exception(TIMEOUT), CustomBaseError)
    assert executor.submit(pow, 3, 2).result(TIMEOUT) == 9  # the worker survived both


def test_map_gives_results_in_order(make_executor):
    executor = make_executor(max_workers=3)
    assert list(executor.map(pow, range(10), range(10))) == [pow(i, i) for i in range(10)]
    assert list(executor.map(abs, range(-5, 5), chunksize=4)) == [abs(i) for i in range(-5, 5)]
    assert list(executor.map(pow, [])) == []


def test_map_raises_the_first_failure_when_reached(make_executor):
    executor = make_executor(max_workers=2)
    results = executor.map(lambda i: 1 // (i - 3), range(6))
    assert next(results) == -1
    with pytest.raises(ZeroDivisionError):
        list(results)


def test_map_timeout_cancels_the_calls_not_started(make_executor):
    executor = make_executor(max_workers=1)
    blocker = Blocker()
    ran = []
    calls = [blocker] + [lambda i=i: ran.append(i) for i in range(5)]
    results = executor.map(lambda f: f(), calls, timeout=0.05, chunksize=2)
    with pytest.raises(concurrent.futures.TimeoutError):
        list(results)
    blocker.release.set()
    executor.shutdown(wait=True)
    assert ran == []


def test_calls_may_submit_more_calls(make_executor):
    executor = make_executor(max_workers=2)
    outer = executor.submit(lambda: executor.submit(pow, 2, 5).result(TIMEOUT))
    assert outer.result(TIMEOUT) == 32


# Cancellation


def test_cancel_succeeds_only_while_pending(make_executor):
    executor = make_executor(max_workers=1)
    blocker = Blocker()
    running = executor.submit(blocker)
    assert blocker.started.wait(TIMEOUT)
    ran = []
    pending = executor.submit(ran.append, "ran")
    assert not pending.running() and not pending.done()
    assert pending.cancel() and pending.cancel()  # and again: still cancelled
    assert pending.cancelled() and pending.done()
    assert running.running() and not running.cancel()
    blocker.release.set()
    assert running.result(TIMEOUT) == "released"
    assert not running.cancel() and not running.cancelled()
    executor.shutdown(wait=True)
    assert ran == []
    with pytest.raises(CancelledError):
        pending.result()


# Callbacks


def test_done_callback_runs_on_the_worker_with_the_future(make_executor):
    executor = make_executor(max_workers=1, thread_name_prefix="CallbackPool")
    blocker = Blocker()
    future = executor.submit(blocker)
    called = threading.Event()
    seen = []

    def callback(done_future):
        seen.append((done_future is future, thread_name(), done_future.result()))
        called.set()

    future.add_done_callback(callback)
    blocker.release.set()
    assert called.wait(TIMEOUT)
    assert seen == [(True, "CallbackPool_0", "released")]


def test_done_callback_on_a_done_future_runs_at_once_in_the_caller(make_executor):
    executor = make_executor(max_workers=1)
    future = executor.submit(pow, 2, 2)
    future.result(TIMEOUT)
    seen = []
    future.add_done_callback(lambda f: seen.append(thread_name()))
    assert seen == [threading.current_thread().name]


def test_a_failing_callback_is_logged_and_others_still_run(make_executor, caplog):
    executor = make_executor(max_workers=1)
    blocker = Blocker()
    future = executor.submit(blocker)
    second = threading.Event()
    future.add_done_callback(lambda f: 1 / 0)
    future.add_done_callback(lambda f: second.set())
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        blocker.release.set()
        assert second.wait(TIMEOUT)
    assert "exception calling callback" in caplog.text
    assert executor.submit(pow, 2, 3).result(TIMEOUT) == 8


# wait and as_completed


def test_wait_return_conditions(make_executor):
    executor = make_executor(max_workers=3)
    blocker = Blocker()
    slow = executor.submit(blocker)
    fast = executor.submit(pow, 2, 3)
    done, not_done = wait([fast, slow], timeout=TIMEOUT, return_when=FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    failing = executor.submit(fail_with, ValueError("x"))
    done, not_done = wait([slow, failing], timeout=TIMEOUT, return_when=FIRST_EXCEPTION)
    assert done == {failing} and not_done == {slow}
    done, not_done = wait([slow], timeout=0.05)
    assert done == set() and not_done == {slow}
    blocker.release.set()
    done, not_done = wait([fast, slow, failing], timeout=TIMEOUT)
    assert done == {fast, slow, failing} and not_done == set()


def test_as_completed(make_executor):
    executor = make_executor(max_workers=3)
    blocker = Blocker()
    slow = executor.submit(blocker)
    quick = [executor.submit(pow, 2, i) for i in range(5)]
    with pytest.raises(concurrent.futures.TimeoutError):
        for _ in as_completed([slow], timeout=0.05):
            pass
    first_five = []
    for future in as_completed(quick + [slow], timeout=TIMEOUT):
        first_five.append(future)
        if len(first_five) == 5:
            blocker.release.set()
    assert set(first_five[:5]) == set(quick) and first_five[5] is slow


# Shutdown


def test_submit_after_shutdown_raises(make_executor):
    executor = make_executor(max_workers=1)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(pow, 2, 2)
    executor.shutdown(wait=True)  # again: no effect


def test_shutdown_with_wait_runs_every_queued_call(make_executor):
    executor = make_executor(max_workers=1)
    futures = [executor.submit(pow, 2, i) for i in range(50)]
    executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2**i for i in range(50)]


def test_shutdown_without_wait_returns_while_calls_run(make_executor):
    executor = make_executor(max_workers=1)
    blocker = Blocker()
    running = executor.submit(blocker)
    queued = executor.submit(pow, 2, 2)
    assert blocker.started.wait(TIMEOUT)
    executor.shutdown(wait=False)
    assert not running.done()
    blocker.release.set()
    assert running.result(TIMEOUT) == "released" and queued.result(TIMEOUT) == 4


def test_shutdown_cancel_futures_cancels_only_what_has_not_started(make_executor):
    executor = make_executor(max_workers=1)
    blocker = Blocker()
    running = executor.submit(blocker)
    assert blocker.started.wait(TIMEOUT)
    ran = []
    queued = [executor.submit(ran.append, i) for i in range(5)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert not running.cancelled()
    blocker.release.set()
    executor.shutdown(wait=True)
    assert running.result() == "released" and ran == []


def test_wait_sees_futures_that_shutdown_cancelled(make_executor, executor_class):
    if executor_class is ThreadPoolExecutor:
        pytest.xfail("CPython gh-109934: futures cancelled by shutdown never notify wait()")
    executor = make_executor(max_workers=1)
    blocker = Blocker()
    executor.submit(blocker)
    assert blocker.started.wait(TIMEOUT)
    queued = [executor.submit(pow, 2, i) for i in range(3)]
    executor.shutdown(wait=False, cancel_futures=True)
    done, not_done = wait(queued, timeout=1.0)
    blocker.release.set()
    assert done == set(queued) and not_done == set()


def test_context_manager_shuts_down_and_waits(executor_class):
    with executor_class(max_workers=1) as executor:
        futures = [executor.submit(pow, 3, i) for i in range(10)]
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 2)


def test_shutdown_with_wait_from_inside_a_call_raises_and_shuts_down(make_executor):
    executor = make_executor(max_workers=2)
    future = executor.submit(lambda: executor.shutdown(wait=True))
    with pytest.raises(RuntimeError, match="cannot join current thread"):
        future.result(TIMEOUT)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 2)


def test_shutdown_without_wait_from_inside_a_call(make_executor):
    executor = make_executor(max_workers=1)
    go = threading.Event()

    def stop():
        assert go.wait(TIMEOUT)
        executor.shutdown(wait=False)

    stopper = executor.submit(stop)
    queued = executor.submit(pow, 2, 3)
    go.set()
    assert stopper.result(TIMEOUT) is None
    assert queued.result(TIMEOUT) == 8  # queued before the shutdown: still runs
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 2)


def run_script(executor_class, body: str) -> subprocess.CompletedProcess:
    """Runs ``body`` in a fresh interpreter with ``Executor`` bound to the class under test."""
    if executor_class is ThreadPoolExecutor:
        header = "from concurrent.futures import ThreadPoolExecutor as Executor\n"
    else:
        header = "from taskrunner.executor import Executor\n"
    return subprocess.run(
        [sys.executable, "-c", header + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_interpreter_exit_runs_queued_calls_before_atexit_hooks(executor_class):
    result = run_script(
        executor_class,
        """
        import atexit, time
        done = []
        def work(i):
            time.sleep(0.002)
            done.append(i)
        def at_exit():
            print("before atexit hooks:", len(done))
            try:
                executor.submit(work, -1)
            except RuntimeError as error:
                print("submit at exit:", error)
        executor = Executor(max_workers=2)
        for i in range(100):
            executor.submit(work, i)
        atexit.register(at_exit)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "before atexit hooks: 100" in result.stdout
    assert "submit at exit: cannot schedule new futures after shutdown" in result.stdout


@pytest.mark.parametrize("cancel_futures", [False, True], ids=["plain", "cancel_futures"])
def test_exit_after_shutdown_without_wait_lets_a_running_call_finish(
    executor_class, cancel_futures
):
    # CPython's test_hang_gh83386 and test_cancel_futures_wait_false, which can
    # only run ThreadPoolExecutor itself.
    result = run_script(
        executor_class,
        f"""
        import threading, time
        started = threading.Event()
        def sleep_and_print():
            started.set()
            time.sleep(0.2)
            print("apple", flush=True)
        executor = Executor(max_workers=3)
        executor.submit(sleep_and_print)
        started.wait(30)
        executor.shutdown(wait=False, cancel_futures={cancel_futures})
        """,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.strip() == "apple"


def test_executor_collected_without_shutdown_finishes_its_calls(executor_class):
    result = run_script(
        executor_class,
        """
        import gc, os, threading, time, weakref
        def threads():
            return len(os.listdir("/proc/self/task"))
        baseline = threads()
        release = threading.Event()
        executor = Executor(max_workers=2)
        futures = [executor.submit(release.wait, 30)]
        futures += [executor.submit(pow, 2, i) for i in range(20)]
        reference = weakref.ref(executor)
        del executor
        gc.collect()
        print("collected:", reference() is None)
        release.set()
        print("results:", [f.result(30) for f in futures[1:]] == [2**i for i in range(20)])
        deadline = time.monotonic() + 30
        while threads() > baseline and time.monotonic() < deadline:
            time.sleep(0.01)
        print("threads gone:", threads() <= baseline)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "collected: True" in result.stdout
    assert "results: True" in result.stdout
    assert "threads gone: True" in result.stdout


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_submit_raises_when_no_thread_can_start(executor_class):
    # A cap on the address space leaves no room for a thread's stack. A fresh
    # executor has no thread yet that could take the call (taskrunner's could
    # not start its first worker either).
    result = run_script(
        executor_class,
        """
        import resource
        def address_space():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.setrlimit(resource.RLIMIT_AS, (address_space() + (4 << 20), unlimited[1]))
        try:
            executor = Executor(max_workers=4)
            executor.submit(pow, 2, 2)
        except RuntimeError as error:
            print("submit raised RuntimeError:", error)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, unlimited)
        print("later call:", executor.submit(pow, 2, 3).result(30))
        executor.shutdown()
        """,
    )
    if "cannot allocate memory for thread-local data" in result.stderr:
        # Where the cap falls on glibc's own allocation for the new thread,
        # glibc aborts the process before pthread_create can return an error.
        pytest.skip("glibc aborted the thread's start itself (its thread-local data)")
    assert result.returncode == 0, result.stderr
    assert "submit raised RuntimeError:" in result.stdout
    assert "later call: 8" in result.stdout


# Construction, workers and threads


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(executor_class, bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        executor_class(max_workers=bad)


def test_default_max_workers(make_executor):
    cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
    assert make_executor()._max_workers == min(32, (cpu_count() or 1) + 4)


def test_initializer_must_be_callable(executor_class):
    with pytest.raises(TypeError, match="initializer must be a callable"):
        executor_class(initializer=42)


def test_max_workers_caps_concurrent_calls(make_executor):
    executor = make_executor(max_workers=2)
    lock = threading.Lock()
    active, peak = [0], [0]
    both_in = threading.Barrier(2, timeout=TIMEOUT)

    def call(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if i < 2:
            both_in.wait()  # the first two calls do meet: two threads at once
        with lock:
            active[0] -= 1

    list(executor.map(call, range(40)))
    assert peak[0] == 2


def test_thread_names_use_the_prefix(make_executor):
    executor = make_executor(max_workers=3, thread_name_prefix="SpecialPool")
    all_in = threading.Barrier(3, timeout=TIMEOUT)

    def name_when_all_in():
        all_in.wait()
        return thread_name()

    names = [f.result(TIMEOUT) for f in [executor.submit(name_when_all_in) for _ in range(3)]]
    assert sorted(names) == ["SpecialPool_0", "SpecialPool_1", "SpecialPool_2"]


def test_default_thread_names_differ_between_executors(make_executor):
    first = make_executor(max_workers=1).submit(thread_name).result(TIMEOUT)
    second = make_executor(max_workers=1).submit(thread_name).result(TIMEOUT)
    assert re.fullmatch(r"\w+-\d+_0", first) and re.fullmatch(r"\w+-\d+_0", second)
    assert first != second


def test_initializer_runs_in_the_worker_before_its_calls(make_executor):
    local = threading.local()

    def initializer(tag):
        local.tag = tag
        local.thread = thread_name()

    executor = make_executor(max_workers=2, initializer=initializer, initargs=("ready",))
    tag, init_thread, call_thread = executor.submit(
        lambda: (local.tag, local.thread, thread_name())
    ).result(TIMEOUT)
    assert tag == "ready" and init_thread == call_thread


def test_what_the_initializer_sets_up_is_there_for_every_call(make_executor):
    local = threading.local()

    def initializer():
        local.session = object()

    executor = make_executor(max_workers=1, initializer=initializer)
    for _ in range(3):  # each call finds the worker idle, with no work queued
        assert executor.submit(lambda: local.session is not None).result(TIMEOUT)


def test_the_initializer_runs_once_per_worker_thread(make_executor):
    calls = []
    executor = make_executor(max_workers=1, initializer=lambda: calls.append(thread_name()))
    for _ in range(3):  # each call finds the worker idle, with no work queued
        executor.submit(pow, 2, 2).result(TIMEOUT)
    futures = [executor.submit(pow, 2, i) for i in range(20)]
    wait(futures, timeout=TIMEOUT)
    assert calls == [executor.submit(thread_name).result(TIMEOUT)]


def test_an_idle_worker_takes_the_next_call(make_executor):
    # CPython's test_idle_thread_reuse, which counts ThreadPoolExecutor._threads.
    executor = make_executor(max_workers=4)
    names = {executor.submit(thread_name).result(TIMEOUT) for _ in range(3)}
    assert len(names) == 1


def test_thread_local_state_lasts_between_calls(make_executor):
    executor = make_executor(max_workers=1)
    local = threading.local()

    def remember():
        local.value = "kept"

    executor.submit(remember).result(TIMEOUT)
    for _ in range(3):  # each call finds the worker idle, with no work queued
        assert executor.submit(lambda: getattr(local, "value", None)).result(TIMEOUT) == "kept"


def test_a_name_set_by_a_call_stays_with_its_worker(make_executor):
    executor = make_executor(max_workers=1)

    def rename():
        threading.current_thread().name = "renamed"

    executor.submit(rename).result(TIMEOUT)
    assert executor.submit(thread_name).result(TIMEOUT) == "renamed"


def test_failing_initializer_breaks_the_pool(make_executor, caplog):
    def initializer():
        raise ValueError("error in initializer")

    executor = make_executor(max_workers=1, initializer=initializer)
    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        try:
            future = executor.submit(pow, 2, 2)
        except BrokenThreadPool:
            pass  # already broken: allowed
        else:
            with pytest.raises(BrokenThreadPool):
                future.result(TIMEOUT)
    assert "Exception in initializer:" in caplog.text
    assert "error in initializer" in caplog.text
    with pytest.raises(BrokenThreadPool):
        executor.submit(pow, 2, 2)


def test_broken_is_false_until_an_initializer_fails_then_the_reason(make_executor):
    # CPython's own tests, and some user code, read this private attribute.
    def initializer():
        raise ValueError("error in initializer")

    assert make_executor(max_workers=1)._broken is False
    executor = make_executor(max_workers=1, initializer=initializer)
    assert executor._broken is False
    try:
        executor.submit(pow, 2, 2).exception(TIMEOUT)
    except BrokenThreadPool:
        pass  # already broken: allowed
    assert wait_for(lambda: executor._broken)
    assert executor._broken == "A thread initializer failed, the thread pool is not usable anymore"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_exits_without_waiting_for_the_parents_calls(executor_class):
    # multiprocessing's fork children run the executors' exit hook before they
    # leave; the calls queued or running in the parent are not theirs to wait for.
    result = run_script(
        executor_class,
        """
        import multiprocessing, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        release = threading.Event()
        executor = Executor(max_workers=1)
        running = executor.submit(release.wait, 30)
        queued = executor.submit(pow, 2, 2)
        child = multiprocessing.get_context("fork").Process(target=print, args=("child ran",))
        child.start()
        child.join(20)
        print("child exit code:", child.exitcode)
        release.set()
        print("parent results:", running.result(30), queued.result(30))
        executor.shutdown()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "child ran" in result.stdout
    assert "child exit code: 0" in result.stdout
    assert "parent results: True 4" in result.stdout


@pytest.mark.slow
def test_a_flood_of_tiny_calls_completes(make_executor):
    executor = make_executor()
    futures = [executor.submit(abs, -i) for i in range(100_000)]
    done, not_done = wait(futures, timeout=120)
    assert not not_done
    assert sum(f.result() for f in futures) == sum(range(100_000))


# taskrunner.Executor only


def test_finished_calls_leave_no_records_behind():
    with Executor(max_workers=2) as executor:
        for _ in range(5):
            wait([executor.submit(abs, -i) for i in range(5_000)], timeout=60)
    assert sum(executor._runner.counts().values()) == 0  # of 25,000 calls


def test_queued_calls_fail_with_the_submit_error_when_no_worker_is_left(monkeypatch):
    # What the core does when no worker thread can start and none is left,
    # staged: it fails the queued tasks, and the executor their futures.
    executor = Executor(max_workers=1)
    blocker = Blocker()
    running = executor.submit(blocker)
    assert blocker.started.wait(TIMEOUT)
    queued = executor.submit(pow, 2, 2)

    def no_thread(item):
        raise RuntimeError("cannot start a worker thread: staged")

    monkeypatch.setattr(executor, "_submit_task", no_thread)
    monkeypatch.setattr(executor._runner, "stats", lambda: {"workers": 0})
    with pytest.raises(RuntimeError, match="cannot start a worker thread: staged"):
        executor.submit(pow, 2, 3)
    with pytest.raises(RuntimeError, match="cannot start a worker thread: staged"):
        queued.result(TIMEOUT)
    blocker.release.set()
    assert running.result(TIMEOUT) == "released"
    executor.shutdown(wait=True)


def test_shutdown_cancels_only_the_calls_whose_tasks_the_core_cancels():
    # A worker may have taken a call's task (the core then refuses to cancel
    # it) before it gets to the call in Python: such a call must run, not be
    # cancelled. Staged here by a handle that refuses, as the core does then.
    executor = Executor(max_workers=1)
    blocker = Blocker()
    running = executor.submit(blocker)
    assert blocker.started.wait(TIMEOUT)
    ran = []
    taken, queued = executor.submit(ran.append, "taken"), executor.submit(ran.append, "queued")

    class TakenByAWorker:
        def cancel(self):
            return False

    (taken_item,) = [item for item in executor._context.queued if item.future is taken]
    real_handle, taken_item.handle = taken_item.handle, TakenByAWorker()
    executor.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled() and not taken.cancelled() and not taken.done()
    blocker.release.set()
    assert running.result(TIMEOUT) == "released"
    assert taken.result(TIMEOUT) is None and ran == ["taken"]
    executor.shutdown(wait=True)
    assert real_handle.done()


def test_is_a_concurrent_futures_executor():
    assert issubclass(Executor, concurrent.futures.Executor)


# Futures of task handles


def test_handle_future_settles_with_the_result(runner):
    handle = runner.submit(Blocking(21, wait=0.05), kind="blocking")
    future = handle.future()
    assert isinstance(future, Future)
    assert future.result(TIMEOUT) == 21
    done_future = handle.future()
    assert done_future.done() and done_future.result() == 21


def test_handle_future_settles_with_the_exception(runner):
    class Failing(Blocking):
        def run(self):
            raise KeyError("lost")

    future = runner.submit(Failing(), kind="blocking").future()
    error = future.exception(TIMEOUT)
    assert isinstance(error, KeyError) and error.args == ("lost",)


def test_handle_future_of_a_timed_out_task(runner):
    future = runner.submit(Polling(1, wait=30), kind="polling", timeout=0.05).future()
    assert isinstance(future.exception(TIMEOUT), TaskTimeoutError)


def test_cancelling_the_future_cancels_a_pending_task(one_worker):
    gate = Gate()
    running = one_worker.submit(gate, kind="blocking")
    assert gate.entered.wait(TIMEOUT)
    pending = one_worker.submit(Blocking(2), kind="blocking")
    running_future, pending_future = running.future(), pending.future()
    assert running_future.running() and not pending_future.running()
    assert not running_future.cancel()  # a running blocking task cannot be cancelled
    assert pending_future.cancel() and pending_future.cancelled()
    assert pending.state == "cancelled"
    gate.release.set()
    assert running_future.result(TIMEOUT) == "released"


def test_cancelling_the_future_cancels_a_running_polling_task(runner):
    handle = runner.submit(Polling(1, wait=30), kind="polling")
    future = handle.future()
    assert wait_for(future.running)
    assert future.cancel() and handle.state == "cancelled"


def test_a_task_cancelled_elsewhere_cancels_the_future_and_wakes_wait(one_worker):
    gate = Gate()
    one_worker.submit(gate, kind="blocking")
    pending = one_worker.submit(Blocking(2), kind="blocking")
    future = pending.future()
    woke = threading.Event()
    waiter = threading.Thread(target=lambda: wait([future], timeout=TIMEOUT) and woke.set())
    waiter.start()
    assert one_worker.cancel(pending.id)
    assert woke.wait(TIMEOUT)
    waiter.join(TIMEOUT)
    assert future.cancelled()
    gate.release.set()


def test_wait_and_as_completed_work_on_task_futures(runner):
    handles = [runner.submit(Blocking(i, wait=0.01 * i), kind="blocking") for i in range(5)]
    futures = [h.future() for h in handles]
    assert {f.result() for f in as_completed(futures, timeout=TIMEOUT)} == set(range(5))
    done, not_done = wait(futures, timeout=TIMEOUT)
    assert len(done) == 5 and not not_done


def test_future_of_refuses_what_is_not_a_handle():
    from taskrunner.executor import future_of

    with pytest.raises(TypeError):
        future_of(Future())
