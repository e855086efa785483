"""Futures made elsewhere, followed as tasks.

A FutureTask ends when its concurrent.futures.Future does, with its result or
its exception, and shows up in the runner's status dicts like any other task.
It holds no thread and is not polled while it waits.
"""

import concurrent.futures
import threading
import time

import taskrunner
from taskrunner.tasks import FutureTask


def slow_square(n: int) -> int:
    time.sleep(0.2)
    return n * n


if __name__ == "__main__":
    with (
        concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool,
        taskrunner.TaskRunner() as runner,
    ):
        squares = [runner.submit(FutureTask(pool.submit(slow_square, n))) for n in range(5)]
        broken = runner.submit(FutureTask(pool.submit(int, "forty-two")))

        # A future set by another thread: its result is None, and the task still ends.
        signal: concurrent.futures.Future[None] = concurrent.futures.Future()
        threading.Timer(0.3, signal.set_result, (None,)).start()
        nothing = runner.submit(FutureTask(signal))

        print(f"squares: {[handle.result(30) for handle in squares]}")
        print(f"broken: {type(broken.exception(30)).__name__}: {broken.exception()}")
        result, polls = nothing.result(30), nothing.status()["polls"]
        print(f"signal: {result!r}, state {nothing.state}, polls {polls}")
