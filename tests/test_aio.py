"""asyncio: awaiting task handles, and AsyncRunner's coroutine waits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import pytest

from taskrunner import DoneAndNotDone, TaskRunner, TaskTimeoutError
from taskrunner.aio import AsyncRunner, as_completed

from conftest import Blocking, Gate, Polling

TIMEOUT = 10.0


class Failing(Blocking):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def run(self):
        raise self.error


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def occupy(runner: TaskRunner) -> Gate:
    """Holds the runner's only worker until the gate is released."""
    gate = Gate()
    runner.submit(gate, kind="blocking")
    assert gate.entered.wait(TIMEOUT)
    return gate


# await handle


def test_await_a_handle_gives_the_result(runner):
    async def main():
        blocking = runner.submit(Blocking(3, wait=0.05), kind="blocking")
        polling = runner.submit(Polling(4, wait=0.05), kind="polling")
        return await blocking, await polling

    assert run(main()) == (3, 4)


def test_await_a_finished_handle(runner):
    handle = runner.submit(Blocking(5), kind="blocking")
    handle.result(TIMEOUT)

    async def main():
        return await handle

    assert run(main()) == 5


def test_await_raises_what_the_task_raised(runner):
    async def main():
        with pytest.raises(KeyError, match="lost"):
            await runner.submit(Failing(KeyError("lost")), kind="blocking")
        with pytest.raises(TaskTimeoutError):
            await runner.submit(Polling(1, wait=30), kind="polling", timeout=0.05)

    run(main())


def test_a_task_raising_stop_iteration_does_not_end_the_await_silently(runner):
    async def main():
        with pytest.raises(RuntimeError, match="StopIteration"):
            await runner.submit(Failing(StopIteration()), kind="blocking")

    run(main())


def test_await_a_cancelled_task_cancels_the_awaiter(one_worker):
    gate = occupy(one_worker)
    pending = one_worker.submit(Blocking(1), kind="blocking")

    async def main():
        waiter = asyncio.ensure_future(_await(pending))
        await asyncio.sleep(0)
        assert one_worker.cancel(pending.id)
        with pytest.raises(asyncio.CancelledError):
            await waiter

    run(main())
    gate.release.set()


async def _await(handle):
    return await handle


def test_several_coroutines_await_one_handle(runner):
    handle = runner.submit(Blocking(7, wait=0.05), kind="blocking")

    async def main():
        return await asyncio.gather(_await(handle), _await(handle), _await(handle))

    assert run(main()) == [7, 7, 7]


def test_awaiting_does_not_block_the_loop(runner):
    async def main():
        gate = Gate()
        handle = runner.submit(gate, kind="blocking")
        ticks = 0

        async def ticker():
            nonlocal ticks
            while not handle.done():
                ticks += 1
                if ticks == 20:
                    gate.release.set()
                await asyncio.sleep(0.001)

        result, _ = await asyncio.gather(_await(handle), ticker())
        return result, ticks

    result, ticks = run(main())
    assert result == "released" and ticks >= 20


def test_await_outside_a_loop_is_refused(runner):
    handle = runner.submit(Blocking(1), kind="blocking")
    with pytest.raises(RuntimeError):
        handle.__await__()


# Cancelling the awaiter


def test_wait_for_timeout_cancels_a_pending_task_and_the_runner_goes_on(one_worker):
    gate = occupy(one_worker)
    pending = one_worker.submit(Blocking(1), kind="blocking")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pending, 0.05)

    run(main())
    assert pending.state == "cancelled"
    gate.release.set()
    assert one_worker.submit(Blocking(9), kind="blocking").result(TIMEOUT) == 9
    assert one_worker.counts()["running"] == 0


def test_wait_for_timeout_leaves_a_running_blocking_task_running(one_worker):
    gate = occupy(one_worker)
    running = one_worker.handle(1)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(running, 0.05)
        assert running.state == "running"
        gate.release.set()
        return await running

    assert run(main()) == "released"


def test_cancelling_the_awaiting_task_cancels_a_polling_task(runner):
    handle = runner.submit(Polling(1, wait=30), kind="polling")

    async def main():
        waiter = asyncio.ensure_future(_await(handle))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    run(main())
    assert handle.state == "cancelled"


def test_shield_keeps_the_task_when_the_awaiter_gives_up(one_worker):
    gate = occupy(one_worker)
    pending = one_worker.submit(Blocking(6), kind="blocking")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(pending), 0.05)
        assert pending.state == "pending"
        gate.release.set()
        return await pending

    assert run(main()) == 6


def test_a_task_ending_after_its_loop_closed_is_harmless(one_worker, caplog):
    gate = occupy(one_worker)
    pending = one_worker.submit(Blocking(1), kind="blocking")
    loop = asyncio.new_event_loop()
    waiter = loop.create_task(_await(pending))
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()  # with the awaiter still pending
    with caplog.at_level(logging.ERROR, logger="taskrunner"):
        gate.release.set()
        assert pending.result(TIMEOUT) == 1
        one_worker.shutdown(wait=True)
    assert "exception in a done callback" not in caplog.text
    assert not waiter.done()


# AsyncRunner


def test_async_runner_result_and_exception():
    async def main():
        async with AsyncRunner(max_workers=4) as runner:
            handle = runner.submit(Blocking(8, wait=0.05), kind="blocking")
            failing = runner.submit(Failing(ValueError("bad")), kind="blocking")
            assert await runner.result(handle.id) == 8
            assert await runner.result(handle) == 8
            assert isinstance(await runner.exception(failing.id), ValueError)
            with pytest.raises(ValueError):
                await runner.result(failing.id)
            assert runner.status(handle.id)["state"] == "succeeded"

    run(main())


