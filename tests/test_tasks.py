"""``taskrunner.tasks``: programs, futures and functions as tasks, through a real runner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import taskrunner
from taskrunner.tasks import CallableTask, FutureTask, SubprocessTask

from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
SLEEP = "import time; time.sleep(60)"


def python(code: str, **options) -> SubprocessTask:
    return SubprocessTask([sys.executable, "-c", code], **options)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# SubprocessTask


def test_a_program_gives_its_return_code_and_output(runner):
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    handle = runner.submit(python(code))
    assert handle.result(30) == {
        "returncode": 3,
        "stdout": "out\n",
        "stderr": "err\n",
        "truncated": False,
    }
    assert handle.state == "succeeded"  # a non-zero return code is a result
    assert handle.kind == "polling"


def test_check_fails_the_task_with_the_return_code_and_output(runner):
    code = "import sys; print('partial'); sys.exit('broken')"
    handle = runner.submit(python(code, check=True))
    error = handle.exception(30)
    assert isinstance(error, subprocess.CalledProcessError)
    assert (error.returncode, error.stdout, error.stderr) == (1, "partial\n", "broken\n")
    assert runner.submit(python("pass", check=True)).result(30)["returncode"] == 0


def test_stdin_is_fed_and_is_empty_by_default(runner):
    echo = "import sys; print(sys.stdin.read().upper(), end='')"
    assert runner.submit(python(echo, stdin="héllo")).result(30)["stdout"] == "HÉLLO"
    assert runner.submit(python(echo, stdin=b"bytes")).result(30)["stdout"] == "BYTES"
    assert runner.submit(python(echo)).result(30)["stdout"] == ""


def test_each_stream_keeps_its_last_max_output_bytes(runner):
    code = "import sys; print('x' * 1000 + 'END'); print('short', file=sys.stderr)"
    output = runner.submit(python(code, max_output=6)).result(30)
    assert output["stdout"] == "xxEND\n"
    assert output["stderr"] == "short\n"
    assert output["truncated"] is True


def test_a_cut_inside_a_character_starts_at_the_next_whole_one(runner):
    # Five bytes of "ééé" (two bytes each): the first kept byte is half a character.
    code = "import sys; sys.stdout.buffer.write('ééé'.encode())"
    output = runner.submit(python(code, max_output=5)).result(30)
    assert output == {"returncode": 0, "stdout": "éé", "stderr": "", "truncated": True}


def test_bytes_that_are_not_utf8_are_replaced(runner):
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff')"
    assert runner.submit(python(code)).result(30)["stdout"] == "ok \ufffd"


def test_a_missing_program_fails_the_task_with_file_not_found(runner, tmp_path):
    handle = runner.submit(SubprocessTask([str(tmp_path / "no-such-program")]))
    assert isinstance(handle.exception(30), FileNotFoundError)
    assert handle.status()["error"]["type"] == "FileNotFoundError"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("ls -l", "must be a list such as"),
        (b"ls", "must be a list such as"),
        ([], "non-empty"),
        (("ls", 3), "str, bytes or a path"),
    ],
)
def test_bad_args_are_refused(args, says):
    with pytest.raises(TypeError, match=says):
        SubprocessTask(args)


def test_paths_and_bytes_are_arguments(runner, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys; print(sys.argv[1:])")
    handle = runner.submit(SubprocessTask([Path(sys.executable), script, b"raw"]))
    assert handle.result(30)["stdout"] == "['raw']\n"


@pytest.mark.parametrize(
    "options", [{"max_output": -1}, {"max_output": 1.5}, {"terminate_grace": -1}]
)
def test_bad_limits_are_refused(options):
    with pytest.raises(ValueError):
        python("pass", **options)


def test_cancel_terminates_the_program(runner):
    task = python(SLEEP)
    handle = runner.submit(task)
    assert wait_for(lambda: task.pid is not None)
    assert runner.cancel(handle.id)
    assert handle.state == "cancelled"
    assert wait_for(lambda: task.returncode is not None)
    assert task.returncode == -signal.SIGTERM
    assert gone(task.pid)


def test_a_timeout_terminates_the_program(runner):
    task = python(SLEEP)
    handle = runner.submit(task, timeout=0.2)
    with pytest.raises(taskrunner.TaskTimeoutError):
        handle.result(30)
    assert wait_for(lambda: task.returncode is not None)
    assert task.returncode == -signal.SIGTERM
    assert gone(task.pid)


def ignoring_sigterm(marker: Path, grace: float) -> SubprocessTask:
    code = f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(60)
    """
    return python(textwrap.dedent(code), terminate_grace=grace)


def test_a_program_that_ignores_sigterm_is_killed_after_the_grace(runner, tmp_path):
    marker = tmp_path / "ignoring"
    task = ignoring_sigterm(marker, grace=2.0)
    handle = runner.submit(task)
    assert wait_for(marker.exists, timeout=30)
    began = time.monotonic()
    assert handle.cancel()
    assert time.monotonic() - began < 1.0, "cancel() waited for the grace"
    assert task.returncode is None  # still in its grace
    assert wait_for(lambda: task.returncode is not None, timeout=30)
    assert task.returncode == -signal.SIGKILL
    assert time.monotonic() - began >= 1.9
    assert gone(task.pid)


