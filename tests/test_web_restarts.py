"""Real servers on a journal (``python -m taskrunner serve --db``, over loopback):
restarts, crashes, a journal that cannot write, and a flood killed mid-way.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

import pytest
import requests
from conftest_web import ServerProcess, assert_problem

from taskrunner import FINAL_STATES

DEADLINE = 60.0  # generous: every task here waits at most a few seconds


def serve(db: Path, threads: int = 8, **env: str) -> ServerProcess:
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0"]
    command += ["--threads", str(threads), "--db", str(db)]
    return ServerProcess(command, **env)


def post(
    url: str, body: dict, key: Optional[str] = None, session: Optional[requests.Session] = None
) -> requests.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    client: Any = session or requests
    return client.post(f"{url}/api/tasks", json=body, headers=headers, timeout=30)


def task(url: str, id: int) -> dict:
    response = requests.get(f"{url}/api/tasks/{id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def until(predicate: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def kill(server: ServerProcess) -> None:
    server.process.kill()
    server.process.wait(timeout=30)


def integrity(db: Path) -> str:
    """SQLite's own check of the file, read-only (from this process, not the server's)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def unfinished(url: str) -> int:
    return requests.get(f"{url}/api/stats", timeout=30).json()["unfinished"]


def all_tasks(url: str) -> list[dict]:
    tasks: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{url}/api/tasks", params=params, timeout=30).json()
        tasks += page["tasks"]
        cursor = page["next_cursor"]
        if cursor is None:
            return tasks


# ---- where serve journals --------------------------------------------------------


@pytest.mark.slow
def test_serve_journals_to_taskrunner_db_in_the_current_directory(tmp_path):
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    server = ServerProcess(command, db=None, cwd=str(tmp_path))
    try:
        assert f"journal {tmp_path / 'taskrunner.db'}" in server.log()
        body = {"type": "fake_blocking", "input": 1, "wait": 0}
        assert post(server.url, body).status_code == 202
        assert requests.get(f"{server.url}/healthz", timeout=10).json()["journal"] == "ok"
    finally:
        server.stop()
    assert server.wait(10) == 0, server.log()
    assert (tmp_path / "taskrunner.db").is_file()


@pytest.mark.slow
def test_taskrunner_db_names_it_and_memory_means_none(tmp_path):
    db = tmp_path / "env.db"
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    server = ServerProcess(command, db=str(db), cwd=str(tmp_path))
    server.stop()
    assert f"journal {db}" in server.log() and db.is_file()
    memory = ServerProcess([*command, "--db", ":memory:"], db=str(db), cwd=str(tmp_path))
    try:
        assert "no journal" in memory.log()
        assert requests.get(f"{memory.url}/healthz", timeout=10).json()["journal"] is None
    finally:
        memory.stop()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["env.db"]


def test_serve_refuses_a_journal_another_server_holds(tmp_path):
    db = tmp_path / "held.db"
    server = serve(db, threads=2)
    try:
        command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--db", str(db)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert "cannot open the journal" in out.stderr
        assert f"in use by process {server.process.pid}" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        server.stop()


# ---- restarts ----------------------------------------------------------------------


