"""A small server-sent-events client for the tests (http.client; reads block on the
socket, with a timeout, instead of sleeping)."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Message:
    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class SSEClient:
    """One open ``GET /api/events`` (with ``Last-Event-ID`` when given)."""

    def __init__(self, base_url: str, last_event_id: str | None = None, timeout: float = 20):
        self.timeout = timeout
        netloc = urlsplit(base_url).netloc
        self.conn = http.client.HTTPConnection(netloc, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", "/api/events", headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.headers["content-type"].startswith("text/event-stream")

    def next(self) -> Message:
        """The next message with data (comments, ``retry:`` lines and keep-alives skipped)."""
        event, eid, data = "message", None, []
        deadline = time.monotonic() + self.timeout  # keep-alives would read forever
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no message within {self.timeout} s")
            line = self.response.readline().decode()
            if not line:
                raise EOFError("the events stream ended")
            line = line.rstrip("\n")
            if not line:
                if data:
                    return Message(event, eid, "\n".join(data))
                event, eid = "message", None
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "id":
                eid = value
            elif field == "data":
                data.append(value)

    def runs_until(self, predicate: Any) -> list[dict[str, Any]]:
        """Events of ``runs`` messages, read until one satisfies ``predicate``."""
        seen: list[dict[str, Any]] = []
        while True:
            msg = self.next()
            if msg.event != "runs":
                continue
            for ev in msg.json():
                seen.append(ev)
                if predicate(ev):
                    return seen

    def close(self) -> None:
        self.conn.close()
