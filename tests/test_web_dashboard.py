"""The dashboard in a real headless Chromium, against a real server.

Skips where Chromium, chromedriver or selenium is missing, unless
``TASKRUNNER_REQUIRE_BROWSER=1`` (as in CI): then it fails instead.
"""

from __future__ import annotations

import sys
import time

import pytest
import requests
from browser import WIDE, require_browser
from conftest_web import ServerProcess

from taskrunner import STATES

pytestmark = pytest.mark.slow

PATIENCE = 20.0  # seconds to wait for the page to show a change


def test_a_browser_is_available():
    require_browser()


@pytest.fixture(scope="module")
def server():
    process = ServerProcess(threads=8)
    yield process
    process.stop()


@pytest.fixture
def page(browser, server):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    wait = WebDriverWait(browser, PATIENCE)
    wait.until(lambda d: d.find_element("id", "connection").get_attribute("data-status") == "live")
    wait.until(lambda d: d.find_elements("css selector", "#task-type option"))
    return browser


def wait_until(driver, predicate, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PATIENCE, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: predicate(d), message
    )


def fill_form(driver, type: str, input: str, wait: str = "", name: str = "") -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "task-type")).select_by_value(type)
    for field, value in (("task-input", input), ("task-wait", wait), ("task-name", name)):
        element = driver.find_element("id", field)
        element.clear()
        if value:
            element.send_keys(value)
    # Clear the previous confirmation, so that only this submission's can match.
    driver.execute_script("document.getElementById('form-result').textContent = '';")
    driver.find_element("id", "submit-button").click()


def submitted_id(driver) -> int:
    """The id the form says it submitted."""
    wait_until(
        driver,
        lambda d: d.find_element("id", "form-result").text.startswith("Submitted task "),
        "the form did not confirm the submission",
    )
    text = driver.find_element("id", "form-result").text
    return int(text.removeprefix("Submitted task ").rstrip("."))


def row(driver, id: int):
    return driver.find_element("css selector", f'#task-rows tr[data-id="{id}"]')


def row_state(driver, id: int) -> str:
    rows = driver.find_elements("css selector", f'#task-rows tr[data-id="{id}"]')
    return rows[0].get_attribute("data-state") if rows else ""


def test_submit_from_the_form_and_watch_it_succeed_without_a_reload(page, server):
    page.execute_script("window.notReloaded = true;")
    fill_form(page, "fake_blocking", "21", wait="0.5", name="from the form")
    id = submitted_id(page)
    wait_until(page, lambda d: row_state(d, id) == "succeeded", f"task {id} never succeeded")
    cells = row(page, id)
    assert cells.find_element("css selector", ".outcome").text == "42"
    assert cells.find_element("css selector", ".name").text == "from the form"
    assert cells.find_element("css selector", ".kind").text == "blocking"
    # get_output() after a blocking task's run() is no poll: there are none to show.
    assert cells.find_element("css selector", ".polls").text == "–"
    assert page.execute_script("return window.notReloaded === true;"), "the page reloaded"
    assert int(page.find_element("id", "count-succeeded").text) >= 1


def test_cancel_a_task_from_its_row(page, server):
    fill_form(page, "fake_polling", "1", wait="120")
    id = submitted_id(page)
    wait_until(page, lambda d: row_state(d, id) == "running", f"task {id} never ran")
    row(page, id).find_element("css selector", "button.cancel").click()
    wait_until(page, lambda d: row_state(d, id) == "cancelled", f"task {id} was not cancelled")
    assert requests.get(f"{server.url}/api/tasks/{id}", timeout=10).json()["state"] == "cancelled"
    assert not row(page, id).find_element("css selector", "button.cancel").is_displayed()


def test_a_failed_task_shows_its_error(page):
    fill_form(page, "fake_blocking", '{"not": "a number"}', wait="0")
    id = submitted_id(page)
    wait_until(page, lambda d: row_state(d, id) == "failed", f"task {id} did not fail")
    assert row(page, id).find_element("css selector", ".outcome").text.startswith("TypeError:")


def test_a_rejected_submission_says_why(page):
    fill_form(page, "fake", "1", wait="-1")
    wait_until(
        page,
        lambda d: "wait" in d.find_element("id", "form-result").text,
        "the form did not report the bad wait",
    )
    result = page.find_element("id", "form-result")
    assert result.text.startswith("Not submitted")
    assert "error" in result.get_attribute("class")


