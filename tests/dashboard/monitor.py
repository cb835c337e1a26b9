"""Recording what Redis is asked (MONITOR) while a test makes requests, to check
structural bounds: no write from a GET, every stream range read with a COUNT."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis


@dataclass
class Recorded:
    commands: list[tuple[str, list[str], str]] = field(default_factory=list)  # name, args, client

    def named(self, *names: str) -> list[tuple[str, list[str], str]]:
        wanted = {n.upper() for n in names}
        return [c for c in self.commands if c[0] in wanted]


@contextmanager
def monitored(url: str) -> Iterator[Recorded]:
    """Every command Redis runs inside the block (from any client), recorded in order."""
    client = redis.Redis.from_url(url)
    marker = f"monitor-end-{uuid.uuid4().hex}"
    got = Recorded()
    ready = threading.Event()

    def listen() -> None:
        with client.monitor() as m:
            ready.set()
            for item in m.listen():
                words = item["command"].split(" ")
                name = words[0].strip('"').upper()
                args = [w.strip('"') for w in words[1:]]
                if name == "ECHO" and args and args[0] == marker:
                    return
                got.commands.append((name, args, str(item.get("client_address", ""))))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10), "MONITOR did not start"  # its OK came: later commands are seen
    try:
        yield got
    finally:
        redis.Redis.from_url(url).echo(marker)
        thread.join(timeout=30)
        client.close()


def write_commands(url: str) -> set[str]:
    """The names of every command Redis flags as a write."""
    client = redis.Redis.from_url(url)
    try:
        out = set()
        for name, info in client.command().items():
            if "write" in info.get("flags", []):
                out.add(str(name).upper())
        return out
    finally:
        client.close()