def test_async_runner_result_timeout_leaves_the_task_alone(one_worker):
    gate = occupy(one_worker)
    runner = AsyncRunner(one_worker)
    pending = runner.submit(Blocking(3), kind="blocking")

    async def main():
        with pytest.raises(TimeoutError, match="not done"):
            await runner.result(pending.id, timeout=0.05)
        assert pending.state == "pending"
        gate.release.set()
        return await runner.result(pending.id, timeout=TIMEOUT)

    assert run(main()) == 3


def test_async_runner_result_of_a_cancelled_task(one_worker):
    gate = occupy(one_worker)
    runner = AsyncRunner(one_worker)
    pending = runner.submit(Blocking(3), kind="blocking")
    assert runner.cancel(pending.id)

    async def main():
        with pytest.raises(concurrent.futures.CancelledError):
            await runner.result(pending.id)

    run(main())
    gate.release.set()


def test_async_runner_as_completed_yields_ids_in_finishing_order():
    async def main():
        async with AsyncRunner() as runner:
            gates = [Gate() for _ in range(3)]
            ids = [runner.submit(gate, kind="blocking").id for gate in gates]
            finished = runner.submit(Blocking(0), kind="blocking")
            await runner.result(finished.id)
            order = []
            async for task_id in runner.as_completed(ids + [finished.id], timeout=TIMEOUT):
                order.append(task_id)
                if len(order) <= len(gates):  # release the gates last to first
                    gates[len(gates) - len(order)].release.set()
            return order, ids, finished.id

    order, ids, finished_id = run(main())
    assert order == [finished_id] + ids[::-1]


def test_async_runner_as_completed_timeout():
    async def main():
        async with AsyncRunner() as runner:
            gate = Gate()
            handle = runner.submit(gate, kind="blocking")
            quick = runner.submit(Blocking(1), kind="blocking")
            await runner.result(quick)
            seen = []
            with pytest.raises(TimeoutError, match="1 \\(of 2\\) tasks unfinished"):
                async for task_id in runner.as_completed([handle, quick], timeout=0.05):
                    seen.append(task_id)
            gate.release.set()
            return seen, quick.id

    seen, quick_id = run(main())
    assert seen == [quick_id]


def test_async_runner_wait():
    async def main():
        async with AsyncRunner() as runner:
            gate = Gate()
            slow = runner.submit(gate, kind="blocking")
            fast = runner.submit(Blocking(1, wait=0.01), kind="blocking")
            done, not_done = await runner.wait([slow, fast], return_when="FIRST_COMPLETED")
            assert done == {fast.id} and not_done == {slow.id}
            failing = runner.submit(Failing(ValueError()), kind="blocking")
            result = await runner.wait(return_when="FIRST_EXCEPTION", timeout=TIMEOUT)
            assert isinstance(result, DoneAndNotDone)
            assert failing.id in result.done and slow.id in result.not_done
            done, not_done = await runner.wait([slow.id], timeout=0.05)
            assert done == set() and not_done == {slow.id}
            gate.release.set()
            done, not_done = await runner.wait(timeout=TIMEOUT)
            assert done == {slow.id, fast.id, failing.id} and not_done == set()
            with pytest.raises(ValueError):
                await runner.wait(return_when="SOMETIMES")

    run(main())


def test_async_runner_shutdown_waits_without_blocking_the_loop():
    async def main():
        runner = AsyncRunner()
        gate = Gate()
        handle = runner.submit(gate, kind="blocking")
        shutdown = asyncio.ensure_future(runner.shutdown(wait=True))
        await asyncio.sleep(0.05)
        assert not shutdown.done() and runner.runner.closed
        gate.release.set()
        await shutdown
        return handle.state

    assert run(main()) == "succeeded"


def test_async_runner_arguments():
    with pytest.raises(TypeError):
        AsyncRunner(TaskRunner(), max_workers=2)
    runner = AsyncRunner(max_workers=3)
    assert runner.runner.max_workers == 3
    with pytest.raises(TypeError):
        runner.status("1")
    with pytest.raises(KeyError):
        runner.status(12345)
    runner.runner.shutdown()


def test_module_as_completed_across_runners():
    first, second = TaskRunner(), TaskRunner()
    try:

        async def main():
            handles = [
                first.submit(Blocking("a", wait=0.05), kind="blocking"),
                second.submit(Blocking("b"), kind="blocking"),
            ]
            return [await h async for h in as_completed(handles + handles[:1], timeout=TIMEOUT)]

        assert sorted(run(main())) == ["a", "b"]
    finally:
        first.shutdown()
        second.shutdown()


def test_many_awaits_at_once(runner):
    async def main():
        handles = [runner.submit(Blocking(i), kind="blocking") for i in range(2_000)]
        return await asyncio.gather(*(_await(h) for h in handles))

    assert run(main()) == list(range(2_000))


def test_done_callbacks_come_from_runner_threads(runner):
    # The loop hears of a finished task through call_soon_threadsafe: the
    # awaiting coroutine resumes on the loop's thread.
    async def main():
        await runner.submit(Blocking(1), kind="blocking")
        return threading.current_thread() is threading.main_thread()

    assert run(main())