def test_tasks_submitted_elsewhere_appear_live(page, server):
    body = {"type": "fake_polling", "input": 4, "wait": 0.3, "name": "from curl"}
    id = requests.post(f"{server.url}/api/tasks", json=body, timeout=10).json()["id"]
    wait_until(page, lambda d: row_state(d, id) == "succeeded", f"task {id} never showed up")
    assert row(page, id).find_element("css selector", ".outcome").text == "8"


def test_the_state_filter_shows_only_that_state(page, server):
    from selenium.webdriver.support.ui import Select

    for body in (
        {"type": "fake_blocking", "input": 1, "wait": 0},
        {"type": "fake_polling", "input": 1, "wait": 120},
    ):
        requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
    wait_until(
        page,
        lambda d: (
            {
                r.get_attribute("data-state")
                for r in d.find_elements("css selector", "#task-rows tr")
            }
            >= {"succeeded", "running"}
        ),
        "the table never held both states",
    )
    Select(page.find_element("id", "state-filter")).select_by_value("running")
    wait_until(
        page,
        lambda d: (
            {
                r.get_attribute("data-state")
                for r in d.find_elements("css selector", "#task-rows tr")
            }
            == {"running"}
        ),
        "the filter left other states in the table",
    )
    page.find_element("css selector", '.count[data-state=""]').click()
    wait_until(
        page,
        lambda d: (
            "succeeded"
            in {
                r.get_attribute("data-state")
                for r in d.find_elements("css selector", "#task-rows tr")
            }
        ),
        "clearing the filter did not bring the rows back",
    )


def test_the_page_logs_no_errors(page):
    severe = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    # A refused cancel or submission is reported in the page, and Chromium logs its 4xx.
    unexpected = [
        e for e in severe if "the server responded with a status of 4" not in e["message"]
    ]
    assert not unexpected, unexpected


def test_the_states_come_from_the_server_in_order(page):
    buttons = page.find_elements("css selector", ".counts .count")
    assert [b.get_attribute("data-state") for b in buttons] == ["", *STATES]
    options = page.find_elements("css selector", "#state-filter option")
    assert [o.get_attribute("value") for o in options] == ["", *STATES]


def test_polls_show_for_polling_tasks(page, server):
    body = {"type": "fake_polling", "input": 1, "wait": 0.3}
    id = requests.post(f"{server.url}/api/tasks", json=body, timeout=10).json()["id"]
    wait_until(page, lambda d: row_state(d, id) == "succeeded", f"task {id} never succeeded")
    assert int(row(page, id).find_element("css selector", ".polls").text) >= 1


def fits(driver) -> dict:
    """Whether the page is no wider than the window, and where the Submit button is."""
    return driver.execute_script(
        """
        const button = document.getElementById("submit-button");
        button.scrollIntoView({block: "center"});
        const box = button.getBoundingClientRect();
        return {
          innerWidth: window.innerWidth,
          innerHeight: window.innerHeight,
          scrollWidth: document.documentElement.scrollWidth,
          button: {left: box.left, right: box.right, top: box.top, bottom: box.bottom},
        };
        """
    )


@pytest.mark.parametrize("width", [500, 360])
def test_a_narrow_window_scrolls_only_down_and_shows_the_submit_button(page, server, width):
    # Rows with long names and results, as a busy page has.
    for n in range(3):
        body = {"type": "fake_blocking", "input": "x" * 80, "wait": 0, "name": f"long-{n}" * 12}
        requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
    try:
        page.set_window_size(width, 800)
        wait_until(
            page, lambda d: d.execute_script("return window.innerWidth") == width, "no resize"
        )
        wait_until(page, lambda d: d.find_elements("css selector", "#task-rows tr"), "no rows")
        layout = fits(page)
        assert layout["scrollWidth"] <= layout["innerWidth"], layout
        button = layout["button"]
        assert 0 <= button["left"] and button["right"] <= layout["innerWidth"], layout
        assert 0 <= button["top"] and button["bottom"] <= layout["innerHeight"], layout
    finally:
        page.set_window_size(*WIDE)


