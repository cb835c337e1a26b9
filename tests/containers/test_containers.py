"""Workers in real containers: deploy/Dockerfile built offline, docker-compose.yml scaled,
stopped and killed, checked against a ledger (tests/containers; see conftest.py for the
engine and the images, compose.host.yml for what the overlay changes)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from taskq.cpus import available_cpus
from taskq.testing import RedisServerFactory
from tests.containers import derived_app, ledger_app
from tests.containers.conftest import StackFactory
from tests.containers.engine import Engine
from tests.containers.stack import Stack, exit_codes
from tests.reliability import ledger

pytestmark = [pytest.mark.containers, pytest.mark.slow]

FINAL = {"Completed", "Failed", "Cancelled"}
#: docker-compose.yml's stop_grace_period for the worker.
STOP_GRACE = 40.0


def _finishes(stack: Stack) -> dict[str, Counter[str]]:
    """Per container: how many times each key ran to its end."""
    return {
        cid: Counter(ln.key for ln in lines if ln.event == "finish")
        for cid, lines in stack.ledger().items()
    }


def _check_records_name_the_worker(stack: Stack, by_key: dict[str, str]) -> dict[str, str]:
    """Every run is Completed and its record's worker (``host-<pid>-<hex>``) carries the
    pid whose ledger line shows it finishing; returns the container of each run."""
    where: dict[str, str] = {}
    pid_of: dict[tuple[str, str], int] = {}
    for cid, lines in stack.ledger().items():
        for ln in lines:
            if ln.event == "finish":
                where[ln.key] = cid
                pid_of[(cid, ln.key)] = ln.pid
    records = stack.records(by_key.values())
    for key, rid in by_key.items():
        rec = records[rid]
        assert rec.get("s") == "Completed", (key, rec)
        assert key in where, f"{key} has no finish in the ledger"
        m = re.fullmatch(r".+-(\d+)-[0-9a-f]+", rec["w"])
        assert m and int(m.group(1)) == pid_of[(where[key], key)], (key, rec["w"])
    return where


def test_the_image_is_small_unprivileged_and_runs_taskq_worker(
    engine: Engine, base: str, worker_image: str
) -> None:
    """Built with --network none from the wheelhouse (the fixture), so no index was used."""
    (image,) = engine.inspect(worker_image)
    (base_info,) = engine.inspect(base)
    config = image["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["taskq", "worker"]
    assert config["Cmd"] == ["workers.example:app"]
    assert config["Healthcheck"]["Test"] == ["CMD", "taskq", "health"]
    size = int(str(image["Size"]))
    added = size - int(str(base_info["Size"]))
    print(f"worker image: {size / 1e6:.0f} MB, {added / 1e6:.1f} MB over its base")
    # taskq, its dependencies and their venv: 33 MB before the operator CLI's rich (with
    # the pygments and markdown-it-py it requires: 14 MB), 47 MB with it
    assert added < 50e6
    # The build stage's sources and wheels are not in the final image.
    probe = engine.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        worker_image,
        "-c",
        "id -u; test ! -e /src && test ! -e /wheelhouse && echo clean; taskq health",
        check=False,
    )
    lines = probe.stdout.split()
    assert lines[:2] == ["10001", "clean"], probe.stdout + probe.stderr
    assert probe.returncode == 1  # no worker runs: its heartbeat file is missing
    assert "unhealthy" in probe.stderr


def test_compose_scales_three_then_five_then_one_losing_nothing(stack: StackFactory) -> None:
    s = stack()
    began = time.monotonic()
    s.up(3)
    print(f"compose up: Redis and 3 workers healthy in {time.monotonic() - began:.1f} s")
    workers = s.workers()
    assert len(workers) == 3
    # compose's --wait waited for this: the image's probe passes for the app they run.
    health = {str(c["State"]["Health"]["Status"]) for c in s.engine.inspect(*workers)}  # type: ignore[index]
    assert health == {"healthy"}
    keys = [f"a{i}" for i in range(300)]
    futures = ledger_app.record.map(keys, hold=0.02)
    by_key = {k: f.run_id for k, f in zip(keys, futures, strict=True)}
    s.wait_states(FINAL, 120, runs=by_key.values())
    where = _check_records_name_the_worker(s, by_key)
    per_container = Counter(where.values())
    print(f"3 containers ran {dict(per_container)}")
    assert set(per_container) == set(workers)  # all three took part

    # Now runs keep coming while compose scales to 5 and back to 1.
    stop = threading.Event()
    submitted: list[tuple[str, str]] = []
    marks: dict[str, int] = {}

    def submit() -> None:
        n = 0
        while not stop.is_set():
            batch = [f"b{n + i}" for i in range(20)]
            n += 20
            for k, f in zip(batch, ledger_app.record.map(batch, hold=0.02), strict=True):
                submitted.append((k, f.run_id))
            stop.wait(0.05)  # pacing the producer, not waiting for work

    producer = threading.Thread(target=submit, daemon=True)
    producer.start()
    try:
        marks["before"] = len(submitted)
        s.up(5)
        assert len(s.workers()) == 5
        marks["at 5"] = len(submitted)
        s.up(1)
        assert len(s.workers()) == 1
        marks["at 1"] = len(submitted)
    finally:
        stop.set()
        producer.join(30)
    print(f"runs submitted by then: {marks}, in all {len(submitted)}")
    assert marks["before"] < marks["at 5"] < marks["at 1"]  # runs flowed all along
    flowing = dict(submitted)
    s.wait_states(FINAL, 180, runs=flowing.values())
    where = _check_records_name_the_worker(s, flowing)
    print(f"while scaling: {dict(Counter(where.values()))}")
    assert len(set(where.values())) >= 2  # the scaled-up containers took runs too
    report = ledger.check(
        [ln for lines in s.ledger().values() for ln in lines], [*by_key, *flowing]
    )
    print(report.summary())
    # Containers removed by the scale-down were stopped (SIGTERM): they finish what runs
    # and hand the rest back, so not even a duplicate is excused.
    assert not report.lost
    assert not report.duplicates
    assert not report.starts_without_finish


def test_compose_stop_finishes_running_tasks_and_hands_back_the_rest(stack: StackFactory) -> None:
    s = stack()
    s.up(2)
    workers = s.workers()
    keys = [f"s{i}" for i in range(80)]
    futures = ledger_app.record.map(keys, hold=3.0)
    by_key = {k: f.run_id for k, f in zip(keys, futures, strict=True)}
    s.wait_states({"Running"}, 60, count=16)
    took = s.stop_workers()
    codes = exit_codes(s.engine, workers)
    lines = [ln for group in s.ledger().values() for ln in group]
    report = ledger.check(lines, keys)
    print(f"compose stop took {took:.1f} s; exit codes {set(codes.values())}; {report.summary()}")
    assert codes == dict.fromkeys(workers, 0)
    assert took < STOP_GRACE  # nobody was SIGKILLed at the end of stop_grace_period
    assert not report.starts_without_finish  # every task that had started finished
    assert 16 <= report.finished < len(keys)  # and the rest was left to others
    records = s.records(by_key.values())
    waiting = [k for k, rid in by_key.items() if records[rid].get("s") not in FINAL]
    assert len(waiting) == len(keys) - report.finished

    s.up(1)  # one container again: it runs what was handed back
    s.wait_states(FINAL, 120, runs=by_key.values())
    report = ledger.check([ln for g in s.ledger().values() for ln in g], keys)
    print(report.summary())
    assert not report.lost and not report.duplicates
    _check_records_name_the_worker(s, by_key)


def test_docker_kill_loses_nothing(stack: StackFactory) -> None:
    s = stack(lease=2.0)
    s.up(2)
    victim, survivor = s.workers()
    keys = [f"k{i}" for i in range(60)]
    futures = ledger_app.record.map(keys, hold=1.0)
    by_key = {k: f.run_id for k, f in zip(keys, futures, strict=True)}
    s.wait_states({"Running"}, 60, count=20)
    s.engine.docker("kill", victim)  # SIGKILL to the container's init and everything in it
    assert s.engine.docker("wait", victim).stdout.strip() == "137"
    s.wait_states(FINAL, 120, runs=by_key.values())
    book = s.ledger()
    killed = book.get(victim[:64], [])
    cut = {ln.key for ln in killed if ln.event == "start"} - {
        ln.key for ln in killed if ln.event == "finish"
    }
    report = ledger.check([ln for g in book.values() for ln in g], keys)
    print(f"cut short by the kill: {len(cut)}; {report.summary()}")
    assert cut  # the kill did interrupt running tasks
    assert not report.lost
    # A run runs twice only if the killed container had started it and not finished it.
    assert set(report.duplicates) <= cut
    records = s.records(by_key.values())
    assert all(records[rid].get("s") == "Completed" for rid in by_key.values())
    assert survivor in s.workers()


#: The README's derived image ("Workers in containers"), with the test's app.
DERIVED = """\
FROM {image}
USER root
COPY requirements.txt /tmp/
RUN pip install -r /tmp/requirements.txt
USER 10001:10001
COPY derived_app.py /app/derived_app.py
CMD ["derived_app:app"]
"""


def _pool_size(logs: str) -> int:
    return len(set(re.findall(r"started worker process (\d+)", logs)))


@pytest.mark.parametrize("cpus", ["1", None], ids=["cpus-1", "unlimited"])
def test_a_derived_image_runs_its_app_with_one_process_per_cpu(
    engine: Engine,
    worker_image: str,
    redis_server_factory: RedisServerFactory,
    tmp_path: Path,
    cpus: str | None,
) -> None:
    """The README's derived image: FROM the worker image, the app copied into /app."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "derived_app.py").write_text(Path(derived_app.__file__).read_text())
    # Already satisfied from the venv: the build runs with no network, as the image's was.
    (context / "requirements.txt").write_text("msgpack\n")
    (context / "Dockerfile").write_text(DERIVED.format(image=worker_image))
    engine.docker("build", "--network", "none", "--quiet", "-t", "taskq-derived:test", str(context))
    server = redis_server_factory()
    derived_app.app.configure(redis_url=server.url)
    future = derived_app.cpus.submit()
    limit = ["--cpus", cpus] if cpus else []
    proc = engine.docker(
        "run",
        "--rm",
        "--network",
        "host",
        *limit,
        "-e",
        f"TASKQ_REDIS_URL={server.url}",
        "taskq-derived:test",
        "derived_app:app",
        "--burst",
        "--burst-wait",
        "0",
        timeout=120,
    )
    logs = proc.stdout + proc.stderr
    expected = 1 if cpus == "1" else available_cpus()
    assert _pool_size(logs) == expected, logs
    assert future.result(timeout=10) == expected
