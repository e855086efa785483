"""The server behind a real nginx (Debian's), with TLS, as docs/security.md
deploys it: ``Location`` and the OpenAPI server name the proxy's scheme and
host, the event stream arrives live through nginx's default buffering, and
the dashboard loads through it.

Skips without nginx or openssl, unless ``TASKRUNNER_REQUIRE_NGINX=1`` (as in
CI): then it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from browser import start_chromium
from conftest_web import ServerProcess, parse_sse

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"
LIVE = 1.0  # seconds from a change to its event, through the proxy


def _require_nginx() -> None:
    missing = [tool for tool in ("nginx", "openssl") if shutil.which(tool) is None]
    if missing:
        message = f"needs {' and '.join(missing)}"
        if os.environ.get("TASKRUNNER_REQUIRE_NGINX") == "1":
            pytest.fail(message + " (TASKRUNNER_REQUIRE_NGINX=1)")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def documented_site() -> str:
    """The nginx ``server`` block of the docs, as written there."""
    return re.search(r"```nginx\n(.*?)```", DOCS.read_text(), re.S).group(1)


def site_for_test(upstream: str, port: int, certificate: Path, key: Path) -> str:
    """The docs' site on a loopback port, with a certificate of the test's own."""
    site = documented_site()
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/certs/tasks.example.org.pem": str(certificate),
        "/etc/ssl/private/tasks.example.org.key": str(key),
        "http://127.0.0.1:8000": upstream,
    }
    for old, new in replacements.items():
        assert old in site, f"the docs' nginx site no longer has {old!r}"
        site = site.replace(old, new)
    return site


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerProcess]:
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--db", ":memory:"]
    server = ServerProcess(command + ["--proxy", "1"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream, tmp_path_factory) -> Iterator[str]:
    """nginx in front of the server; its https URL."""
    _require_nginx()
    here = tmp_path_factory.mktemp("nginx")
    certificate, key = here / "cert.pem", here / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    temp = "".join(
        f"{kind}_temp_path {here / kind};\n" for kind in ("client_body", "proxy", "fastcgi")
    ) + "".join(f"{kind}_temp_path {here / kind};\n" for kind in ("uwsgi", "scgi"))
    (here / "nginx.conf").write_text(
        f"daemon off;\nuser root;\nworker_processes 1;\npid {here / 'nginx.pid'};\n"
        f"error_log {here / 'error.log'};\nevents {{ worker_connections 64; }}\n"
        f"http {{\naccess_log {here / 'access.log'};\n{temp}"
        f"{site_for_test(upstream.url, port, certificate, key)}}}\n"
    )
    nginx = subprocess.Popen(
        ["nginx", "-p", str(here), "-c", str(here / "nginx.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if nginx.poll() is not None or time.monotonic() > deadline:
                nginx.kill()
                log = (here / "error.log").read_text() if (here / "error.log").exists() else ""
                pytest.fail(f"nginx did not start: {nginx.stdout.read()!r} {log}")
            time.sleep(0.05)
    # Clients trust the test's own certificate, as they would a real one.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
        yield f"https://127.0.0.1:{port}"
    nginx.terminate()
    nginx.wait(timeout=10)


def submit(url: str, **body: Any) -> requests.Response:
    task = {"type": "fake", "input": 1, "wait": 0, **body}
    return requests.post(f"{url}/api/tasks", json=task, timeout=10)


def test_location_and_the_openapi_server_name_the_proxys_scheme_and_host(proxy):
    response = submit(proxy)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"{proxy}/api/tasks/{response.json()['id']}"
    document = requests.get(f"{proxy}/api/openapi.json", timeout=10).json()
    assert document["servers"] == [{"url": proxy}]


def test_events_arrive_through_nginx_within_a_second_of_the_change(proxy):
    stream = requests.get(f"{proxy}/api/events", stream=True, timeout=30)
    assert stream.status_code == 200
    arrivals: dict[int, float] = {}
    ready = threading.Event()

    def read() -> None:
        for event, data in parse_sse(stream.iter_content(chunk_size=None, decode_unicode=True)):
            if event == "ready":
                ready.set()
            elif event == "task" and data["state"] == "succeeded":
                arrivals.setdefault(data["id"], time.time())
                if len(arrivals) >= 3:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10), "no ready event through the proxy"
    ids = []
    for _ in range(3):
        ids.append(submit(proxy, wait=0.3).json()["id"])
        time.sleep(0.5)
    reader.join(15)
    stream.close()
    for id in ids:
        status = requests.get(f"{proxy}/api/tasks/{id}", timeout=10).json()
        assert id in arrivals, f"task {id}'s end never came through the proxy"
        assert arrivals[id] - status["finished_at"] < LIVE


def test_the_dashboard_loads_and_goes_live_through_nginx(proxy):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = start_chromium("--ignore-certificate-errors")
    try:
        driver.get(proxy + "/")
        wait = WebDriverWait(driver, 20)
        wait.until(
            lambda d: d.find_element("id", "connection").get_attribute("data-status") == "live"
        )
        id = submit(proxy).json()["id"]
        wait.until(lambda d: d.find_elements("css selector", f'#task-rows tr[data-id="{id}"]'))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
