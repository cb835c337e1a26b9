"""Private ``redis-server`` processes for tests and the demo.

This module starts and stops a throwaway ``redis-server`` bound to 127.0.0.1 on a
free port, in its own temporary directory. It is used by the pytest plugin
(:mod:`taskq.testing`) and by ``make demo`` when no Redis is reachable.

Example:
    >>> with LocalRedis() as server:  # doctest: +SKIP
    ...     client = redis.Redis.from_url(server.url)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from taskq.broker.connection import redact_url
from taskq.config import DEFAULT_REDIS_URL

__all__ = [
    "DEFAULT_REDIS_URL",
    "LocalRedis",
    "PortInUseError",
    "ensure_redis",
    "free_port",
    "ping",
    "quick_client",
    "raw_command",
    "redact_url",
]

logger = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5
_BIND_ERRORS = ("Address already in use", "Failed listening on port")


class PortInUseError(RuntimeError):
    """A ``redis-server`` given a fixed port could not bind it (or its cluster bus port)."""


def quick_client(url: str, timeout: float) -> redis.Redis:
    """Build a client with short timeouts and no retries, for checking on a local server.

    Args:
        url: A ``redis://`` URL.
        timeout: Connect and read timeout in seconds.

    Returns:
        A :class:`redis.Redis` that fails fast instead of retrying.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def raw_command(client: redis.Redis, *args: object) -> Any:
    """Send one command and return redis-py's reply as is (``CLUSTER SLOTS`` stays a list).

    Args:
        client: A client from :func:`quick_client`.
        *args: The command and its arguments.

    Returns:
        The reply, untyped: callers know the command's reply shape.
    """
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def ping(url: str, timeout: float = 0.5) -> bool:
    """Tell whether a Redis server answers ``PING`` at ``url``.

    Args:
        url: A Redis URL.
        timeout: Connect and read timeout in seconds.

    Returns:
        True if the server answered, False on any error. Never raises.
    """
    try:
        client = quick_client(url, timeout)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float, poll: float = 0.02) -> None:
    """Call ``check`` until it returns True (a refused or timed-out connection counts as
    not yet), polling a local server's state for at most ``timeout`` seconds.

    Raises:
        RuntimeError: ``check`` was not True within ``timeout``; the message names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Returns:
        A port number; another process may take it before the caller binds it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send ``sig`` to ``proc`` and reap it, escalating to SIGKILL after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Finalizer: kill a forgotten ``redis-server`` at garbage collection or exit."""
    _stop_process(proc, signal.SIGKILL, _STOP_TIMEOUT)


