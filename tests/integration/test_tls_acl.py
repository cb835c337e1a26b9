"""TLS (rediss://) and Redis ACL users: a producer that may only enqueue, a worker
that may only consume its own queue."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import taskq
from taskq.localredis import LocalRedis
from taskq.testing import RedisServerFactory, run_burst


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH")
    d = tmp_path_factory.mktemp("tls")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=taskq-test-ca",
        cwd=d,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    return d


@pytest.fixture
def tls_server(
    certs: Path, redis_server_factory: RedisServerFactory
) -> Iterator[tuple[LocalRedis, int]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tls_port = s.getsockname()[1]
    server = redis_server_factory(
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(certs / "server.crt"),
            "--tls-key-file",
            str(certs / "server.key"),
            "--tls-ca-cert-file",
            str(certs / "ca.crt"),
            "--tls-auth-clients",
            "no",
        ]
    )
    yield server, tls_port


def test_tls_round_trip(tls_server: tuple[LocalRedis, int], certs: Path, taskq_prefix: str) -> None:
    _, port = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs / 'ca.crt'}"
    app = taskq.App(url, prefix=taskq_prefix)

    @app.task(retries=1, retry_delay_seconds=0.01)
    def shout(word: str) -> str:
        return word.upper()

    futures = shout.map(["tls", "works"])
    run_burst(app)
    assert [f.result(timeout=5) for f in futures] == ["TLS", "WORKS"]
    app.close()


def test_tls_refuses_an_unknown_certificate_authority(
    tls_server: tuple[LocalRedis, int], taskq_prefix: str
) -> None:
    _, port = tls_server
    app = taskq.App(f"rediss://127.0.0.1:{port}/0", prefix=taskq_prefix)
    with pytest.raises(taskq.RedisUnavailableError, match=f"rediss://127.0.0.1:{port}/0"):
        app.broker.producer.enqueue("default", [("r", b"x", "")])


def test_acl_producer_may_only_enqueue_and_worker_only_consume_its_queue(
    redis_server_factory: RedisServerFactory, taskq_prefix: str
) -> None:
    server = redis_server_factory()
    admin = redis.Redis.from_url(server.url)
    p = taskq_prefix
    admin.execute_command(
        "ACL",
        "SETUSER",
        "producer",
        "on",
        ">producer-secret",
        "+@all",
        "-@dangerous",
        "-xreadgroup",
        "-xack",
        "-xautoclaim",
        "-xclaim",
        "-xdel",
        "-xgroup",
        f"~{p}:{{default}}:*",
        f"&{p}:{{default}}:*",
    )
    admin.execute_command(
        "ACL",
        "SETUSER",
        "worker",
        "on",
        ">worker-secret",
        "+@all",
        "-@dangerous",
        f"~{p}:{{default}}:*",
        f"&{p}:{{default}}:*",
    )
    base = server.url.replace("redis://", "")
    producer = taskq.App(f"redis://producer:producer-secret@{base}", prefix=p)
    worker = taskq.App(f"redis://worker:worker-secret@{base}", prefix=p)
    for app in (producer, worker):

        @app.task(name="acl.inc")
        def inc(x: int) -> int:
            return x + 1

    admin_app = taskq.App(server.url, prefix=p)
    admin_app.broker.consumer.ensure_group(
        "default"
    )  # provisioning: done by an admin, not the producer
    futures = producer.get_task("acl.inc").map([1, 2, 3])
    # A producer cannot consume: the fetch script's XREADGROUP is refused by its ACL.
    with pytest.raises(taskq.BrokerError, match="can't run this command"):
        producer.broker.consumer.read(["default"], "sneaky", 10, None)
    run_burst(worker, ["default"])
    assert [f.result(timeout=5) for f in futures] == [2, 3, 4]
    with pytest.raises(taskq.BrokerError, match="NOPERM"):
        worker.broker.consumer.read(
            ["payroll"], "w", 10, None
        )  # nor can a worker touch another queue
    with pytest.raises(taskq.BrokerError, match="NOPERM"):
        producer.get_task("acl.inc").with_options(queue="payroll").submit(1)
    for app in (producer, worker, admin_app):
        app.close()
