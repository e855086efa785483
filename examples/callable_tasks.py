"""Functions as tasks: each CallableTask calls its function on a worker thread.

A function's return value is the task's result (None too), what it raises
fails the task, and ``name=task.name`` puts the function's name in the
status dict (it would otherwise be the class name, CallableTask).
"""

import hashlib
import time

import taskrunner
from taskrunner.tasks import CallableTask


def digest(data: bytes, *, rounds: int = 1) -> str:
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


def nap(seconds: float) -> None:
    time.sleep(seconds)


if __name__ == "__main__":
    with taskrunner.TaskRunner() as runner:
        tasks = [
            CallableTask(digest, b"taskrunner", rounds=10_000),
            CallableTask(nap, 0.3),
            CallableTask(int, "not a number"),
        ]
        handles = [runner.submit(task, name=task.name) for task in tasks]
        runner.wait(handles, timeout=30)
        for task, handle in zip(tasks, handles, strict=True):
            status = handle.status()
            outcome = status["result"] if status["error"] is None else status["error"]["message"]
            print(f"{status['name']}: {status['state']}, {outcome!r}  ({task!r})")
