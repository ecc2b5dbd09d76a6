"""A real browser for the web-access tests: Debian's chromium, driven by selenium through Debian's
chromedriver (never a downloaded browser). The browser trusts nothing but what it is told: tests
pass --ignore-certificate-errors because a throwaway profile cannot be given the cluster CA without
NSS tools; the TLS chain itself is checked by the integration tests' HTTPS client, which trusts only
the cluster CA."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import require_chromium

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@contextmanager
def chromium() -> Iterator[Any]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--ignore-certificate-errors", "--window-size=1280,900",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(driver: Any, predicate: Callable[[Any], Any], timeout_s: float, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.3).until(predicate, message=f"timed out: {what}")


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
