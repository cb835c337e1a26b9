"""The example worker app: what the demo runs and what docker-compose deploys.

Start workers for it with ``taskq worker workers.example:app``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

import taskq

app = taskq.App()  # TASKQ_REDIS_URL / TASKQ_PREFIX from the environment


@app.task
def add(x: int, y: int) -> int:
    """The smallest task there is."""
    return x + y


@app.task
def checksum(text: str) -> str:
    """A little CPU work: the SHA-256 of ``text``, repeated 200 times."""
    digest = text.encode()
    for _ in range(200):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


@app.task
async def fetch_profile(user_id: int) -> dict[str, object]:
    """Simulated I/O on the worker's event loop."""
    await asyncio.sleep(0.005)
    return {"id": user_id, "name": f"user-{user_id}", "active": user_id % 3 != 0}


@app.task
def slugify(title: str) -> str:
    """Fails on purpose for empty titles, so the demo shows the Failed path."""
    if not title.strip():
        raise ValueError("cannot slugify an empty title")
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
