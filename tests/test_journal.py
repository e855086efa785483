"""The journal, from the library: what a runner writes, what a new runner on
the same file reads back, and what it does with the tasks a killed process
left unfinished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import taskrunner


class Double:
    """A blocking task: twice its input."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self) -> int:
        return 2 * self.n

    def get_output(self) -> int:
        return 2 * self.n


class Fails:
    def run(self) -> None:
        raise ValueError("no luck")

    def get_output(self) -> None:
        return None


class Returns:
    """Returns whatever it was given."""

    def __init__(self, value: object) -> None:
        self.value = value

    def run(self) -> object:
        return self.value

    def get_output(self) -> object:
        return self.value


class Unpicklable:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def run(self) -> int:
        return 1

    def get_output(self) -> int:
        return 1


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tasks.db")


def reopened(db: str, **kwargs) -> taskrunner.TaskRunner:
    return taskrunner.TaskRunner(journal=db, **kwargs)


def test_a_new_runner_on_the_file_gives_equal_status_dicts(db):
    with reopened(db) as runner:
        handles = [runner.submit(Double(i), kind="blocking") for i in range(50)]
        handles.append(runner.submit(Fails(), kind="blocking"))
        runner.wait()
        before = {h.id: h.status() for h in handles}
    with reopened(db) as runner:
        after = {i: runner.status(i) for i in before}
    assert after == before
    failed = after[handles[-1].id]
    assert failed["state"] == "failed" and failed["error"]["type"] == "ValueError"
    assert "no luck" in failed["error"]["traceback"]


def test_a_task_only_in_the_journal_answers_like_one_in_memory(db):
    with reopened(db, retain_finished=0) as runner:
        handle = runner.submit(Double(21), kind="blocking")
        assert handle.result(timeout=10) == 42
        runner.flush()
        assert runner.status(handle.id)["result"] == 42, "forgotten in memory, read back"
        assert runner.done(handle.id) and not runner.unfinished(handle.id)
        assert runner.handle(handle.id).result() == 42
        with pytest.raises(KeyError):
            runner.status(handle.id + 1)


def test_ids_continue_after_a_restart_and_are_never_reused(db):
    with reopened(db) as runner:
        last = [runner.submit(Double(i), kind="blocking").id for i in range(5)][-1]
    with reopened(db) as runner:
        assert runner.submit(Double(0), kind="blocking").id == last + 1


@pytest.mark.parametrize(
    "value",
    [None, True, 7, -(2**70), 1.5, 1e300, "text é", [1, "a"], {"a": [1, 2]}, (1, 2), {1, 2}, b"x"],
    ids=repr,
)
def test_results_come_back_equal_and_of_the_same_type(db, value):
    with reopened(db) as runner:
        handle = runner.submit(Returns(value), kind="blocking")
        handle.result(timeout=10)
    with reopened(db) as runner:
        back = runner.status(handle.id)["result"]
    assert back == value and type(back) is type(value)


def test_a_result_that_cannot_be_stored_becomes_its_repr_and_the_task_still_succeeds(db):
    with reopened(db) as runner:
        handle = runner.submit(Returns(threading.Lock()), kind="blocking")
        assert handle.result(timeout=10) is not None
        assert handle.status()["state"] == "succeeded"
    with reopened(db) as runner:
        back = runner.status(handle.id)
    assert back["state"] == "succeeded"
    assert isinstance(back["result"], str) and "lock" in back["result"]


def test_a_durable_task_must_be_picklable_and_needs_a_journal(db):
    with reopened(db) as runner:
        with pytest.raises(TypeError, match="picklable"):
            runner.submit(Unpicklable(), kind="blocking", durable=True)
        assert runner.tasks() == [], "nothing was submitted"
    with taskrunner.TaskRunner() as plain:
        with pytest.raises(ValueError, match="journal"):
            plain.submit(Double(1), durable=True)


def test_a_second_live_runner_on_the_file_is_refused_naming_the_owner(db):
    with reopened(db):
        with pytest.raises(taskrunner.JournalError, match=str(os.getpid())):
            reopened(db)


