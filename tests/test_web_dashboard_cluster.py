"""The dashboard in a real headless Chromium in front of ``serve --cluster``: each
task's worker, and the workers panel. Skips without a browser, as the dashboard's
own browser test does (or fails with ``TASKRUNNER_REQUIRE_BROWSER=1``)."""

from __future__ import annotations

import contextlib

import pytest
import requests
import test_web_dashboard as dashboard
from browser import require_browser
from conftest_web import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

distributed = pytest.importorskip("distributed", reason="the cluster tests need the [dask] extra")

from taskrunner.cluster.link import live_workers  # noqa: E402

wait_until = dashboard.wait_until


def fits(widths: list[int]) -> bool:
    """Neither the page nor the workers table is wider than its box."""
    return widths[0] <= widths[1] and widths[2] <= widths[3]


@pytest.fixture(scope="module", autouse=True)
def browser_before_cluster():
    # Autouse fixtures set up first in their scope: without a browser, the shared
    # dask_processes (tests/dask_cluster.py) starts no cluster for nothing.
    require_browser()


def open_page(driver, url: str) -> None:
    driver.get(url + "/")
    wait_until(
        driver,
        lambda d: d.find_element("id", "connection").get_attribute("data-status") == "live",
        "the page never went live",
    )


def short(address: str) -> str:
    return address.removeprefix("tcp://")


def test_the_workers_panel_lists_each_worker_with_its_numbers(browser, server, dask_processes):
    open_page(browser, server.url)
    workers = {short(a) for a in live_workers(dask_processes.client)}
    panel = browser.find_element("id", "workers-panel")
    wait_until(browser, lambda d: panel.is_displayed(), "the workers panel stayed hidden")
    wait_until(
        browser,
        lambda d: (
            {
                r.find_element("css selector", ".address").text
                for r in d.find_elements("css selector", "#worker-rows tr")
            }
            == workers
        ),
        "the panel did not list both workers",
    )
    scheduler = browser.find_element("id", "scheduler").text
    assert dask_processes.address in scheduler and "out of reach" not in scheduler
    headers = [th.text.lower() for th in panel.find_elements("css selector", "thead th")]
    assert headers == ["address", "running", "threads", "heartbeat"]


def test_each_task_shows_the_worker_it_ran_on(browser, server, dask_processes):
    open_page(browser, server.url)
    ids = []
    for i in range(4):
        body = {"type": "fake_blocking", "input": i, "wait": 0.3}
        response = requests.post(f"{server.url}/api/tasks", json=body, timeout=10)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    workers = {short(a) for a in live_workers(dask_processes.client)}

    def worker_cells(driver) -> dict[int, str]:
        cells = {}
        for id in ids:
            rows = driver.find_elements("css selector", f'#task-rows tr[data-id="{id}"]')
            if rows and rows[0].get_attribute("data-state") == "succeeded":
                cells[id] = rows[0].find_element("css selector", ".worker").text
        return cells

    wait_until(browser, lambda d: len(worker_cells(d)) == len(ids), "the tasks did not finish")
    assert set(worker_cells(browser).values()) <= workers
    assert browser.find_element("css selector", "#task-table th.worker").is_displayed()


def test_a_narrow_window_with_the_workers_panel_scrolls_only_down(browser, server):
    from selenium.common.exceptions import TimeoutException

    open_page(browser, server.url)
    wait_until(
        browser,
        lambda d: d.find_elements("css selector", "#worker-rows tr"),
        "the panel listed no worker",
    )
    try:
        browser.set_window_size(360, 800)
        wait_until(browser, lambda d: d.execute_script("return innerWidth") == 360, "no resize")

        def measure(d) -> list[int]:
            return d.execute_script(
                "return [document.documentElement.scrollWidth, innerWidth,"
                " document.querySelector('#workers-panel .table-wrap').scrollWidth,"
                " document.querySelector('#workers-panel .table-wrap').clientWidth]"
            )

        # The layout follows innerWidth a frame or more later (the charts are
        # redrawn for the new width): judge the page once it had time to settle.
        with contextlib.suppress(TimeoutException):
            wait_until(browser, lambda d: fits(measure(d)), "the page never fit")
        widths = measure(browser)
        assert widths[0] <= widths[1], widths  # the page does not scroll sideways
        assert widths[2] <= widths[3], widths  # nor does the workers table
    finally:
        browser.set_window_size(*dashboard.WIDE)


def test_without_a_cluster_neither_the_panel_nor_the_column_shows(browser):
    local = ServerProcess(threads=4)
    try:
        open_page(browser, local.url)
        requests.post(f"{local.url}/api/tasks", json={"type": "fake", "input": 1, "wait": 0})
        wait_until(browser, lambda d: d.find_elements("css selector", "#task-rows tr"), "no rows")
        assert not browser.find_element("id", "workers-panel").is_displayed()
        assert not browser.find_element("css selector", "#task-table th.worker").is_displayed()
    finally:
        local.stop()
