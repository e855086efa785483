"""The dashboard's filters in the URL, charts, pause and resume, cancelling several
tasks at once, narrow windows and an accessibility check (axe-core), in a real
headless Chromium against a real server.

Skips, like ``test_web_dashboard.py``, where there is no browser, unless
``TASKRUNNER_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from browser import WIDE
from conftest_web import ServerProcess
from test_web_dashboard import row, row_state, wait_until

pytestmark = pytest.mark.slow

PAGE = 100  # the page's rows per GET api/tasks page (PAGE in app.js)
BAD = {"not": "a number"}  # fake_blocking doubles its input: this one fails with a TypeError


@pytest.fixture(scope="module")
def server():
    process = ServerProcess(threads=8)
    yield process
    process.stop()


def open_page(driver, url: str):
    driver.get(url)
    wait_until(
        driver,
        lambda d: d.find_element("id", "connection").get_attribute("data-status") == "live",
        "the page never went live",
    )
    wait_until(driver, lambda d: d.find_elements("css selector", "#state-filter option[value]"), "")
    return driver


@pytest.fixture
def page(browser, server):
    return open_page(browser, server.url + "/")


def post(server, **body) -> int:
    response = requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_for_state(server, id: int, state: str) -> None:
    deadline = time.monotonic() + 20
    while requests.get(f"{server.url}/api/tasks/{id}", timeout=10).json()["state"] != state:
        assert time.monotonic() < deadline, f"task {id} never became {state}"
        time.sleep(0.05)


def shown(driver) -> dict[int, tuple[str, str]]:
    """Each row's id: (state, name)."""
    return driver.execute_script(
        """
        const out = {};
        for (const tr of document.querySelectorAll("#task-rows tr")) {
          out[tr.dataset.id] = [tr.dataset.state, tr.querySelector(".name").textContent];
        }
        return out;
        """
    )


def url_query(driver) -> dict[str, list[str]]:
    return parse_qs(urlsplit(driver.current_url).query)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_chart_js_ships_with_its_licence(server):
    from taskrunner.web.dashboard import STATIC

    assert (STATIC / "vendor" / "LICENSE.chart.js").read_text().count("Chart.js Contributors")
    response = requests.get(f"{server.url}/static/vendor/chart.min.js", timeout=10)
    assert response.status_code == 200 and "Chart.js v3.9.1" in response.text[:200]
    assert response.headers["Content-Type"].startswith("text/javascript")


def test_a_read_only_token_from_the_urls_fragment(browser):
    tokens = {"TASKRUNNER_TOKEN": "change-secret", "TASKRUNNER_READ_TOKEN": "read-secret"}
    server = ServerProcess(threads=4, **tokens)
    try:
        open_page(browser, f"{server.url}/?state=failed#token=read-secret")
        # The token leaves the address bar for the tab's storage.
        assert urlsplit(browser.current_url).fragment == ""
        assert url_query(browser) == {"state": ["failed"]}
        stored = browser.execute_script("return sessionStorage.getItem('taskrunner-token');")
        assert stored == "read-secret"
        assert not browser.find_element("id", "token-form").is_displayed()
        # It may look, not change: the page says so and greys out what changes things.
        wait_until(browser, lambda d: d.find_element("id", "read-only").is_displayed(), "")
        for id in ("pause-button", "submit-button", "cancel-selected"):
            assert not browser.find_element("id", id).is_enabled(), id
    finally:
        browser.execute_script("sessionStorage.clear();")
        browser.get("about:blank")  # before the server goes, or the page's reconnects log errors
        server.stop()


# ---- filters in the URL -------------------------------------------------------------------