def test_after_a_crash_the_page_shows_the_history_and_each_rerun_with_its_attempt(
    browser, tmp_path
):
    from selenium.webdriver.support.ui import WebDriverWait

    db = str(tmp_path / "tasks.db")
    first = ServerProcess(db=db)
    done = {"type": "fake_blocking", "input": 1, "wait": 0, "name": "before the crash"}
    finished = requests.post(f"{first.url}/api/tasks", json=done, timeout=10).json()["id"]
    cut = {"type": "fake_polling", "input": 2, "wait": 60, "name": "cut short"}
    # Its 202 comes once it is committed, and the first task's end with it.
    rerun = requests.post(f"{first.url}/api/tasks", json=cut, timeout=10).json()["id"]
    first.process.kill()
    first.process.wait(timeout=30)
    second = ServerProcess(db=db)
    try:
        browser.get(second.url + "/")
        WebDriverWait(browser, PATIENCE).until(
            lambda d: d.find_element("id", "connection").get_attribute("data-status") == "live"
        )
        wait_until(browser, lambda d: row_state(d, finished) == "succeeded", "no history")
        wait_until(browser, lambda d: row_state(d, rerun) == "running", "no rerun")
        attempt = row(browser, rerun).find_element("css selector", ".state .attempt")
        assert attempt.text == "attempt 2"
        assert not row(browser, finished).find_elements("css selector", ".attempt")
        requests.delete(f"{second.url}/api/tasks/{rerun}", timeout=10)
    finally:
        second.stop()


OWN_TYPES = """
from taskrunner.web import TaskType


class Area:
    def __init__(self, input):
        self.input = input

    def run(self):
        return self.input["width"] * self.input["height"]

    def get_output(self):
        return None


SIDES = {
    "type": "object",
    "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
    "required": ["width"],
    "examples": [{"width": 3, "height": 4}],
}
TASK_TYPES = [TaskType("area", Area, schema=SIDES, description="The area of a rectangle")]
"""


def test_the_form_shows_a_types_description_and_the_input_its_schema_expects(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    (tmp_path / "rectangles.py").write_text(OWN_TYPES)
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "4"]
    types = ["--types", "rectangles:TASK_TYPES", "--types", "taskrunner.web:FAKE_TASK_TYPES"]
    server = ServerProcess(command + types, cwd=str(tmp_path))
    try:
        browser.get(server.url + "/")
        wait_until(browser, lambda d: d.find_elements("css selector", "#task-type option"), "")
        box = browser.find_element("id", "task-input")
        hint = browser.find_element("id", "task-input-schema")
        assert browser.find_element("id", "task-type").get_attribute("value") == "area"
        assert browser.find_element("id", "task-type-description").text == (
            "The area of a rectangle"
        )
        assert box.get_attribute("placeholder") == '{"width":3,"height":4}'
        assert box.get_attribute("value") == ""
        assert hint.text == "Expects an object: width (integer, required), height (integer)"
        # A type without a schema: the page's default input, and no hint.
        Select(browser.find_element("id", "task-type")).select_by_value("fake_blocking")
        assert box.get_attribute("value") == "21" and not hint.is_displayed()
        # The wait box is disabled for a type without one: fill_form would clear it.
        Select(browser.find_element("id", "task-type")).select_by_value("area")
        box.send_keys('{"width": 5, "height": 6}')
        browser.find_element("id", "submit-button").click()
        id = submitted_id(browser)
        wait_until(browser, lambda d: row_state(d, id) == "succeeded", f"task {id} failed")
        assert row(browser, id).find_element("css selector", ".outcome").text == "30"
        # What the user typed stays when the type changes.
        Select(browser.find_element("id", "task-type")).select_by_value("fake_blocking")
        assert box.get_attribute("value") == '{"width": 5, "height": 6}'
    finally:
        server.stop()


# ---- scheduling: progress, attempts, start times, dependencies, limits ----------------

SCHEDULING_TYPES = """
from taskrunner.faketasks import FakeTaskBlocking, FakeTaskPolling


class Reporting(FakeTaskPolling):
    def __init__(self, input):
        super().__init__(input, wait=600)

    def progress(self):
        return {"fraction": 0.5, "message": "half way"}


class Flaky(FakeTaskBlocking):
    def __init__(self, input):
        super().__init__(input, wait=0)

    def run(self):
        raise ConnectionError("the service is down")


TASK_TYPES = {"reporting": Reporting, "flaky": Flaky}
"""