@pytest.mark.slow
def test_unfinished_tasks_run_again_after_a_crash_with_their_attempt(tmp_path):
    db = tmp_path / "crash.db"
    server = serve(db)
    try:
        done = post(server.url, {"type": "fake_blocking", "input": 1, "wait": 0}).json()
        until(lambda: task(server.url, done["id"])["done"], "the first task finished")
        # Each 202 comes after a commit of all written so far: the first one's end too.
        polling = post(server.url, {"type": "fake_polling", "input": 2, "wait": 60, "name": "p"})
        blocking = post(server.url, {"type": "fake_blocking", "input": 3, "wait": 1, "name": "b"})
        ids = [done["id"], polling.json()["id"], blocking.json()["id"]]
        until(lambda: task(server.url, ids[2])["state"] == "running", "the blocking task started")
    finally:
        kill(server)
    server = serve(db)
    try:
        assert "2 unfinished tasks from the last run start again" in server.log()
        first, again_polling, again_blocking = (task(server.url, id) for id in ids)
        assert first["state"] == "succeeded" and first["attempt"] == 1
        assert again_polling["attempt"] == 2 and again_polling["name"] == "p"
        assert again_polling["state"] in ("pending", "running")
        assert again_blocking["attempt"] == 2 and again_blocking["name"] == "b"
        until(lambda: task(server.url, ids[2])["state"] == "succeeded", "the rerun finished")
        assert task(server.url, ids[2])["result"] == 6
        listed = {t["id"]: t for t in all_tasks(server.url)}
        assert sorted(listed) == ids and listed[ids[1]]["attempt"] == 2
    finally:
        server.stop()


@pytest.mark.slow
def test_a_graceful_stop_leaves_pending_and_polling_tasks_to_the_next_start(tmp_path):
    db = tmp_path / "stop.db"
    server = serve(db)
    polling = post(server.url, {"type": "fake_polling", "input": 4, "wait": 60}).json()
    until(lambda: task(server.url, polling["id"])["state"] == "running", "the task started")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0, server.log()
    assert time.monotonic() - started < 20
    assert "Traceback" not in server.log()
    server = serve(db)
    try:
        again = task(server.url, polling["id"])
        assert again["attempt"] == 2 and again["state"] in ("pending", "running")
    finally:
        server.stop()


# ---- a journal that cannot write -----------------------------------------------------

# Another process holds SQLite's write lock on the file until told to let go.
LOCK_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


def health(url: str) -> dict:
    response = requests.get(f"{url}/healthz", timeout=30)
    assert response.status_code == 200
    return response.json()


@pytest.mark.slow
def test_a_journal_that_cannot_write_degrades_health_and_refuses_submissions(tmp_path):
    db = tmp_path / "locked.db"
    server = serve(db, TASKRUNNER_COMMIT_TIMEOUT="1")
    holder: Optional[subprocess.Popen] = None
    body = {"type": "fake_blocking", "input": 5, "wait": 0}
    try:
        assert post(server.url, body).status_code == 202
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        # The writer waits for the lock for a while before it gives up on a
        # commit; the submission waits 1 s for its own.
        late = post(server.url, body, key="late")
        late_id = assert_problem(late, 503, "/problems/not-recorded")["id"]
        assert late.headers["Retry-After"] == "5"
        until(lambda: health(server.url)["status"] == "degraded", "degraded", timeout=30)
        assert "locked" in health(server.url)["journal_problem"]
        refused = post(server.url, body, key="refused")
        assert_problem(refused, 503, "/problems/journal-degraded")
        assert refused.headers["Retry-After"] == "5"
        metrics = requests.get(f"{server.url}/metrics", timeout=30).text
        assert "taskrunner_journal_degraded 1.0" in metrics
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        until(lambda: health(server.url)["status"] == "ok", "the journal wrote again")
        again = post(server.url, body, key="late")
        assert again.status_code == 202 and again.json()["id"] == late_id
        assert post(server.url, body, key="refused").json()["id"] > late_id
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        server.stop()
    assert "cannot write" in server.log() and "writes again" in server.log()


# ---- killed mid-flood ------------------------------------------------------------------

CLIENTS = 20
# TASKRUNNER_CRASH_ROUNDS=50 or more for a longer run.
ROUNDS = int(os.environ.get("TASKRUNNER_CRASH_ROUNDS", "8"))


