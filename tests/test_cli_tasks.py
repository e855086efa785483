"""``python -m taskrunner tasks``: a read-only look inside a journal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import taskrunner
from taskrunner import cli


class Echo:
    def __init__(self, value: object) -> None:
        self.value = value

    def run(self) -> None:
        if self.value == "boom":
            raise ValueError("boom went the task")

    def get_output(self) -> object:
        return self.value


@pytest.fixture
def journal(tmp_path: Path):
    """A journal with four finished tasks, one failed, whose runner still owns it."""
    db = str(tmp_path / "tasks.db")
    with taskrunner.TaskRunner(journal=db) as runner:
        handles = [
            runner.submit(Echo(v), kind="blocking", name=f"echo-{i}")
            for i, v in enumerate([1, "two", "boom", [4]])
        ]
        runner.wait()
        runner.flush()
        yield db, [h.id for h in handles]


def test_it_lists_the_newest_tasks_first_while_their_runner_owns_the_file(journal):
    db, ids = journal
    done = subprocess.run(
        [sys.executable, "-m", "taskrunner", "tasks", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "TRY"]
    assert [int(row.split()[0]) for row in rows] == ids[::-1]
    failed = rows[1]
    assert "failed" in failed and "echo-2" in failed and "ValueError: boom" in failed


def test_it_filters_by_state_and_name_and_limits(journal, capsys):
    db, ids = journal
    assert cli.main(["tasks", "--db", db, "--state", "succeeded", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [ids[3], ids[1], ids[0]]
    assert cli.main(["tasks", "--db", db, "--name", "echo-1", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["result"] == "two"
    assert cli.main(["tasks", "--db", db, "--limit", "2", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_it_shows_one_task_whole(journal, capsys):
    db, ids = journal
    assert cli.main(["tasks", "--db", db, str(ids[3])]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["id"] == ids[3] and status["result"] == [4] and status["attempt"] == 1
    assert list(status) == list(taskrunner.STATUS_KEYS)


def test_a_missing_journal_or_task_is_a_clear_error(journal, tmp_path, capsys):
    db, ids = journal
    assert cli.main(["tasks", "--db", str(tmp_path / "nothing.db")]) == 1
    assert "no journal at" in capsys.readouterr().err
    assert cli.main(["tasks", "--db", db, str(max(ids) + 100)]) == 1
    assert f"no task with id {max(ids) + 100}" in capsys.readouterr().err
    not_a_journal = tmp_path / "notes.txt"
    not_a_journal.write_text("hello\n" * 1000)
    assert cli.main(["tasks", "--db", str(not_a_journal)]) == 1
    assert "notes.txt" in capsys.readouterr().err
