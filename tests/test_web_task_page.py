"""A task's own page, /tasks/<id>, in a real headless Chromium against a real server.

The ``browser`` fixture (tests/browser.py) skips where Chromium, chromedriver or
selenium is missing, unless ``TASKRUNNER_REQUIRE_BROWSER=1`` (as in CI).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import requests
from browser import WIDE
from conftest_web import ServerProcess

from taskrunner import STATUS_KEYS
from taskrunner.web.dashboard import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.slow

PATIENCE = 20.0  # seconds to wait for the page to show a change

TYPES = """
import time

from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling


class Reporting(FakeTaskPolling):
    \"\"\"Polls for a minute, saying how far it is.\"\"\"

    def __init__(self, input):
        super().__init__(input, wait=60)
        self.began = time.time()

    def progress(self):
        seconds = time.time() - self.began
        return {"fraction": min(1.0, seconds / 60), "message": f"{seconds:.1f} s in"}


def connect(host):
    raise ConnectionError(f"{host} is down")


class Flaky(FakeTaskBlocking):
    \"\"\"Fails every time, a few calls deep.\"\"\"

    def __init__(self, input):
        super().__init__(input, wait=0)

    def run(self):
        connect(self.input)


TASK_TYPES = {"reporting": Reporting, "flaky": Flaky}
"""


def serve(where: Path, **kwargs) -> ServerProcess:
    (where / "page_types.py").write_text(TYPES)
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "8"]
    types = ["--types", "page_types:TASK_TYPES", "--types", "taskrunner.web:FAKE_TASK_TYPES"]
    return ServerProcess(command + types, cwd=str(where), **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = serve(tmp_path_factory.mktemp("task-page"))
    yield process
    process.stop()


def post(server, **body) -> dict:
    response = requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def status(server, id: int) -> dict:
    return requests.get(f"{server.url}/api/tasks/{id}", timeout=10).json()


def finished(server, id: int) -> dict:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        current = status(server, id)
        if current["done"]:
            return current
        time.sleep(0.05)
    raise AssertionError(f"task {id} did not finish")


def wait_until(driver, predicate, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PATIENCE, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: predicate(d), message
    )


def open_task(driver, server, id) -> None:
    """Opens the page of task ``id`` and waits until it shows the task (or says there is none)."""
    driver.get(f"{server.url}/tasks/{id}")
    wait_until(
        driver,
        lambda d: (
            d.find_element("id", "task").is_displayed()
            or d.find_element("id", "missing").is_displayed()
        ),
        f"the page of task {id} never showed",
    )


def shown_state(driver) -> str:
    badges = driver.find_elements("css selector", "#task-state .badge")
    return badges[0].get_attribute("data-state") if badges else ""


def text(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


def css_all(driver, css: str) -> list:
    return driver.find_elements("css selector", css)


# ---- the route -------------------------------------------------------------------------------


def test_the_page_is_the_same_for_every_id_under_the_dashboards_policy(server):
    pages = [requests.get(f"{server.url}/tasks/{id}", timeout=10) for id in ("1", "abc", "9999")]
    for page in pages:
        assert page.status_code == 200
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["Content-Type"].startswith("text/html")
        assert page.text == pages[0].text
    assert "<script>" not in pages[0].text and "style=" not in pages[0].text


# ---- what it shows ---------------------------------------------------------------------------


def test_a_failed_task_shows_every_status_key_and_its_whole_traceback(browser, server):
    id = post(server, type="flaky", input="db.example", name="flaky once")["id"]
    failed = finished(server, id)
    open_task(browser, server, id)
    assert shown_state(browser) == "failed" and "failed" in text(browser, "#task-state")
    assert text(browser, "#task-name") == "flaky once"
    keys = [row.get_attribute("data-key") for row in css_all(browser, "#status dt")]
    assert keys == list(STATUS_KEYS)
    assert text(browser, '#status dd[data-key="error"]') == "ConnectionError: db.example is down"
    traceback = browser.find_element("css selector", "#attempts .traceback")
    # The whole traceback, every frame, as the API has it (the text, not a summary).
    assert traceback.get_attribute("textContent") == failed["error"]["traceback"]
    assert "in connect" in failed["error"]["traceback"]
    # Times in local time, with the exact UTC time on hover.
    submitted = browser.find_element("css selector", '#status dd[data-key="submitted_at"] time')
    assert submitted.get_attribute("title").endswith("Z (UTC)")
    cancel = browser.find_element("id", "cancel")
    assert not cancel.is_enabled()
    assert "finished" in text(browser, "#cancel-reason")


def test_a_retried_task_lists_each_attempt_with_its_error(browser, server):
    retry = {"attempts": 3, "backoff": 0.05, "max_backoff": 0.05, "jitter": False}
    id = post(server, type="flaky", input="cache.example", retries=retry)["id"]
    assert finished(server, id)["attempt"] == 3
    open_task(browser, server, id)
    wait_until(browser, lambda d: len(css_all(d, "#attempts .attempt")) == 3, "not 3 attempts")
    for n, attempt in enumerate(css_all(browser, "#attempts .attempt"), start=1):
        assert attempt.get_attribute("data-attempt") == str(n)
        assert "ConnectionError: cache.example is down" in attempt.text
        assert (
            attempt.find_element("css selector", ".traceback")
            .get_attribute("textContent")
            .startswith("Traceback (most recent call last):")
        )
    states = [li.get_attribute("data-state") for li in css_all(browser, "#timeline li")]
    assert states == ["pending", "running", "pending", "running", "pending", "running", "failed"]


def test_a_running_polling_task_updates_live_until_it_ends(browser, server):
    id = post(server, type="reporting", input=2)["id"]
    try:
        open_task(browser, server, id)
        browser.execute_script("window.notReloaded = true;")
        wait_until(browser, lambda d: shown_state(d) == "running", "it never ran")
        wait_until(browser, lambda d: text(d, "#progress-text"), "no progress shown")
        first = text(browser, "#progress-text")
        wait_until(browser, lambda d: text(d, "#progress-text") != first, "progress stood still")
        polls = int(text(browser, '#status dd[data-key="polls"]'))
        wait_until(
            browser,
            lambda d: int(text(d, '#status dd[data-key="polls"]')) > polls,
            "the polls never moved",
        )
        bar = browser.find_element("id", "progress-bar")
        assert 0 < float(bar.get_attribute("value")) < 1
        assert text(browser, "#connection") == "live"
        # Cancel works on a running polling task, and the page follows it to its end.
        browser.find_element("id", "cancel").click()
        wait_until(browser, lambda d: shown_state(d) == "cancelled", "not cancelled")
        assert status(server, id)["state"] == "cancelled"
        wait_until(
            browser,
            lambda d: (
                [li.get_attribute("data-state") for li in css_all(d, "#timeline li")][-1]
                == "cancelled"
            ),
            "the timeline never showed the cancel",
        )
        assert browser.execute_script("return window.notReloaded === true;"), "it reloaded"
        wait_until(
            browser,
            lambda d: text(d, "#connection").startswith("finished"),
            "the page never said it stopped following",
        )
    finally:
        requests.delete(f"{server.url}/api/tasks/{id}", timeout=10)


def test_dependencies_link_both_ways(browser, server):
    upstream = post(server, type="fake_polling", input=1, wait=600)["id"]
    downstream = post(server, type="fake_blocking", input=1, wait=0, after=[upstream])["id"]
    try:
        open_task(browser, server, downstream)
        link = browser.find_element("css selector", "#after a")
        assert link.get_attribute("href").endswith(f"/tasks/{upstream}")
        link.click()
        wait_until(
            browser, lambda d: d.current_url.endswith(f"/tasks/{upstream}"), "no upstream page"
        )
        wait_until(browser, lambda d: text(d, "#title") == f"Task {upstream}", "no upstream")
        wait_until(browser, lambda d: css_all(d, "#dependents a"), "no dependents listed")
        back = browser.find_element("css selector", "#dependents a")
        assert back.get_attribute("href").endswith(f"/tasks/{downstream}")
    finally:
        for id in (downstream, upstream):
            requests.delete(f"{server.url}/api/tasks/{id}", timeout=10)


def test_a_running_blocking_task_cannot_be_cancelled_and_says_why(browser, server):
    id = post(server, type="fake_blocking", input=1, wait=3)["id"]
    open_task(browser, server, id)
    wait_until(browser, lambda d: shown_state(d) == "running", "it never ran")
    assert not browser.find_element("id", "cancel").is_enabled()
    assert "blocking" in text(browser, "#cancel-reason")
    wait_until(browser, lambda d: shown_state(d) == "succeeded", "it never ended on the page")
    assert text(browser, '#status dd[data-key="result"]') == "2"


def test_run_again_makes_a_new_task_and_goes_to_its_page(browser, server):
    body = {"type": "fake_blocking", "input": {"not": "a number"}, "wait": 0, "name": "again"}
    id = post(server, **body)["id"]
    assert finished(server, id)["state"] == "failed"
    open_task(browser, server, id)
    wait_until(browser, lambda d: d.find_element("id", "again").is_displayed(), "no Run again")
    browser.find_element("id", "again").click()
    wait_until(browser, lambda d: not d.current_url.endswith(f"/tasks/{id}"), "no new page")
    new = int(browser.current_url.rsplit("/", 1)[1])
    assert new > id
    wait_until(browser, lambda d: text(d, "#title") == f"Task {new}", "the new task never showed")
    assert text(browser, "#task-name") == "again"
    assert finished(server, new)["state"] == "failed"  # the same input, the same error


def test_an_id_that_is_no_task_says_so(browser, server):
    open_task(browser, server, "abc")
    assert text(browser, "#missing-title") == "No task abc"
    assert "not a task id" in text(browser, "#missing-detail")
    open_task(browser, server, 987654)
    assert text(browser, "#missing-title") == "No task 987654"
    assert browser.find_element("id", "back").get_attribute("href") == f"{server.url}/"


def test_a_task_known_only_to_the_journal_shows_after_a_restart(browser, tmp_path):
    db = str(tmp_path / "tasks.db")
    first = serve(tmp_path, db=db)
    try:
        id = post(first, type="flaky", input="old.example", name="before the restart")["id"]
        traceback = finished(first, id)["error"]["traceback"]
    finally:
        first.stop()
    second = serve(tmp_path, db=db)
    try:
        open_task(browser, second, id)
        assert shown_state(browser) == "failed"
        assert text(browser, "#task-name") == "before the restart"
        shown = browser.find_element("css selector", "#attempts .traceback")
        assert shown.get_attribute("textContent") == traceback
    finally:
        browser.get("about:blank")
        second.stop()


def test_with_a_token_the_page_asks_for_it_then_shows_the_task(browser, tmp_path):
    guarded = serve(tmp_path, TASKRUNNER_TOKEN="open sesame", TASKRUNNER_READ_TOKEN="look")
    try:
        headers = {"Authorization": "Bearer open sesame"}
        body = {"type": "fake_blocking", "input": 2, "wait": 0, "name": "guarded"}
        response = requests.post(f"{guarded.url}/api/tasks", json=body, headers=headers)
        id = response.json()["id"]
        browser.get(f"{guarded.url}/tasks/{id}")
        wait_until(browser, lambda d: d.find_element("id", "token-form").is_displayed(), "no form")
        assert not browser.find_element("id", "task").is_displayed()
        browser.find_element("id", "token-input").send_keys("open sesame")
        browser.find_element("css selector", "#token-form button").click()
        wait_until(browser, lambda d: text(d, "#task-name") == "guarded", "the task never showed")
        assert text(browser, '#status dd[data-key="result"]') == "4"
        # A token in the URL's fragment is taken, and taken out of the address bar.
        browser.execute_script("sessionStorage.clear()")
        browser.get("about:blank")  # else only the fragment would change: no new page
        browser.get(f"{guarded.url}/tasks/{id}#token=open%20sesame")
        wait_until(browser, lambda d: text(d, "#task-name") == "guarded", "not with the fragment")
        assert browser.current_url == f"{guarded.url}/tasks/{id}"
        # The read-only token may not cancel: the page says so before anyone tries.
        body = {"type": "fake_polling", "input": 1, "wait": 600}
        response = requests.post(f"{guarded.url}/api/tasks", json=body, headers=headers)
        running = response.json()["id"]
        browser.get("about:blank")
        browser.get(f"{guarded.url}/tasks/{running}#token=look")
        wait_until(browser, lambda d: "only read" in text(d, "#cancel-reason"), "no read-only")
        assert not browser.find_element("id", "cancel").is_enabled()
        requests.delete(f"{guarded.url}/api/tasks/{running}", headers=headers)
    finally:
        browser.get("about:blank")  # no request left in flight to a stopped server
        guarded.stop()


# ---- from the dashboard ----------------------------------------------------------------------


def test_the_dashboard_table_links_each_id_to_its_page(browser, server):
    id = post(server, type="fake_blocking", input=1, wait=0, name="linked")["id"]
    browser.get(f"{server.url}/")
    wait_until(browser, lambda d: css_all(d, f'#task-rows tr[data-id="{id}"]'), "no row")
    links = css_all(browser, f'#task-rows a[href="/tasks/{id}"], #task-rows a[href="tasks/{id}"]')
    assert links, "the table has no link to the task's page"
    links[0].click()
    wait_until(browser, lambda d: d.current_url.endswith(f"/tasks/{id}"), "not on its page")
    wait_until(browser, lambda d: text(d, "#task-name") == "linked", "its page never showed")


# ---- fits, reads, and is accessible ----------------------------------------------------------


@pytest.fixture
def failed_page(browser, server):
    """The page of a retried task that failed, with long tracebacks."""
    retry = {"attempts": 2, "backoff": 0.05, "max_backoff": 0.05, "jitter": False}
    id = post(server, type="flaky", input="x" * 300, retries=retry, name="n" * 80)["id"]
    finished(server, id)
    open_task(browser, server, id)
    return browser


def test_a_narrow_window_scrolls_only_down(failed_page):
    try:
        failed_page.set_window_size(360, 800)
        wait_until(failed_page, lambda d: d.execute_script("return innerWidth") == 360, "no resize")
        width = failed_page.execute_script(
            "return [document.documentElement.scrollWidth, innerWidth]"
        )
        assert width[0] <= width[1], width
        assert failed_page.find_element("css selector", "#attempts .traceback").is_displayed()
    finally:
        failed_page.set_window_size(*WIDE)


def test_every_control_is_reachable_by_keyboard_with_a_visible_focus(browser, server):
    from selenium.webdriver.common.keys import Keys

    id = post(server, type="fake_polling", input=1, wait=600)["id"]
    try:
        open_task(browser, server, id)
        wait_until(browser, lambda d: d.find_element("id", "cancel").is_enabled(), "no Cancel")
        reached: list[str] = []
        while "cancel" not in reached and len(reached) < 10:
            browser.switch_to.active_element.send_keys(Keys.TAB)
            focused = browser.switch_to.active_element
            reached.append(focused.get_attribute("id") or focused.text)
            outline = focused.value_of_css_property("outline-style")
            assert outline not in ("", "none"), (reached[-1], outline)
        assert reached[0] == "back" and reached[-1] == "cancel", reached
    finally:
        requests.delete(f"{server.url}/api/tasks/{id}", timeout=10)


def axe_violations(driver) -> list[dict]:
    """The serious and critical findings of axe-core on the page as it is."""
    spec = importlib.util.find_spec("axe_selenium_python")
    if spec is None or spec.origin is None:
        pytest.skip("axe-selenium-python is not installed")
    script = Path(spec.origin).parent / "node_modules" / "axe-core" / "axe.min.js"
    driver.execute_script(script.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(done, (e) => done({error: String(e)}));"
    )
    assert "error" not in result, result
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "nodes": [(n["html"], n["failureSummary"]) for n in v["nodes"]][:3],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious(failed_page, scheme):
    failed_page.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    try:
        assert axe_violations(failed_page) == []
    finally:
        failed_page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_the_page_logs_no_errors(browser):
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    # An unknown task's 404 and a refused action's 409 are shown in the page; Chromium logs them.
    refused = "the server responded with a status of 4"
    unexpected = [e for e in severe if refused not in e["message"]]
    assert not unexpected, unexpected