@pytest.fixture(scope="module")
def scheduling_server(tmp_path_factory):
    where = tmp_path_factory.mktemp("scheduling")
    (where / "scheduling_types.py").write_text(SCHEDULING_TYPES)
    command = [sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "8"]
    types = ["--types", "scheduling_types:TASK_TYPES", "--types", "taskrunner.web:FAKE_TASK_TYPES"]
    limits = ["--limit", "gpu=1", "--limit", "api=100/1s"]
    process = ServerProcess(command + types + limits, cwd=str(where))
    yield process
    process.stop()


@pytest.fixture
def scheduling_page(browser, scheduling_server):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(scheduling_server.url + "/")
    wait = WebDriverWait(browser, PATIENCE)
    wait.until(lambda d: d.find_element("id", "connection").get_attribute("data-status") == "live")
    wait.until(lambda d: d.find_elements("css selector", "#task-type option"))
    return browser


def post(server, **body) -> dict:
    response = requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def shown_ids(driver) -> set[int]:
    return {
        int(r.get_attribute("data-id"))
        for r in driver.find_elements("css selector", "#task-rows tr")
    }


def test_a_tasks_progress_attempt_start_after_limit_and_priority_show(
    scheduling_page, scheduling_server
):
    page, server = scheduling_page, scheduling_server
    reporting = post(server, type="reporting", input=1, limit="gpu", priority=5)["id"]
    retry = {"attempts": 2, "backoff": 600, "max_backoff": 600}
    flaky = post(server, type="flaky", input=1, retries=retry)["id"]
    later = post(server, type="fake_blocking", input=1, after=[reporting], delay=900)["id"]
    plain = post(server, type="fake_blocking", input=1, wait=0)["id"]
    try:
        wait_until(page, lambda d: row_state(d, reporting) == "running", "the task never ran")
        wait_until(
            page,
            lambda d: row(d, reporting).find_element("css selector", ".progress").text,
            "no progress shown",
        )
        cells = row(page, reporting)
        bar = cells.find_element("css selector", ".progress progress")
        assert bar.is_displayed() and float(bar.get_attribute("value")) == 0.5
        assert cells.find_element("css selector", ".progress").text == "50% half way"
        assert cells.find_element("css selector", ".limit").text == "gpu"
        assert cells.find_element("css selector", ".priority").text == "5"

        wait_until(
            page,
            lambda d: row(d, flaky).find_elements("css selector", ".state .attempt"),
            "the retry's attempt never showed",
        )
        state = row(page, flaky).find_element("css selector", ".state")
        assert state.find_element("css selector", ".attempt").text == "attempt 2"
        assert state.find_element("css selector", ".starts").text.startswith("retry in ")

        wait_until(page, lambda d: row_state(d, later) == "pending", "the later task never showed")
        cells = row(page, later)
        assert cells.find_element("css selector", ".state .starts").text.startswith("starts in ")
        link = cells.find_element("css selector", ".after a")
        assert link.text == str(reporting) and link.get_attribute("href").endswith(
            f"#task-{reporting}"
        )

        wait_until(page, lambda d: row_state(d, plain) == "succeeded", "the plain task never ran")
        cells = row(page, plain)
        assert not cells.find_elements("css selector", ".progress progress")
        assert not cells.find_elements("css selector", ".attempt, .starts, .after a")
        assert cells.find_element("css selector", ".limit").text == ""
    finally:
        for id in (reporting, flaky, later):
            requests.delete(f"{server.url}/api/tasks/{id}", timeout=10)