class LocalRedis:
    """A private ``redis-server`` on 127.0.0.1, in its own temporary directory.

    The server runs in the foreground as a child process with
    ``--save ""`` (no RDB snapshots) and logs to ``redis.log`` in :attr:`dir`.
    :meth:`stop` and :meth:`kill` keep the directory so that :meth:`restart`
    can reuse it (AOF data survives when ``appendonly=True``); :meth:`close`
    (or leaving the ``with`` block) stops the server and removes the directory.

    Args:
        appendonly: Enable the append-only file (``--appendfsync everysec``).
        port: Fixed port to listen on. ``None`` picks a free port, retrying
            another one if binding fails.
        extra_args: More ``redis-server`` arguments, appended last so they
            override the defaults (e.g. ``["--appendfsync", "always"]``).
        config_file: A config file passed as the first argument (the only place
            ``redis-server`` reads one); ``--sentinel`` needs one it can rewrite.

    Example:
        >>> server = LocalRedis(appendonly=True)  # doctest: +SKIP
        >>> url = server.start()  # doctest: +SKIP
        >>> server.kill(); server.restart()  # doctest: +SKIP
        >>> server.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        config_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._appendonly = appendonly
        self._config_file = None if config_file is None else os.fspath(config_file)
        self._fixed_port = port
        self._extra_args = tuple(extra_args)
        self._port: int | None = port
        self._dir: Path | None = None
        self._dir_finalizer: weakref.finalize[[str, bool], LocalRedis] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_finalizer: weakref.finalize[[subprocess.Popen[bytes]], LocalRedis] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalRedis {_HOST}:{self._port} {state}>"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the server.

        Raises:
            RuntimeError: If the server was never started.
        """
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def port(self) -> int:
        """TCP port the server listens on.

        Raises:
            RuntimeError: If no port is known yet (never started, no fixed port).
        """
        if self._port is None:
            raise RuntimeError("LocalRedis has not been started yet")
        return self._port

    @property
    def dir(self) -> Path:
        """Working directory of the server (AOF files and ``redis.log``).

        Raises:
            RuntimeError: If the server was never started or was closed.
        """
        if self._dir is None:
            raise RuntimeError("LocalRedis has no directory (not started, or closed)")
        return self._dir

    @property
    def log_path(self) -> Path:
        """Path of the server's log file."""
        return self.dir / "redis.log"

    @property
    def running(self) -> bool:
        """True while the ``redis-server`` process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> str:
        """Start the server and wait until it answers ``PING``.

        Does nothing but return the URL if the server is already running.

        Returns:
            The server URL, ``redis://127.0.0.1:PORT/0``.

        Raises:
            PortInUseError: If the port (fixed, kept from an earlier start, or each
                free one tried) is taken; a subclass of RuntimeError.
            RuntimeError: If ``redis-server`` is not on PATH, cannot bind its
                port, exits, or does not answer within 10 seconds.
        """
        if self.running:
            return self.url
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH; install Redis (e.g. apt-get install redis-server) "
                "or point taskq at an existing server"
            )
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="taskq-redis-"))
            self._dir_finalizer = weakref.finalize(self, shutil.rmtree, str(self._dir), True)

        attempts = 1 if self._port is not None else _PORT_ATTEMPTS
        error, port_taken = "", False
        for _ in range(attempts):
            port = self._port if self._port is not None else free_port()
            error, port_taken = self._spawn(binary, port)
            if not error:
                self._port = port
                logger.debug("started redis-server pid %s on %s", self.pid, self.url)
                return self.url
            if not port_taken:
                break
        if port_taken:
            raise PortInUseError(error)
        raise RuntimeError(error)

    def _spawn(self, binary: str, port: int) -> tuple[str, bool]:
        """Run ``redis-server`` on ``port`` and wait until our own process answers.

        Returns:
            ``("", False)`` on success, else ``(error message, port_taken)``.
        """
        workdir = self.dir
        args = [
            binary,
            *([self._config_file] if self._config_file is not None else []),
            "--bind",
            _HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "yes" if self._appendonly else "no",
            "--appendfsync",
            "everysec",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            *self._extra_args,
        ]
        with open(self.log_path, "ab") as log:
            log_start = log.tell()
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        self._proc = proc
        self._proc_finalizer = weakref.finalize(self, _reap, proc)
        url = f"redis://{_HOST}:{port}/0"
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if proc.poll() is not None:
                self._forget_process()
                tail = self._log_since(log_start)
                if any(marker in tail for marker in _BIND_ERRORS):
                    return f"redis-server could not bind {_HOST}:{port} (port in use)", True
                return (
                    f"redis-server on {_HOST}:{port} exited with code {proc.returncode}; "
                    f"log {self.log_path}:\n{tail}"
                ), False
            if self._answers_as(url, proc.pid):
                return "", False
            if time.monotonic() > deadline:
                _stop_process(proc, signal.SIGKILL, _STOP_TIMEOUT)
                self._forget_process()
                return (
                    f"redis-server on {_HOST}:{port} did not answer PING within "
                    f"{_START_TIMEOUT:.0f} s; log {self.log_path}:\n{self._log_since(log_start)}"
                ), False
            time.sleep(0.02)

    @staticmethod
    def _answers_as(url: str, pid: int) -> bool:
        """True if the server at ``url`` answers, is process ``pid`` and has loaded its data.

        Checking the pid guards against another server that already holds the port;
        checking ``loading`` makes a restart with AOF return only once Redis serves.
        """
        try:
            client = quick_client(url, 0.5)
        except Exception:
            return False
        try:
            info = client.info()
            return int(info.get("process_id", -1)) == pid and int(info.get("loading", 0)) == 0
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def _log_since(self, offset: int) -> str:
        """Return the log written since ``offset`` (last 2000 characters)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")[-2000:]
        except OSError:
            return ""

    def _forget_process(self) -> None:
        if self._proc_finalizer is not None:
            self._proc_finalizer.detach()
        self._proc_finalizer = None
        self._proc = None

    def stop(self) -> None:
        """Stop the server with SIGTERM and wait for it (SIGKILL after 10 s).

        The directory is kept, so :meth:`restart` can reuse it.
        """
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, _STOP_TIMEOUT)
            self._forget_process()

    def kill(self) -> None:
        """Kill the server with SIGKILL and wait for it, simulating a crash.

        The directory is kept, so :meth:`restart` can reuse it.
        """
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGKILL, _STOP_TIMEOUT)
            self._forget_process()

    def restart(self) -> str:
        """Stop the server if running, then start it on the same port and directory.

        Returns:
            The server URL (unchanged).

        Raises:
            RuntimeError: As for :meth:`start`, e.g. if the port was taken meanwhile.
        """
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory. Safe to call twice."""
        self.stop()
        if self._dir_finalizer is not None:
            self._dir_finalizer()
        self._dir_finalizer = None
        self._dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def ensure_redis(url: str | None) -> tuple[str, LocalRedis | None]:
    """Find a Redis to talk to, starting a private one if needed (for the demo).

    Args:
        url: Preferred URL. If None, ``TASKQ_REDIS_URL`` is used, else
            ``redis://localhost:6379/0``.

    Returns:
        ``(url, None)`` if a server answers at the URL, else
        ``(local_url, server)`` for a freshly started :class:`LocalRedis` that
        the caller must :meth:`~LocalRedis.close`.

    Raises:
        RuntimeError: If nothing answers at the URL and no ``redis-server``
            could be started. The message shows the URL with its password redacted.
    """
    target = url or os.environ.get("TASKQ_REDIS_URL") or DEFAULT_REDIS_URL
    if ping(target):
        return target, None
    shown = redact_url(target)
    if shutil.which("redis-server") is None:
        raise RuntimeError(
            f"no Redis answers at {shown} and redis-server is not on PATH; "
            "start Redis or set TASKQ_REDIS_URL"
        )
    server = LocalRedis()
    try:
        local_url = server.start()
    except RuntimeError as exc:
        server.close()
        raise RuntimeError(
            f"no Redis answers at {shown} and starting a local redis-server failed: {exc}"
        ) from exc
    logger.info("no Redis at %s; started a private redis-server at %s", shown, local_url)
    return local_url, server
