"""A real headless Chromium for the browser tests, as a pytest plugin.

Skips where Chromium, chromedriver or selenium is missing, unless
``TASKRUNNER_REQUIRE_BROWSER=1`` (as in CI): then it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDE = (1400, 1000)


def missing_browser() -> list[str]:
    """What a browser test lacks here, by name."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    return missing


def require_browser() -> None:
    """Skips without a browser; fails instead when TASKRUNNER_REQUIRE_BROWSER=1."""
    missing = missing_browser()
    if missing:
        message = "no headless browser: missing " + ", ".join(missing)
        if os.environ.get("TASKRUNNER_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (TASKRUNNER_REQUIRE_BROWSER=1)")
        pytest.skip(message)


def start_chromium(*arguments: str) -> Any:
    """A headless Chromium under chromedriver, keeping the console's messages."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDE[0]},{WIDE[1]}",
        *arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for a test module."""
    driver = start_chromium()
    yield driver
    driver.quit()
