"""Screenshots of the dashboard's main views for the README:
``python -m tests.dashboard.screenshots [--out docs]``.

Starts a private redis-server, a real worker pool (``taskq worker
tests.dashboard.apps:app``) and the dashboard, submits a mix of runs in waves (so the
charts have a shape), then captures the queues, runs, a flow's run page with its
children, dead letters and workers with the browser test's headless Chromium.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "shots"
TOKEN = "screenshot-token"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the PNGs go")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    from taskq.localredis import LocalRedis

    server = LocalRedis()
    url = server.start()
    os.environ.update(TASKQ_REDIS_URL=url, TASKQ_PREFIX=PREFIX)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        _scenario_and_shots(url, out, workers)
    finally:
        for w in workers:  # also when something failed: leave no worker pool behind
            w.terminate()
            w.wait(timeout=60)
        server.close()
    return 0


def _scenario_and_shots(url: str, out: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from taskq.dashboard.app import Dashboard
    from taskq.dashboard.auth import Access
    from taskq.dashboard.server import serve_in_thread
    from tests.dashboard import apps
    from tests.dashboard.browser import chromium, console

    producer = apps.producer(url, PREFIX)
    board = serve_in_thread(
        Dashboard(apps.app, (), Access(True, TOKEN), sample_seconds=1.0), port=0
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TASKQ_UNKNOWN_TASK_GRACE": "0"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskq", "worker", "tests.dashboard.apps:app", "-p", "2", "-c", "4"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers.append(worker)
    flows = []
    for wave in range(8):  # waves of work, so depth, throughput and latency have a shape
        apps.add.map(range((wave + 1) * 150), range((wave + 1) * 150))
        apps.flaky.submit(wave)
        apps.render.map(range(80 * (8 - wave)))
        if wave % 3 == 0:
            apps.boom.submit(f"bad input #{wave}")
            flows.append(apps.pipeline.submit(4))
        if wave % 4 == 1:
            producer.get_task(apps.NOT_DEPLOYED).submit(wave)
        time.sleep(2.5)
    time.sleep(1.0)
    apps.boom.submit("negative amount")  # the newest rows show a mix of outcomes
    apps.flaky.submit(99)
    producer.get_task(apps.NOT_DEPLOYED).submit(99)
    time.sleep(1.0)
    apps.hold.submit()
    apps.add.with_options(delay=3600).submit(1, 1)
    for f in flows:
        f.result(timeout=120)
    time.sleep(3)  # a few more depth samples at rest
    shots = [
        ("dashboard-queues.png", "/", (By.CSS_SELECTOR, "#queues-table tbody tr[data-queue]")),
        ("dashboard-runs.png", "/runs", (By.CSS_SELECTOR, "#runs-body tr[data-run]")),
        (
            "dashboard-run-flow.png",
            f"/runs/{flows[0].run_id}?queue=default",
            (By.CSS_SELECTOR, "#children li[data-run]"),
        ),
        ("dashboard-dead.png", "/dead", (By.CSS_SELECTOR, "#dead-body tr[data-entry]")),
        ("dashboard-workers.png", "/workers", (By.CSS_SELECTOR, "#workers-table tr[data-worker]")),
    ]
    with chromium(1360, 900) as driver:
        d = driver  # type: ignore[assignment]
        for name, path, ready in shots:
            d.get(board.url + path)  # type: ignore[attr-defined]
            try:
                WebDriverWait(d, 30).until(ec.presence_of_element_located(ready))
            except Exception:
                print(f"{path}: {ready} never showed\n{console(d)}", file=sys.stderr)
                raise
            if name == "dashboard-run-flow.png":
                first = d.find_element(By.CSS_SELECTOR, "#children li .toggle")  # type: ignore[attr-defined]
                first.click()
            time.sleep(1.0)  # let the charts draw their next sample
            d.save_screenshot(str(out / name))  # type: ignore[attr-defined]
            print(f"wrote {out / name}")
    apps.app.broker.execute("RPUSH", apps.release_key(PREFIX), "go")
    board.stop()


if __name__ == "__main__":
    sys.exit(main())
