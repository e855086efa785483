"""Regenerates the dashboard's screenshots in docs/ from a real server.

Starts ``taskrunner serve`` on 127.0.0.1 with a journal in a temporary
folder, runs a mix of tasks for a while (some fail with tracebacks, some are
retried, polling ones report progress, some wait for others), then has
headless Chromium save:

- ``dashboard.png``: the main page, wide;
- ``task-page.png``: the page of a task that failed after a retry;
- ``charts.png``: the charts region of the main page (once it has one);
- ``dashboard-dark.png``: the main page under a dark system theme;
- ``dashboard-phone.png``: the main page 390 px wide.

Run it from the repository's root, with the package importable:

    python docs/screenshots.py             # about a minute
    python docs/screenshots.py --seconds 20

It needs Chromium, chromedriver and selenium, as the browser tests do; with
Pillow installed it also makes the PNGs smaller.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import requests

DOCS = Path(__file__).resolve().parent
# The tests' helpers: the server's start-up and shutdown are theirs.
sys.path.insert(0, str(DOCS.parent / "tests"))
from conftest_web import ServerProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDE = (1400, 1000)
PHONE_WIDTH = 390
# Where the main page's charts may be, by the ids and classes it may use.
CHART_SELECTORS = ("#charts", "#charts-panel", "section.charts", ".charts")

# The task types of the demo: a realistic mix of quick jobs, slow polled ones,
# flaky ones and ones that fail a few calls deep.
TYPES = '''
import random
import time


def read_header(path):
    if path.endswith(".tif"):
        raise ValueError(f"{path}: unsupported image format 'tiff'")
    return {"width": 1024, "height": 768}


class Thumbnail:
    """Makes a thumbnail; fails on TIFF files."""

    def __init__(self, input):
        self.input = input
        self.seconds = random.uniform(0.2, 2.5)
        self.output = None

    def run(self):
        time.sleep(self.seconds)
        header = read_header(self.input)
        self.output = {"file": self.input, "size": [header["width"] // 8, header["height"] // 8]}
        return self.output

    def get_output(self):
        return self.output


def post(url):
    raise ConnectionError(f"POST {url}: connection reset by peer")


class Upload(Thumbnail):
    """Uploads a report to a server that keeps dropping the connection."""

    def run(self):
        time.sleep(0.3)
        post(f"https://reports.example/{self.input}")


class Report(Thumbnail):
    """Builds a report from what a crawl found."""

    def run(self):
        time.sleep(self.seconds)
        self.output = f"report-{self.input}.pdf"
        return self.output


class Crawl:
    """Crawls a site: polled until done, saying how far it is."""

    def __init__(self, input):
        self.input = input
        self.seconds = random.uniform(8, 30)
        self.began = None

    def run(self):
        self.began = time.time()

    def fraction(self):
        return 0.0 if self.began is None else min(1.0, (time.time() - self.began) / self.seconds)

    def get_output(self):
        return {"site": self.input, "pages": 240} if self.fraction() >= 1 else None

    def progress(self):
        done = self.fraction()
        return {"fraction": done, "message": f"{int(done * 240)} of 240 pages"}


TASK_TYPES = {"thumbnail": Thumbnail, "upload": Upload, "crawl": Crawl, "report": Report}
'''


class Server(ServerProcess):
    """``taskrunner serve`` on a free loopback port, journaling to ``folder``."""

    def __init__(self, folder: Path) -> None:
        (folder / "demo_types.py").write_text(TYPES)
        command = [
            sys.executable, "-m", "taskrunner", "serve", "--port", "0", "--threads", "8",
            "--db", str(folder / "tasks.db"),
            "--types", "demo_types:TASK_TYPES", "--types", "taskrunner.web:FAKE_TASK_TYPES",
        ]  # fmt: skip
        pythonpath = os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])
        try:
            super().__init__(command, db=None, cwd=str(folder), PYTHONPATH=pythonpath)
        except RuntimeError as error:
            raise SystemExit(str(error)) from None

    def post(self, **body: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/api/tasks", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def status(self, id: int) -> dict[str, Any]:
        return requests.get(f"{self.url}/api/tasks/{id}", timeout=10).json()


FILES = ["beach", "city", "forest", "harbour", "market", "mountain", "river", "station"]
SITES = ["docs.example", "shop.example", "news.example", "wiki.example"]


def run_mix(server: Server, seconds: float) -> int:
    """Submits the demo's tasks for ``seconds``; returns the id of a task that
    failed after a retry (waiting for it to fail)."""
    rng = random.Random(14)
    retry = {"attempts": 2, "backoff": 0.5, "max_backoff": 1, "jitter": False}
    flaky = server.post(type="upload", input="q3.pdf", name="upload q3.pdf", retries=retry)["id"]
    crawls = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        name = f"{rng.choice(FILES)}-{n}"
        extension = ".tif" if rng.random() < 0.15 else ".jpg"
        server.post(type="thumbnail", input=name + extension, name=f"thumbnail {name}")
        if n % 6 == 0:
            site = rng.choice(SITES)
            crawl = server.post(type="crawl", input=site, name=f"crawl {site}", priority=2)
            crawls.append(crawl["id"])
            server.post(type="report", input=site, name=f"report {site}", after=[crawl["id"]])
        if n % 15 == 0:
            server.post(type="upload", input=f"r{n}.pdf", name=f"upload r{n}.pdf", retries=1)
        time.sleep(rng.uniform(0.05, 0.4))
    # Leave a few crawls running for the pictures.
    for site in SITES[:2]:
        server.post(type="crawl", input=site, name=f"crawl {site}")
    while not server.status(flaky)["done"]:
        time.sleep(0.2)
    return flaky


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WIDE[0]},{WIDE[1]}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver: Any, script: str, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return
        time.sleep(0.2)
    raise SystemExit(f"the page never showed {what}")


def open_dashboard(driver: Any, url: str) -> None:
    driver.get(url + "/")
    wait_for(driver, "return document.querySelectorAll('#task-rows tr').length > 5", "tasks")
    time.sleep(2.5)  # a couple of refreshes of the counts and panels


def set_width(driver: Any, width: int, height: int) -> None:
    driver.set_window_size(width, height)
    wait_for(driver, f"return window.innerWidth === {width}", f"a {width} px window")


def save(driver: Any, name: str, element: Optional[Any] = None) -> Path:
    path = DOCS / name
    if element is not None:
        element.screenshot(str(path))
    else:
        driver.save_screenshot(str(path))
    shrink(path)
    print(f"saved {path.relative_to(DOCS.parent)} ({path.stat().st_size // 1024} KiB)")
    return path


def shrink(path: Path) -> None:
    """Fewer colours and zlib's best: a third of the size for flat UI pictures."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def whole_page(driver: Any, width: int, limit: int = 2400) -> None:
    """The viewport as tall as the page (up to ``limit``), for a whole-page picture."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {
        "width": width,
        "height": min(height, limit),
        "deviceScaleFactor": 1,
        "mobile": False,
    }
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    time.sleep(0.3)


def emulate_dark(driver: Any, dark: bool) -> None:
    value = [{"name": "prefers-color-scheme", "value": "dark"}] if dark else []
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": value})


def pictures(url: str, failed: int) -> None:
    driver = browser()
    try:
        open_dashboard(driver, url)
        save(driver, "dashboard.png")

        charts = next(
            (
                found
                for css in CHART_SELECTORS
                for found in driver.find_elements("css selector", css)
            ),
            None,
        )
        if charts is None:
            print("skipped charts.png: the main page has no charts region yet")
        else:
            # The run is shorter than an hour: the last minute shows it best.
            for window in driver.find_elements("css selector", '#chart-window option[value="1m"]'):
                window.click()
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", charts)
            time.sleep(1.5)
            save(driver, "charts.png", charts)

        emulate_dark(driver, True)
        open_dashboard(driver, url)
        save(driver, "dashboard-dark.png")
        emulate_dark(driver, False)

        set_width(driver, PHONE_WIDTH, 844)
        open_dashboard(driver, url)
        save(driver, "dashboard-phone.png")

        set_width(driver, 1200, 1000)
        driver.get(f"{url}/tasks/{failed}")
        wait_for(driver, "return document.querySelector('#attempts .traceback') !== null", "it")
        time.sleep(0.5)
        whole_page(driver, 1200)
        save(driver, "task-page.png")
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45, help="how long to run tasks first")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskrunner-screenshots-") as folder:
        server = Server(Path(folder))
        try:
            print(f"running tasks on {server.url} for {arguments.seconds:.0f} s")
            failed = run_mix(server, arguments.seconds)
            pictures(server.url, failed)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