def test_a_file_that_is_not_a_journal_is_refused_clearly(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database at all\n" * 100)
    with pytest.raises(taskrunner.JournalError, match="notes.db"):
        taskrunner.TaskRunner(journal=str(path))
    assert path.read_text().startswith("not a database"), "left as it was"


def test_bad_journal_options_are_refused(db):
    with pytest.raises(ValueError, match="durability"):
        taskrunner.TaskRunner(journal=db, durability="sometimes")
    with pytest.raises(ValueError, match="journal_batch"):
        taskrunner.TaskRunner(journal=db, journal_batch=-1)


def test_flush_and_the_journal_attribute(db):
    with taskrunner.TaskRunner() as plain:
        assert plain.journal is None and plain.flush() is True
    with reopened(db, durability="full") as runner:
        assert runner.journal == db
        runner.submit(Double(1), kind="blocking").result(timeout=10)
        assert runner.flush(timeout=10) is True


# A process that journals durable and plain tasks which never end by
# themselves, says which ids it gave, then waits to be killed.
KILLED = textwrap.dedent(
    """
    import sys, threading, time
    sys.path.insert(0, sys.argv[2])
    import taskrunner
    from test_journal import Double, Sleeper
    runner = taskrunner.TaskRunner(journal=sys.argv[1])
    done = runner.submit(Double(5), kind="blocking")
    done.result(timeout=10)
    durable = [runner.submit(Sleeper(i), kind="blocking", durable=True) for i in range(3)]
    plain = [runner.submit(Sleeper(i), kind="blocking") for i in range(3)]
    polling = runner.submit(Sleeper(9, polling=True), durable=True)
    runner.flush()
    print(done.id, *[h.id for h in durable], polling.id, "|", *[h.id for h in plain], flush=True)
    time.sleep(60)
    """
)


class Sleeper:
    """Runs until told otherwise: in a killed process, for ever; after a
    restart (attempt 2), it returns at once."""

    def __init__(self, n: int, polling: bool = False) -> None:
        self.n = n
        self.polling = polling
        self.runs = 0

    def run(self) -> object:
        self.runs += 1
        if os.environ.get("SLEEPER_WAKES") != "1" and not self.polling:
            time.sleep(3600)
        return None if self.polling else self.n

    def get_output(self) -> object:
        if os.environ.get("SLEEPER_WAKES") == "1":
            return self.n
        return None


def line_then_kill(script: str, db: str) -> str:
    """Runs `script` on `db` in a process of its own, reads the line it prints,
    then kills it with SIGKILL."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, db, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        return process.stdout.readline()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


def test_after_a_kill_durable_tasks_run_again_plain_ones_are_lost_finished_ones_stay(
    db, monkeypatch
):
    line = line_then_kill(KILLED, db)
    assert line, "the process printed its ids"
    kept, lost = line.split("|")
    done_id, *durable_ids = (int(i) for i in kept.split())
    lost_ids = [int(i) for i in lost.split()]

    monkeypatch.setenv("SLEEPER_WAKES", "1")
    with reopened(db) as runner:
        assert runner.status(done_id)["result"] == 10 and runner.status(done_id)["attempt"] == 1
        for i in durable_ids:
            handle = runner.handle(i)
            assert handle.result(timeout=20) is not None
            assert handle.status()["attempt"] == 2
        for i in lost_ids:
            status = runner.status(i)
            assert status["state"] == "failed" and status["error"]["type"] == "TaskLost"
            assert "process ended" in status["error"]["message"]
            with pytest.raises(taskrunner.TaskLost):
                runner.handle(i).result()
        assert runner.submit(Double(1), kind="blocking").id > max(durable_ids + lost_ids)
    with reopened(db) as runner:
        statuses = [runner.status(i) for i in [done_id, *durable_ids, *lost_ids]]
        assert all(s["done"] for s in statuses), "nothing is left to recover"
        assert [s["attempt"] for s in statuses] == [1] + [2] * len(durable_ids) + [1] * len(
            lost_ids
        )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_leaves_its_parents_journal_alone(db):
    with reopened(db) as runner:
        runner.submit(Double(1), kind="blocking").result(timeout=10)
        runner.flush()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no journal, and its exit closes nothing of the parent's
            try:
                ok = (
                    runner.journal is None
                    and runner.submit(Double(2), kind="blocking").result(timeout=10) == 4
                )
                os.write(write, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1" and status == 0
        # The parent goes on writing and reading its file.
        handle = runner.submit(Double(3), kind="blocking")
        assert handle.result(timeout=10) == 6 and runner.flush(timeout=10)
    with reopened(db) as again:
        assert again.status(handle.id)["result"] == 6


EXITS = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    import taskrunner
    from test_journal import Double, Nap
    runner = taskrunner.TaskRunner(journal=sys.argv[1], max_workers=1)
    first = runner.submit(Nap(), kind="blocking")
    durable = [runner.submit(Double(i), kind="blocking", durable=True) for i in range(3)]
    plain = runner.submit(Double(9), kind="blocking")
    while not first.running():  # taken by the one worker: it runs to its end at exit
        time.sleep(0.001)
    print(first.id, plain.id, *[h.id for h in durable], flush=True)
    """
)