def test_filters_by_state_and_name_live_in_the_url_and_come_back(page, server):
    from selenium.webdriver.support.ui import Select

    word = unique("alpha")
    wanted = [
        post(server, type="fake_blocking", input=n, wait=0, name=f"{word}-{n}") for n in (1, 2)
    ]
    failed = post(server, type="fake_blocking", input=BAD, wait=0, name=f"{word}-bad")
    other = post(server, type="fake_blocking", input=3, wait=0, name=unique("beta"))
    for id in (*wanted, other):
        wait_for_state(server, id, "succeeded")
    wait_for_state(server, failed, "failed")

    Select(page.find_element("id", "state-filter")).select_by_value("succeeded")
    wait_until(page, lambda d: url_query(d).get("state") == ["succeeded"], "no state in the URL")
    page.find_element("id", "name-filter").send_keys(word)
    wait_until(page, lambda d: url_query(d).get("name") == [word], "no name in the URL")
    wait_until(
        page,
        lambda d: set(shown(d)) == {str(id) for id in wanted},
        f"the filters did not narrow the table: {shown(page)}",
    )
    link = row(page, wanted[0]).find_element("css selector", ".id a")
    assert link.get_attribute("href").endswith(f"/tasks/{wanted[0]}")

    # The URL alone brings them back.
    url = page.current_url
    open_page(page, server.url + "/")
    wait_until(page, lambda d: str(other) in shown(d), "the plain page does not list everything")
    open_page(page, url)
    assert page.find_element("id", "state-filter").get_attribute("value") == "succeeded"
    assert page.find_element("id", "name-filter").get_attribute("value") == word
    wait_until(page, lambda d: set(shown(d)) == {str(id) for id in wanted}, "URL not applied")

    # Back undoes a change of filter.
    Select(page.find_element("id", "state-filter")).select_by_value("failed")
    wait_until(page, lambda d: set(shown(d)) == {str(failed)}, "the failed filter")
    assert url_query(page).get("state") == ["failed"]
    page.back()
    wait_until(page, lambda d: url_query(d).get("state") == ["succeeded"], "Back kept the URL")
    wait_until(page, lambda d: set(shown(d)) == {str(id) for id in wanted}, "Back kept the rows")
    assert page.find_element("id", "state-filter").get_attribute("value") == "succeeded"


def test_the_error_type_and_time_range_filters(page, server):
    word = unique("errs")
    good = post(server, type="fake_blocking", input=1, wait=0, name=word)
    bad = post(server, type="fake_blocking", input=BAD, wait=0, name=word)
    wait_for_state(server, bad, "failed")
    open_page(page, f"{server.url}/?name={word}&error=TypeError")
    wait_until(page, lambda d: set(shown(d)) == {str(bad)}, f"error filter: {shown(page)}")
    # A range that ended before the tasks were submitted holds none of them.
    submitted = requests.get(f"{server.url}/api/tasks/{good}", timeout=10).json()["submitted_at"]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(submitted - 3600))
    open_page(page, f"{server.url}/?name={word}&until={until}")
    wait_until(page, lambda d: not shown(d), "the time range kept tasks")
    assert page.find_element("id", "until-filter").get_attribute("value"), "no time shown"
    assert page.find_element("id", "empty").text == "No tasks match these filters."


def test_the_kind_and_type_filters(page, server):
    word = unique("kinds")
    blocking = post(server, type="fake_blocking", input=1, wait=0, name=word)
    polling = post(server, type="fake_polling", input=1, wait=0, name=word)
    wait_for_state(server, polling, "succeeded")
    open_page(page, f"{server.url}/?name={word}&kind=polling")
    wait_until(page, lambda d: set(shown(d)) == {str(polling)}, f"kind filter: {shown(page)}")
    assert page.find_element("id", "kind-filter").get_attribute("value") == "polling"
    open_page(page, f"{server.url}/?name={word}&type=fake_blocking")
    wait_until(page, lambda d: set(shown(d)) == {str(blocking)}, f"type filter: {shown(page)}")
    wait_until(
        page,
        lambda d: d.find_element("id", "type-filter").get_attribute("value") == "fake_blocking",
        "the type filter does not show its value",
    )


def test_older_tasks_load_a_page_at_a_time(page, server):
    word = unique("many")
    ids = [post(server, type="fake_blocking", input=1, wait=0, name=word) for _ in range(PAGE + 3)]
    open_page(page, f"{server.url}/?name={word}")
    wait_until(page, lambda d: len(shown(d)) == PAGE, f"not one page: {len(shown(page))}")
    assert min(int(id) for id in shown(page)) == ids[3]
    more = page.find_element("id", "load-more")
    assert more.is_displayed()
    more.click()
    wait_until(page, lambda d: len(shown(d)) == PAGE + 3, "Load older brought nothing")
    wait_until(page, lambda d: not d.find_element("id", "load-more").is_displayed(), "")


# ---- charts -----------------------------------------------------------------------------------