class Flood:
    """``CLIENTS`` threads posting tasks, each with a key of its own, until the server dies."""

    def __init__(self, url: str, round: int, inputs: itertools.count) -> None:
        self.url = url
        self.inputs = inputs
        self.sent: dict[str, dict] = {}  # key -> body
        self.answered: dict[str, int] = {}  # key -> the id a 202 named
        self.unexpected: list[str] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(f"r{round}c{c}",), daemon=True)
            for c in range(CLIENTS)
        ]
        for thread in self.threads:
            thread.start()

    def _client(self, prefix: str) -> None:
        try:
            self._send(prefix)
        except Exception as error:
            with self.lock:
                self.unexpected.append(f"{prefix}: {error!r}")

    def _send(self, prefix: str) -> None:
        with requests.Session() as session:
            for n in itertools.count():
                key = f"{prefix}n{n}"
                with self.lock:
                    body = {"type": "fake", "input": next(self.inputs), "wait": (n % 4) * 0.03}
                    self.sent[key] = body
                try:
                    response = post(self.url, body, key, session=session)
                except requests.RequestException:
                    return  # the server is gone
                with self.lock:
                    if response.status_code != 202:
                        self.unexpected.append(f"{key}: {response.status_code} {response.text}")
                        return
                    id = response.json()["id"]
                    if response.headers["Location"] != f"{self.url}/api/tasks/{id}":
                        self.unexpected.append(f"{key}: Location {response.headers['Location']}")
                    self.answered[key] = id

    def until_answered(self, count: int) -> None:
        until(lambda: len(self.answered) >= count or self.unexpected, f"{count} answers")

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a client hung"


def resend(url: str, flood: Flood) -> dict[str, int]:
    """Sends every key of the flood again; the id each answer names."""

    def again(key: str) -> tuple[str, int]:
        response = post(url, flood.sent[key], key)
        assert response.status_code == 202, response.text
        return key, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(again, list(flood.sent)))


@pytest.mark.slow
def test_a_server_killed_mid_flood_keeps_every_answered_task_and_makes_none_twice(tmp_path):
    db = tmp_path / "flood.db"
    rng = random.Random(20240601)
    inputs = itertools.count()
    made: dict[str, int] = {}  # every key sent so far -> the one task it made
    inputs_of: dict[int, int] = {}  # task id -> its input
    reruns = 0
    server = serve(db, threads=16)
    try:
        for round in range(ROUNDS):
            flood = Flood(server.url, round, inputs)
            flood.until_answered(rng.randint(5, 80))
            kill(server)
            flood.join()
            assert not flood.unexpected, flood.unexpected[:5]
            assert integrity(db) == "ok"

            server = serve(db, threads=16)
            ids = resend(server.url, flood)
            for key, id in flood.answered.items():
                assert ids[key] == id, f"{key} made task {id}, and now names {ids[key]}"
            assert len(set(ids.values())) == len(ids), "two keys named one task"
            assert not set(ids.values()) & set(made.values()), "a key named an older task"
            made.update(ids)
            inputs_of.update({ids[key]: body["input"] for key, body in flood.sent.items()})
            # Every key sent before this crash still names its task.
            earlier = rng.sample(sorted(made), min(len(made), 50))
            for key in earlier:
                body = {"type": "fake", "input": -1, "wait": 0}
                assert post(server.url, body, key).json()["id"] == made[key]

            until(lambda url=server.url: unfinished(url) == 0, "every task finished")
            for id in ids.values():
                status = task(server.url, id)
                assert status["state"] == "succeeded", status
                assert status["result"] == 2 * inputs_of[id]
                reruns += status["attempt"] > 1
        listed = all_tasks(server.url)
    finally:
        server.stop()
    assert integrity(db) == "ok"
    listed_ids = [t["id"] for t in listed]
    assert len(listed_ids) == len(set(listed_ids)), "a task listed twice"
    # Every task in the journal was made by exactly one key: none by a retry.
    assert sorted(listed_ids) == sorted(made.values())
    assert {t["state"] for t in listed} <= FINAL_STATES
    print(f"{ROUNDS} rounds: {len(made)} keys, {len(listed)} tasks, {reruns} run again")
