"""The dashboard end to end in a real headless Chromium (Debian's, driven by Selenium):
a private Redis, a real `taskq worker` process, the dashboard; the page must show runs
change state, a run's attempts, a flow's children, and requeue from the page (offered
only with actions on).

Every wait is a WebDriverWait on the DOM (or a join of the worker process), never a
sleep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskq
from taskq import deadletters
from taskq.testing import BurstWorker
from tests.dashboard import apps
from tests.dashboard.browser import Unavailable, chromium, console
from tests.dashboard.conftest import TOKEN, Serve

pytest.importorskip("selenium", reason="selenium is not installed (the dev extra)")

from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).parents[2]
WAIT = 30.0
WORKER_FLAGS = ("--burst", "--burst-wait", "0", "--processes", "1", "--concurrency", "4")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        with chromium() as d:
            yield d
    except Unavailable as exc:
        pytest.skip(f"no headless Chromium: {exc}")


@pytest.fixture
def app(redis_url: str, taskq_prefix: str) -> Iterator[taskq.App]:
    """The worker app of tests/dashboard/apps.py on this test's Redis and prefix."""
    apps.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    yield apps.app
    apps.app.close()


def start_worker(redis_url: str, prefix: str) -> subprocess.Popen[str]:
    """A real `taskq worker --burst` pool process; tasks it does not know are dead-lettered
    at once (TASKQ_UNKNOWN_TASK_GRACE=0)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TASKQ_REDIS_URL": redis_url,
        "TASKQ_PREFIX": prefix,
        "TASKQ_UNKNOWN_TASK_GRACE": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "taskq", "worker", "tests.dashboard.apps:app", *WORKER_FLAGS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(driver: Any, what: str, check: Callable[[Any], Any]) -> Any:
    """Wait (on the DOM) until ``check(driver)`` is truthy; fail saying ``what``."""
    try:
        # A live update may replace a row between finding it and reading it: look again.
        wait = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])
        return wait.until(check)
    except TimeoutException:
        pytest.fail(f"the page never showed {what}\n{console(driver)}")


def row_state(run_id: str) -> Callable[[Any], str | None]:
    def state(d: Any) -> str | None:
        rows = d.find_elements(By.CSS_SELECTOR, f'#runs-body tr[data-run="{run_id}"]')
        return rows[0].get_attribute("data-state") if rows else None

    return state


def shows_state(run_id: str, *states: str) -> Callable[[Any], bool]:
    def check(d: Any) -> bool:
        return row_state(run_id)(d) in states

    return check


def test_the_page_follows_runs_and_requeues_a_dead_letter(
    driver: Any,
    app: taskq.App,
    redis_url: str,
    serve_dashboard: Serve,
    burst_worker: BurstWorker,
) -> None:
    prefix = app.settings.prefix
    producer = apps.producer(redis_url, prefix)
    board = serve_dashboard(app, actions=True)
    driver.get(board.url + "/runs")
    wait_for(driver, "the live indicator", lambda d: d.find_element(By.ID, "live").text == "live")

    added = apps.add.submit(1, 2)
    wait_for(driver, "a submitted run as Pending", shows_state(added.run_id, "Pending"))
    held = apps.hold.submit()
    failed = apps.boom.submit("bad input")
    flaky = apps.flaky.submit(5)
    flow = apps.pipeline.submit(2)
    lost = producer.get_task(apps.NOT_DEPLOYED).submit(7)
    worker = start_worker(redis_url, prefix)
    try:
        wait_for(driver, "the held run Running", shows_state(held.run_id, "Running"))
        wait_for(driver, "a run Completed", shows_state(added.run_id, "Completed"))
        wait_for(driver, "a run Failed", shows_state(failed.run_id, "Failed"))
        wait_for(driver, "a retried run Completed", shows_state(flaky.run_id, "Completed"))
        wait_for(driver, "a flow Completed", shows_state(flow.run_id, "Completed"))
        wait_for(driver, "a dead-lettered run Failed", shows_state(lost.run_id, "Failed"))
        app.broker.execute("RPUSH", apps.release_key(prefix), "go")
        wait_for(driver, "the released run Completed", shows_state(held.run_id, "Completed"))
    finally:
        app.broker.execute("RPUSH", apps.release_key(prefix), "go")
        out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    task_cell = driver.find_element(By.CSS_SELECTOR, f'tr[data-run="{added.run_id}"] .task')
    assert task_cell.text == apps.add.name  # the name comes with the events

    # A run's page: its attempts (the first one's error) and its result.
    driver.get(board.url + f"/runs/{flaky.run_id}?queue=default")
    rows = wait_for(
        driver,
        "two attempts",
        lambda d: (
            len(found := d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")) == 2 and found
        ),
    )
    assert "ConnectionError: first attempt fails" in rows[0].text
    assert driver.find_element(By.ID, "run-result").text == "5"
    assert driver.find_element(By.CSS_SELECTOR, "#run-state .state").text == "Completed"

    # A flow's page: its children, and a child flow's own children one click down.
    driver.get(board.url + f"/runs/{flow.run_id}?queue=default")
    children = wait_for(
        driver,
        "the flow's two children",
        lambda d: len(found := d.find_elements(By.CSS_SELECTOR, "#children > li")) == 2 and found,
    )
    assert [c.get_attribute("data-run") for c in children] == [
        f"{flow.run_id}.1",
        f"{flow.run_id}.2",
    ]
    assert all("Completed" in c.text for c in children)
    children[0].find_element(By.CSS_SELECTOR, ".toggle").click()
    wait_for(
        driver,
        "the child flow's children",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#children > li > div .tree > li")) == 2,
    )

    # Dead letters: requeue from the page (the token asked once), then it completes.
    driver.get(board.url + "/dead")
    [entry] = deadletters.dead_entries(app.broker, "default")
    button = wait_for(
        driver,
        "a Requeue button",
        lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-entry="{entry.entry_id}"] .requeue'),
    )
    button.click()
    wait_for(
        driver, "the token dialog", lambda d: d.find_element(By.ID, "token-input").is_displayed()
    )
    driver.find_element(By.ID, "token-input").send_keys(TOKEN)
    driver.find_element(By.ID, "token-ok").click()
    wait_for(
        driver,
        "the requeued entry gone",
        lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-entry="{entry.entry_id}"]'),
    )
    assert "requeued 1" in driver.find_element(By.ID, "toast").text
    assert driver.execute_script("return sessionStorage.getItem('taskq-token')") == TOKEN
    driver.get(board.url + "/runs")
    wait_for(driver, "the requeued run Pending", shows_state(lost.run_id, "Pending"))
    burst_worker(producer)  # a worker that knows the task
    wait_for(driver, "the requeued run Completed", shows_state(lost.run_id, "Completed"))
    assert lost.result(timeout=10) == 7
    producer.close()


def test_read_only_offers_no_action(
    driver: Any,
    app: taskq.App,
    redis_url: str,
    serve_dashboard: Serve,
    burst_worker: BurstWorker,
) -> None:
    producer = apps.producer(redis_url, app.settings.prefix)
    lost = producer.get_task(apps.NOT_DEPLOYED).submit(1)
    app.configure(unknown_task_grace=0)
    burst_worker(app)
    later = apps.add.with_options(delay=3600).submit(1, 1)
    board = serve_dashboard(app)
    driver.get(board.url + "/dead")
    wait_for(
        driver,
        "the dead letter",
        lambda d: d.find_elements(By.CSS_SELECTOR, "#dead-body tr[data-entry]"),
    )
    assert lost.run_id in driver.find_element(By.ID, "dead-body").text
    assert driver.find_elements(By.CSS_SELECTOR, "button.requeue, [data-requeue-all]") == []
    assert "read-only" in driver.find_element(By.ID, "mode").text
    driver.get(board.url + f"/runs/{later.run_id}?queue=default")
    wait_for(
        driver,
        "the scheduled run's page",
        lambda d: d.find_element(By.CSS_SELECTOR, "#run-state .state").text == "Scheduled",
    )
    assert driver.find_elements(By.ID, "cancel-run") == []
    producer.close()


def test_cancel_from_a_run_page(driver: Any, app: taskq.App, serve_dashboard: Serve) -> None:
    later = apps.add.with_options(delay=3600).submit(2, 2)
    board = serve_dashboard(app, actions=True)
    driver.get(board.url + f"/runs/{later.run_id}?queue=default")
    button = wait_for(driver, "the cancel button", lambda d: d.find_element(By.ID, "cancel-run"))
    driver.execute_script("sessionStorage.setItem('taskq-token', arguments[0])", TOKEN)
    button.click()
    wait_for(
        driver,
        "the run Cancelled",
        lambda d: d.find_element(By.CSS_SELECTOR, "#run-state .state").text == "Cancelled",
    )
    assert later.state.name == "Cancelled"
