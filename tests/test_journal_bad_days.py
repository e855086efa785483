"""Bad days for the journal: a disk that fills, a read-only directory, a file
that is not a journal or is corrupt, a journal from a newer version. Each is
a clear, named error, and a runner whose journal cannot write goes on
running tasks in memory, says so, and writes again once it can."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskrunner


class Noise:
    """A blocking task whose result is 16 kB of text that does not compress."""

    def run(self) -> None:
        self.text = os.urandom(8_000).hex()

    def get_output(self) -> str:
        return self.text


class Double:
    def __init__(self, n: int) -> None:
        self.n = n

    def run(self) -> None:
        pass

    def get_output(self) -> int:
        return 2 * self.n


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"needs mount (as root): {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem of its own, so that the journal can fill it."""
    where = tmp_path / "small"
    where.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a journal, seen through a read-only mount."""
    writable, read_only = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    read_only.mkdir()
    with taskrunner.TaskRunner(journal=str(writable / "tasks.db")) as runner:
        runner.submit(Double(21), kind="blocking").result(timeout=10)
    mount("--bind", str(writable), str(read_only))
    try:
        mount("-o", "remount,bind,ro", str(read_only))
        yield read_only
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_full_disk_degrades_the_journal_and_tasks_go_on_in_memory_until_it_has_room(
    small_disk, caplog
):
    caplog.set_level(logging.INFO, logger="taskrunner.journal")
    room = small_disk / "room"  # given back later, to end the bad day
    room.write_bytes(b"\0" * 300_000)
    db = str(small_disk / "tasks.db")
    runner = taskrunner.TaskRunner(journal=db)
    try:
        handles = []
        while runner.stats()["journal"] == "ok":
            assert len(handles) < 200, "the disk should have filled by now"
            handles.append(runner.submit(Noise(), kind="blocking"))
            handles[-1].result(timeout=10)
            runner.flush(timeout=0.5)
        stats = runner.stats()
        assert "disk full" in stats["journal_problem"] and db in stats["journal_problem"]
        assert runner.flush(timeout=0.2) is False, "nothing new lands"

        # Tasks run on in memory, and answer as usual.
        more = [runner.submit(Noise(), kind="blocking") for _ in range(5)]
        assert all(len(h.result(timeout=10)) == 16_000 for h in more)
        assert wait_for(lambda: any("disk full" in r.getMessage() for r in caplog.records))
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warned and "in memory" in warned[0].getMessage()

        room.unlink()
        assert runner.flush(timeout=20) is True, "the rows waiting land once there is room"
        assert runner.stats()["journal"] == "ok" and runner.stats()["journal_problem"] is None
        assert wait_for(lambda: any("writes again" in r.getMessage() for r in caplog.records))
        runner.shutdown()
        view = taskrunner.JournalView(db)
        for handle in handles + more:
            assert view.status(handle.id)["result"] == handle.result()
    finally:
        runner.shutdown(wait=False)


def test_a_read_only_directory_is_refused_clearly(read_only_dir):
    for name in ("tasks.db", "new.db"):
        with pytest.raises(taskrunner.JournalError, match="read-only"):
            taskrunner.TaskRunner(journal=str(read_only_dir / name))
    # Reading needs no writing: the viewer still shows the tasks.
    [status] = taskrunner.JournalView(str(read_only_dir / "tasks.db")).tasks()
    assert status["result"] == 42


def test_a_corrupt_journal_is_refused_clearly_and_left_as_it_was(tmp_path):
    db = tmp_path / "tasks.db"
    with taskrunner.TaskRunner(journal=str(db)) as runner:
        for _ in range(100):
            runner.submit(Noise(), kind="blocking")
        runner.wait()
    damaged = bytearray(db.read_bytes())
    damaged[8192:] = os.urandom(len(damaged) - 8192)
    db.write_bytes(bytes(damaged))
    with pytest.raises(taskrunner.JournalError, match="corrupt"):
        taskrunner.TaskRunner(journal=str(db))
    assert db.read_bytes() == bytes(damaged)


def test_a_journal_from_a_newer_version_is_refused_naming_both_versions(tmp_path):
    db = tmp_path / "tasks.db"
    with taskrunner.TaskRunner(journal=str(db)) as runner:
        runner.submit(Double(1), kind="blocking").result(timeout=10)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(taskrunner.JournalError, match="version 99, newer than"):
        taskrunner.TaskRunner(journal=str(db))
    with pytest.raises(taskrunner.JournalError, match="version 99, newer than"):
        taskrunner.JournalView(str(db))
