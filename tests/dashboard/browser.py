"""Headless Chromium from Debian's packages, driven by Selenium, for the dashboard's
browser test and screenshots.

``chromium`` and ``chromium-driver`` are apt-get installed when missing (as
``tests/containers/engine.py`` installs docker.io); when that cannot be done,
:class:`Unavailable` says why in one line. Selenium is given both paths, so Selenium
Manager never runs (nothing is downloaded), and Chromium runs with the flags that keep
it off the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.containers.engine import Unavailable, _apt_install

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

__all__ = ["CHROMEDRIVER", "CHROMIUM", "Unavailable", "chromium"]


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when missing.

    Raises:
        Unavailable: They are missing and cannot be installed here.
    """
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _apt_install("chromium", "chromium-driver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise Unavailable(f"{CHROMIUM} or {CHROMEDRIVER} still missing after apt-get install")


@contextmanager
def chromium(width: int = 1360, height: int = 900) -> Iterator[object]:
    """A Selenium ``webdriver.Chrome`` on Debian's chromium, with a fresh profile.

    Raises:
        Unavailable: No Chromium (or Selenium) can be had here.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise Unavailable(f"selenium is not installed ({exc.name}): pip install selenium") from None
    ensure_chromium()
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager stays offline
    profile = tempfile.mkdtemp(prefix="taskq-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console, for failures
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # a WebDriverException: the browser did not start
        shutil.rmtree(profile, ignore_errors=True)
        first = (str(exc).strip().splitlines() or ["?"])[0]
        raise Unavailable(f"chromium did not start: {first}") from None
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console(driver: object) -> str:
    """The page's console messages so far (for a failing wait's message)."""
    try:
        logs = driver.get_log("browser")  # type: ignore[attr-defined]
    except Exception:  # not every driver keeps them
        return "(no console log)"
    return "\n".join(f"{e['level']}: {e['message']}" for e in logs) or "(console empty)"