def chart(driver, id: str) -> dict:
    return driver.execute_script(
        """
        const chart = Chart.getChart(arguments[0]);
        return chart && {
          labels: chart.data.datasets.map((d) => d.label),
          points: chart.data.datasets.map((d) => d.data.length),
          xs: chart.data.datasets[0].data.map((p) => p.x),
          colours: chart.data.datasets.map((d) => d.borderColor),
        };
        """,
        id,
    )


def test_the_charts_draw_and_move_as_tasks_finish(page, server):
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "chart-window")).select_by_value("1m")
    wait_until(page, lambda d: chart(d, "finished-chart")["points"][0] >= 30, "no 1m history")
    finished = chart(page, "finished-chart")
    assert finished["labels"] == ["succeeded", "failed", "cancelled", "timed out"]
    assert len(set(finished["colours"])) == 4, "one colour per state"
    steps = {round(b - a) for a, b in zip(finished["xs"], finished["xs"][1:], strict=False)}
    assert steps == {1}, steps
    load = chart(page, "load-chart")
    assert load["labels"] == ["running", "pending"] and min(load["points"]) > 0
    assert page.find_element("id", "finished-chart").size["height"] > 50

    # Tasks finished since now: older points slide out of the minute meanwhile.
    since = page.execute_script("return Date.now() / 1000 - 1;")
    for n in range(5):
        post(server, type="fake_blocking", input=n, wait=0, name="charted")
    wait_until(
        page,
        lambda d: (
            d.execute_script(
                "const points = Chart.getChart('finished-chart').data.datasets[0].data;"
                "return points.filter((p) => p.x >= arguments[0]).reduce((s, p) => s + p.y, 0);",
                since,
            )
            >= 5
        ),
        "the finished chart never counted the new tasks",
    )
    held = post(server, type="fake_polling", input=1, wait=60, name="charted")
    try:
        wait_until(
            page,
            lambda d: d.execute_script(
                "const c = Chart.getChart('load-chart'); const r = c.data.datasets[0].data;"
                "return r.length && r[r.length - 1].y >= 1;"
            ),
            "the running line never rose",
        )
    finally:
        requests.delete(f"{server.url}/api/tasks/{held}", timeout=10)
    runtime = page.find_elements("css selector", "#runtime-rows tr")
    assert [r.get_attribute("data-window") for r in runtime] == ["1m", "1h", "1d"]

    Select(page.find_element("id", "chart-window")).select_by_value("1d")
    wait_until(
        page,
        lambda d: (
            len(chart(d, "finished-chart")["xs"]) >= 2
            and chart(d, "finished-chart")["xs"][1] - chart(d, "finished-chart")["xs"][0] == 60
        ),
        "the day window does not step by the minute",
    )
    Select(page.find_element("id", "chart-window")).select_by_value("1h")


# ---- pause, resume, cancel selected ---------------------------------------------------------


def test_pause_holds_new_tasks_until_resume(page, server):
    banner = page.find_element("id", "paused-banner")
    button = page.find_element("id", "pause-button")
    assert not banner.is_displayed() and button.text == "Pause"
    button.click()
    try:
        wait_until(page, lambda d: d.find_element("id", "paused-banner").is_displayed(), "banner")
        assert banner.text.startswith("Paused.")
        assert page.find_element("id", "engine-state").text.startswith("Paused")
        assert requests.get(f"{server.url}/api/stats", timeout=10).json()["paused"] is True
        id = post(server, type="fake_blocking", input=1, wait=0, name="held by the pause")
        wait_until(page, lambda d: row_state(d, id) == "pending", "the task never showed")
        time.sleep(1.0)
        assert row_state(page, id) == "pending", "a task started while paused"
        assert page.find_element("id", "pause-button").text == "Resume"
    finally:
        page.find_element("id", "pause-button").click()
    wait_until(page, lambda d: not d.find_element("id", "paused-banner").is_displayed(), "banner")
    wait_until(page, lambda d: row_state(d, id) == "succeeded", "the task never ran after resume")
    assert page.find_element("id", "pause-button").text == "Pause"


def test_a_pause_from_elsewhere_shows_in_the_page(page, server):
    requests.post(f"{server.url}/api/pause", timeout=10)
    try:
        wait_until(page, lambda d: d.find_element("id", "paused-banner").is_displayed(), "")
    finally:
        requests.post(f"{server.url}/api/resume", timeout=10)
    wait_until(page, lambda d: not d.find_element("id", "paused-banner").is_displayed(), "")