def test_the_filters_by_limit_and_by_waiting(scheduling_page, scheduling_server):
    from selenium.webdriver.support.ui import Select

    page, server = scheduling_page, scheduling_server
    under_api = post(server, type="fake_blocking", input=1, wait=0, limit="api")["id"]
    delayed = post(server, type="fake_blocking", input=1, delay=900)["id"]
    free = post(server, type="fake_blocking", input=1, wait=0)["id"]
    wait_until(page, lambda d: {under_api, delayed, free} <= shown_ids(d), "rows missing")
    wait_until(
        page,
        lambda d: d.find_elements("css selector", '#limit-filter option[value="api"]'),
        "the limit filter has no api",
    )

    Select(page.find_element("id", "limit-filter")).select_by_value("api")
    wait_until(page, lambda d: free not in shown_ids(d), "the limit filter kept other tasks")
    assert under_api in shown_ids(page) and delayed not in shown_ids(page)
    limits = {r.find_element("css selector", ".limit").text for r in page.find_elements(
        "css selector", "#task-rows tr")}  # fmt: skip
    assert limits == {"api"}

    Select(page.find_element("id", "limit-filter")).select_by_value("")
    page.find_element("id", "waiting-filter").click()
    wait_until(page, lambda d: free not in shown_ids(d), "the waiting filter kept others")
    assert delayed in shown_ids(page) and under_api not in shown_ids(page)
    for each in page.find_elements("css selector", "#task-rows tr"):
        assert each.get_attribute("data-state") == "pending"
        assert each.find_element("css selector", ".state .starts").text
    page.find_element("id", "waiting-filter").click()
    wait_until(page, lambda d: free in shown_ids(d), "clearing the filter did not bring rows back")
    requests.delete(f"{server.url}/api/tasks/{delayed}", timeout=10)


def limit_panel_rows(driver) -> dict[str, list[str]]:
    """The panel's rows by label; read again when the panel redraws under the read."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(5):
        try:
            return {
                r.get_attribute("data-label"): [
                    td.text for td in r.find_elements("css selector", "td")
                ]
                for r in driver.find_elements("css selector", "#limit-rows tr")
            }
        except StaleElementReferenceException:
            continue
    raise AssertionError("the limits panel kept redrawing")


def test_the_limits_panel_shows_each_limit_live(scheduling_page, scheduling_server):
    page, server = scheduling_page, scheduling_server
    assert page.find_element("id", "limits-panel").is_displayed()
    wait_until(page, lambda d: "api" in limit_panel_rows(d), "no limits in the panel")
    assert limit_panel_rows(page)["api"] == ["api", "100/1s", "0", "0"]
    held = post(server, type="reporting", input=1, limit="gpu")["id"]
    waiting = post(server, type="reporting", input=2, limit="gpu")["id"]
    try:
        wait_until(
            page,
            lambda d: limit_panel_rows(d).get("gpu") == ["gpu", "1", "1", "1"],
            f"the panel never showed gpu held: {limit_panel_rows(page)}",
        )
        requests.put(f"{server.url}/api/limits/gpu", json={"limit": 3}, timeout=10)
        wait_until(
            page,
            lambda d: limit_panel_rows(d).get("gpu") == ["gpu", "3", "2", "0"],
            f"the panel never showed the new limit: {limit_panel_rows(page)}",
        )
    finally:
        for id in (held, waiting):
            requests.delete(f"{server.url}/api/tasks/{id}", timeout=10)
        requests.put(f"{server.url}/api/limits/gpu", json={"limit": 1}, timeout=10)


def test_submit_with_options_from_the_form(scheduling_page, scheduling_server):
    from selenium.webdriver.support.ui import Select

    page, server = scheduling_page, scheduling_server
    upstream = post(server, type="fake_polling", input=1, wait=600)["id"]
    options = page.find_element("id", "task-options")
    assert not page.find_element("id", "task-retries").is_displayed(), "options start open"
    options.find_element("css selector", "summary").click()
    for field, value in (
        ("task-retries", "2"),
        ("task-delay", "600"),
        ("task-priority", "3"),
        ("task-after", str(upstream)),
    ):
        page.find_element("id", field).send_keys(value)
    wait_until(
        page,
        lambda d: d.find_elements("css selector", '#task-limit option[value="gpu"]'),
        "the form has no limits to pick",
    )
    Select(page.find_element("id", "task-limit")).select_by_value("gpu")
    fill_form(page, "fake_blocking", "4", wait="0")
    id = submitted_id(page)
    status = requests.get(f"{server.url}/api/tasks/{id}", timeout=10).json()
    assert status["state"] == "pending" and status["not_before"] > time.time() + 500
    assert (status["priority"], status["after"], status["limit"]) == (3, [upstream], "gpu")
    assert row(page, id).find_element("css selector", ".limit").text == "gpu"
    for each in (id, upstream):
        requests.delete(f"{server.url}/api/tasks/{each}", timeout=10)
