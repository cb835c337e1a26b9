"""A concurrency-limited task for the slot fault test (its own module and queue)."""

from __future__ import annotations

import taskq

app = taskq.App()


def started_key() -> str:
    return f"{app.settings.prefix}:conc-started"


def release_key(name: str) -> str:
    return f"{app.settings.prefix}:conc-release:{name}"


@app.task(concurrency_limit=2, concurrency_key=lambda name, key: key, queue="conc")
def held(name: str, key: str) -> str:
    """Announce, then wait until released (the list stays, so a rerun goes straight on)."""
    app.broker.execute("RPUSH", started_key(), name)
    got = app.broker.execute("BLMOVE", release_key(name), release_key(name), "LEFT", "LEFT", 20)
    return "released" if got is not None else "expired"


# max_deliveries above the storm's five kills: a run caught running by every kill (the
# restarted process takes the reclaimed runs first) is delivered six times, which is no
# poison; the default 5 would dead-letter it.
@app.task(concurrency_limit=2, concurrency_key=lambda i, key: key, queue="conc", max_deliveries=10)
def brief(i: int, key: str) -> int:
    """Announce, then work a little (the storm kills some of these mid-run)."""
    app.broker.execute("RPUSH", started_key(), f"brief-{i}")
    app.broker.execute("BLPOP", f"{app.settings.prefix}:never", 0.2)  # 0.2 s of "work"
    return i
