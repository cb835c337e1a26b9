"""The Lua scripts, one per state transition, loaded from the ``.lua`` files beside this module.

Each file opens with a header listing every ``KEYS[i]`` and ``ARGV[i]``. Scripts
never build key names (they receive them all in ``KEYS``) and read "now" from
the server clock (``server_ms`` in ``lib_time.lua``). Pieces several scripts need
live in ``lib_*.lua`` files: the named state sets (``lib_states.lua``, equal to
:mod:`taskq.protocol`'s), the fence (``lib_fence.lua``), the clock and the flow
notification (``lib_notify.lua``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Script:
    """A script's name, source and SHA1 (what EVALSHA takes)."""

    name: str
    source: bytes
    sha: str


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


@cache
def load(name: str) -> Script:
    """The script ``<name>.lua`` shipped in this package.

    A line ``--!include lib_x.lua`` is replaced by that file, so scripts can share Lua
    functions and tables (each script still runs as one atomic EVALSHA). A library
    may include another; each file is inserted once, where it is first included, so
    two libraries can both need ``lib_states.lua``. The first line of the script
    (``#!lua flags=...``) stays first: Redis reads the flags only there.
    """
    source = b"\n".join(_expand(f"{name}.lua", set()))
    return Script(name, source, hashlib.sha1(source).hexdigest())


def _expand(file: str, included: set[str]) -> list[bytes]:
    """The lines of ``file`` with its includes inserted (those not in ``included``)."""
    lines = []
    for line in _read(file).split(b"\n"):
        if not line.startswith(b"--!include "):
            lines.append(line)
            continue
        lib = line.split()[1].decode()
        if lib not in included:
            included.add(lib)
            lines.append(b"\n".join(_expand(lib, included)).rstrip(b"\n"))
    return lines


ENQUEUE = "enqueue"
FETCH = "fetch"
RELEASE = "release"
START = "start"
FINISH = "finish"
DEAD = "dead"
RETRY = "retry"
RETRY_NOW = "retry_now"
CANCEL = "cancel"
FLOW_EXPIRE = "flow_expire"
ATTEMPT_AGE = "attempt_age"
PROGRESS = "progress"
SCHED_TICK = "sched_tick"
RATE = "rate"
DEFER = "defer"
CONC = "conc"
CONC_RENEW = "conc_renew"
PROMOTE = "promote"
RENEW = "renew"
SUSPEND = "suspend"
NOTIFY = "notify"
RESET = "reset"
HANDBACK = "handback"
GROUPS = "groups"
PARK = "park"
ACK = "ack"
FLOW_FORGET = "flow_forget"
CACHE_STORE = "cache_store"
FINISH_BATCH = "finish_batch"
RUN_LOG = "run_log"
HEARTBEAT = "heartbeat"
REQUEUE = "requeue"