def test_cancel_selected_says_what_was_and_was_not_cancelled(page, server):
    word = unique("bulk")
    done = post(server, type="fake_blocking", input=1, wait=0, name=word)
    wait_for_state(server, done, "succeeded")
    long = [post(server, type="fake_polling", input=n, wait=120, name=word) for n in (1, 2)]
    open_page(page, f"{server.url}/?name={word}")
    wait_until(page, lambda d: len(shown(d)) == 3, "rows missing")
    assert not page.find_element("id", "cancel-selected").is_enabled()
    page.find_element("id", "select-page").click()
    assert page.find_element("id", "selected-count").text == "3 selected"
    page.find_element("id", "cancel-selected").click()
    wait_until(page, lambda d: d.find_element("id", "bulk-result").text, "no answer shown")
    text = page.find_element("id", "bulk-result").text
    assert text.startswith(f"Cancelled 2 tasks: {long[0]}, {long[1]}."), text
    assert f"Not cancelled (already finished): {done}." in text, text
    for id in long:
        wait_until(page, lambda d, id=id: row_state(d, id) == "cancelled", f"{id} not cancelled")


# ---- for people: narrow windows, no console errors, axe-core ---------------------------------


def test_a_phone_width_page_scrolls_only_down(page):
    try:
        page.set_window_size(360, 800)
        wait_until(page, lambda d: d.execute_script("return window.innerWidth") == 360, "resize")
        open_page(page, page.current_url)
        wait_until(page, lambda d: d.find_elements("css selector", "#task-rows tr"), "no rows")
        sizes = page.execute_script(
            "const c = document.getElementById('charts-panel').getBoundingClientRect();"
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " c.right];"
        )
        assert sizes[0] <= sizes[1] and sizes[2] <= sizes[1], sizes
    finally:
        page.set_window_size(*WIDE)


def test_the_controls_are_reached_by_the_keyboard_with_a_visible_focus(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
    reached = {}
    for _ in range(60):
        ActionChains(page).send_keys(Keys.TAB).perform()
        focused = page.execute_script(
            "const e = document.activeElement; const s = getComputedStyle(e);"
            "const ring = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;"
            "return [e.id || e.className || e.tagName, ring];"
        )
        # Past the last control the focus leaves the page; a date-time input holds
        # several stops (its parts, its picker's button): one ring among them is enough.
        if focused[0] != "BODY":
            reached[focused[0]] = reached.get(focused[0], False) or focused[1]
    wanted = ["pause-button", "chart-window", "state-filter", "name-filter", "since-filter"]
    wanted += ["waiting-filter", "select-page", "submit-button"]
    assert set(wanted) <= set(reached), sorted(reached)
    assert all(reached.values()), {name for name, visible in reached.items() if not visible}


AXE = (
    Path(importlib.util.find_spec("axe_selenium_python").origin).parent
    / "node_modules/axe-core/axe.min.js"
    if importlib.util.find_spec("axe_selenium_python")
    else None
)


def axe_findings(driver) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is."""
    driver.execute_script(AXE.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(done, (e) => done({error: String(e)}));"
    )
    assert "error" not in result, result
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious(page, server, scheme):
    if AXE is None or not AXE.exists():
        pytest.skip("axe-selenium-python is not installed")
    # A few rows of each look (the check takes longer with every row the earlier tests left).
    word = unique("axe")
    post(server, type="fake_blocking", input=BAD, wait=0, name=f"{word} failed")
    post(server, type="fake_blocking", input=1, wait=0, name=f"{word} succeeded")
    post(server, type="fake_polling", input=1, wait=30, name=f"{word} running")
    feature = {"name": "prefers-color-scheme", "value": scheme}
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [feature]})
    try:
        open_page(page, f"{server.url}/?name={word}")
        wait_until(page, lambda d: len(d.find_elements("css selector", "#task-rows tr")) == 3, "")
        assert page.execute_script(f"return matchMedia('(prefers-color-scheme: {scheme})').matches")
        findings = axe_findings(page)
        assert not findings, findings
    finally:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_the_page_logs_no_errors(page):
    severe = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    # A refused cancel is said in the page, and Chromium logs its 4xx.
    unexpected = [
        e for e in severe if "the server responded with a status of 4" not in e["message"]
    ]
    assert not unexpected, unexpected