@pytest.mark.slow
def test_at_exit_a_program_in_its_grace_is_killed(tmp_path):
    marker = tmp_path / "ignoring"
    script = f"""
        import pathlib, signal, sys, textwrap, time
        import taskrunner
        from taskrunner.tasks import SubprocessTask
        code = textwrap.dedent('''
            import pathlib, signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(60)
        ''')
        task = SubprocessTask([sys.executable, "-c", code], terminate_grace=1.0)
        taskrunner.TaskRunner().submit(task)
        while not pathlib.Path({str(marker)!r}).exists():
            time.sleep(0.01)
        print(task.pid, flush=True)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert gone(int(out.stdout))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_no_file_descriptors_leak_over_50_runs(runner, tmp_path):
    def batch(n: int) -> list[SubprocessTask]:
        tasks = []
        for i in range(n):
            if i % 10 == 0:
                tasks.append(SubprocessTask([str(tmp_path / "missing")]))
            else:
                tasks.append(python("print('x' * 10_000)", stdin=b"in" if i % 2 else None))
        handles = [runner.submit(task) for task in tasks]
        running = python(SLEEP, terminate_grace=0)
        handle = runner.submit(running)
        assert wait_for(lambda: running.pid is not None)
        handle.cancel()
        runner.wait(handles, timeout=60)
        assert all(h.done() for h in handles)
        assert wait_for(lambda: running.returncode is not None)
        return tasks

    batch(2)  # the runner's own threads and files exist from here on
    gc.collect()
    before = open_fds()
    tasks = batch(50)
    assert sum(task.returncode == 0 for task in tasks) == 45
    gc.collect()
    assert open_fds() <= before


def test_the_task_pickles_as_what_to_run(runner):
    task = python("import sys; print(sys.stdin.read())", stdin="again", max_output=3)
    assert runner.submit(task).result(30)["stdout"] == "in\n"
    copy = pickle.loads(pickle.dumps(task))
    assert copy.pid is None
    assert runner.submit(copy).result(30)["stdout"] == "in\n"


def test_a_task_runs_once(runner):
    task = python("pass")
    runner.submit(task).result(30)
    with pytest.raises(RuntimeError, match="runs once"):
        task.run()


def test_get_output_after_cancel_raises_cancelled():
    task = python(SLEEP, terminate_grace=0)
    task.run()
    task.cancel()
    task.cancel()  # a second call does nothing
    with pytest.raises(concurrent.futures.CancelledError):
        task.get_output()
    assert wait_for(lambda: task.returncode == -signal.SIGTERM)


# FutureTask


def test_a_future_s_result_is_the_task_s(runner):
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    handle = runner.submit(FutureTask(future))
    assert handle.kind == "polling"  # registered: known before it runs
    assert wait_for(lambda: handle.state == "running")
    future.set_result(42)
    assert handle.result(30) == 42


def test_a_future_s_exception_fails_the_task(runner):
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.set_exception(KeyError("lost"))
    handle = runner.submit(FutureTask(future))
    error = handle.exception(30)
    assert isinstance(error, KeyError) and error.args == ("lost",)


def test_a_cancelled_future_fails_the_task_with_cancelled_error(runner):
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    handle = runner.submit(FutureTask(future))
    future.cancel()
    assert type(handle.exception(30)) is concurrent.futures.CancelledError
    assert handle.state == "failed"


def test_a_none_result_ends_the_task_without_polls(runner):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        handle = runner.submit(FutureTask(pool.submit(time.sleep, 0.2)))
        assert handle.result(30) is None
    assert handle.state == "succeeded"
    assert handle.status()["polls"] == 0


def test_cancelling_the_task_cancels_the_future(runner):
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    handle = runner.submit(FutureTask(future))
    assert wait_for(lambda: handle.state == "running")
    assert handle.cancel()
    assert wait_for(future.cancelled)


def test_an_asyncio_future_is_refused():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="belongs to its event loop"):
            FutureTask(loop.create_future())
    finally:
        loop.close()
    with pytest.raises(TypeError):
        FutureTask(42)


# CallableTask


def describe(a, b=0, *, fn="kw"):
    return (a, b, fn)


def test_a_function_s_arguments_and_result(runner):
    task = CallableTask(describe, 1, b=2, fn="passed on")
    handle = runner.submit(task)
    assert handle.kind == "blocking"
    assert handle.result(30) == (1, 2, "passed on")


def test_a_function_s_none_is_a_result(runner):
    handle = runner.submit(CallableTask(time.sleep, 0.01))
    assert handle.result(30) is None
    assert handle.state == "succeeded"


def test_a_function_s_exception_fails_the_task(runner):
    handle = runner.submit(CallableTask(int, "nine"))
    assert isinstance(handle.exception(30), ValueError)


def test_the_name_is_the_function_s_and_submit_takes_it(runner):
    task = CallableTask(describe, 1)
    assert task.name == "describe"
    assert runner.submit(task).status()["name"] == "CallableTask"  # the class, unless told
    assert runner.submit(CallableTask(describe, 1), name=task.name).name == "describe"
    assert CallableTask(dict.fromkeys, "ab").name == "dict.fromkeys"
    assert repr(CallableTask(describe, 1, fn="x")) == "<CallableTask describe(1, fn='x')>"


def test_a_callable_is_required():
    with pytest.raises(TypeError):
        CallableTask(42)


def test_tasks_is_part_of_the_package():
    assert taskrunner.tasks.SubprocessTask is SubprocessTask
    assert "tasks" in taskrunner.__all__


# The examples


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "line"),
    [
        ("subprocess_tasks.py", "slow program: timed_out after 0.5 s, ended by signal 15"),
        ("future_tasks.py", "signal: None, state succeeded, polls 0"),
        ("callable_tasks.py", "nap: succeeded, None  (<CallableTask nap(0.3)>)"),
    ],
)
def test_an_example_runs(script, line):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert line in out.stdout.splitlines()