class Nap:
    def run(self) -> str:
        time.sleep(0.5)
        return "rested"

    def get_output(self) -> str:
        return "rested"


def test_durable_tasks_cancelled_by_the_exit_run_again_when_the_journal_reopens(db):
    out = subprocess.run(
        [sys.executable, "-c", EXITS, db, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    first, plain, *durable = (int(i) for i in out.split())
    with reopened(db) as runner:
        assert runner.status(first)["result"] == "rested", "it ran to its end at exit"
        assert runner.status(plain)["state"] == "cancelled", "cancelled by the exit, and said so"
        for i, task_id in enumerate(durable):
            handle = runner.handle(task_id)
            assert handle.result(timeout=10) == 2 * i and handle.status()["attempt"] == 2


def page_through(fetch, cursor_key):
    """Every item that `fetch(cursor)` pages out, cursor by cursor."""
    got, cursor = [], None
    while True:
        page = fetch(cursor)
        if not page:
            return got
        got.extend(page)
        cursor = cursor_key(page[-1])


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "memory"])
def test_tasks_and_ids_filter_and_page_alike_from_the_journal_and_from_memory(db, journaled):
    # With a journal, memory keeps no finished task: every answer comes from the file.
    options = {"journal": db, "retain_finished": 0} if journaled else {}
    with taskrunner.TaskRunner(**options) as runner:
        handles = []
        for i in range(30):
            name = f"even-{i}" if i % 2 == 0 else f"odd-{i}"
            handles.append(runner.submit(Double(i), kind="blocking", name=name))
            handles[-1].result(timeout=10)
        bad = runner.submit(Fails(), kind="blocking", name="bad")
        bad.exception(timeout=10)
        handles.append(bad)
        ids = [h.id for h in handles]
        submitted = {i: runner.status(i)["submitted_at"] for i in ids}

        oldest_first = page_through(lambda c: runner.tasks(after=c, limit=7), lambda s: s["id"])
        assert [s["id"] for s in oldest_first] == ids
        assert oldest_first[3] == runner.status(ids[3])
        newest_first = page_through(lambda c: runner.ids(limit=7, before=c), lambda i: i)
        assert newest_first == ids[::-1]

        assert [s["name"] for s in runner.tasks(name="odd-")] == [
            f"odd-{i}" for i in range(1, 30, 2)
        ]
        assert runner.ids(state="failed") == [bad.id]
        assert runner.tasks(state="succeeded", name="bad") == []
        since, until = submitted[ids[10]], submitted[ids[20]]
        assert [s["id"] for s in runner.tasks(since=since, until=until)] == ids[10:20]
        assert runner.ids(since=since, until=until, limit=3) == ids[19:16:-1]
        assert runner.tasks(limit=0) == [] and runner.ids(limit=0) == []
        with pytest.raises(ValueError, match="state"):
            runner.tasks(state="done")
        with pytest.raises(ValueError, match="limit"):
            runner.ids(limit=-1)


def test_a_task_still_in_memory_is_listed_as_it_is_now(db):
    with reopened(db) as runner:
        gate = threading.Event()
        handle = runner.submit(Waits(gate), kind="blocking")
        while not handle.running():
            time.sleep(0.001)
        [listed] = runner.tasks()
        assert listed["state"] == "running"
        gate.set()
        handle.result(timeout=10)
        assert runner.tasks()[0]["state"] == "succeeded"


class Waits:
    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def run(self) -> str:
        self.gate.wait(10)
        return "opened"

    def get_output(self) -> str:
        return "opened"


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "memory"])
def test_an_idempotency_key_makes_one_task_even_from_many_threads_at_once(db, journaled):
    with taskrunner.TaskRunner(journal=db if journaled else None) as runner:
        start = threading.Barrier(8)
        ids = []

        def submit() -> None:
            start.wait()
            ids.append(runner.submit(Nap(), kind="blocking", key="order-17").id)

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == 8 and len(set(ids)) == 1
        assert runner.ids() == ids[:1], "one task in all"
        other = runner.submit(Double(1), kind="blocking", key="order-18")
        assert other.id != ids[0] and other.result(timeout=10) == 2


def test_an_idempotency_key_finds_its_task_after_a_restart(db):
    with reopened(db) as runner:
        first = runner.submit(Double(2), kind="blocking", key="order-17")
        assert first.result(timeout=10) == 4
    with reopened(db) as runner:
        again = runner.submit(Double(99), kind="blocking", key="order-17")
        assert again.id == first.id and again.result(timeout=10) == 4
        assert runner.ids() == [first.id], "no second task"


def test_a_bad_idempotency_key_is_refused(db):
    with reopened(db) as runner:
        for key in ("", "k" * 1025):
            with pytest.raises(ValueError, match="idempotency key"):
                runner.submit(Double(1), kind="blocking", key=key)
        with pytest.raises(TypeError):
            runner.submit(Double(1), kind="blocking", key=17)
        assert runner.ids() == [], "nothing was submitted"


def test_a_recipe_must_be_json_that_reads_back_equal_and_durable_needs_a_journal(db):
    with reopened(db) as runner:
        for recipe in ({"lock": threading.Lock()}, (1, 2), {"n": float("nan")}):
            with pytest.raises(TypeError, match="recipe"):
                runner.submit(Double(1), kind="blocking", recipe=recipe)
        assert runner.ids() == []
    with taskrunner.TaskRunner() as plain:
        with pytest.raises(ValueError, match="journal"):
            plain.submit(Double(1), kind="blocking", durable=True)
        # Without a journal a recipe is only kept, for recipe(id): nothing is durable.
        handle = plain.submit(Double(1), kind="blocking", recipe={"n": 1})
        assert plain.recipe(handle.id) == {"n": 1}


# A process that submits tasks with recipes that never end, then waits to be killed.
KILLED_WITH_RECIPES = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    import taskrunner
    from test_journal import Sleeper
    runner = taskrunner.TaskRunner(journal=sys.argv[1])
    handles = [runner.submit(Sleeper(i), kind="blocking", recipe={"n": i}) for i in range(3)]
    runner.flush()
    print(*[h.id for h in handles], flush=True)
    time.sleep(60)
    """
)


class Later:
    """A polling task of no registered kind: its output comes at the third look."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.looks = 0

    def run(self) -> None:
        pass

    def get_output(self) -> object:
        self.looks += 1
        return self.n if self.looks >= 3 else None


@pytest.mark.parametrize("recreates", [True, False], ids=["recreate", "no-recreate"])
def test_after_a_kill_tasks_with_recipes_are_recreated_by_the_runners_recreate(
    db, monkeypatch, recreates
):
    ids = [int(i) for i in line_then_kill(KILLED_WITH_RECIPES, db).split()]
    assert len(ids) == 3, "the process printed its ids"

    monkeypatch.setenv("SLEEPER_WAKES", "1")
    seen = []

    def recreate(data: dict) -> Later:
        # A polling task where a blocking one was: classified anew, it is
        # polled until its output comes (run as blocking, it would end None).
        seen.append(data)
        return Later(data["n"])

    with reopened(db, recreate=recreate if recreates else None) as runner:
        for n, task_id in enumerate(ids):
            handle = runner.handle(task_id)
            if recreates:
                assert handle.result(timeout=20) == n and handle.status()["attempt"] == 2
            else:
                assert isinstance(handle.exception(timeout=20), taskrunner.TaskLost)
                status = handle.status()
                assert status["error"]["type"] == "TaskLost"
                assert "recreate" in status["error"]["message"]
    assert sorted(d["n"] for d in seen) == ([0, 1, 2] if recreates else [])


def test_stats_say_how_the_journal_is(db):
    with taskrunner.TaskRunner() as plain:
        stats = plain.stats()
        assert stats["journal"] is None and stats["journal_problem"] is None
    with reopened(db) as runner:
        stats = runner.stats()
        assert stats["journal"] == "ok" and stats["journal_problem"] is None
        assert list(stats) == list(taskrunner.STATS_KEYS)


class Instant:
    def run(self) -> None:
        pass

    def get_output(self) -> int:
        return 1


@pytest.mark.slow
def test_the_file_stays_bounded_by_retention_however_many_tasks_pass(db):
    # TASKRUNNER_SOAK_TASKS=1000000 for the full soak.
    total = int(os.environ.get("TASKRUNNER_SOAK_TASKS", "200000"))
    batch = 10_000
    sizes = []
    with reopened(db, journal_retention=0.5, retain_finished=1000) as runner:
        for _ in range(total // batch):
            handles = [runner.submit(Instant(), kind="blocking") for _ in range(batch)]
            runner.wait(handles)
            assert runner.flush(timeout=60)
            sizes.append(os.path.getsize(db))
        assert runner.stats()["journal"] == "ok"
    quarter = sizes[len(sizes) // 4]
    # Four times the tasks of the first quarter, and the file has not grown with them.
    assert sizes[-1] <= 2 * quarter, sizes
