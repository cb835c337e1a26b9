"""The Lua scripts, one per state transition, loaded from the ``.lua`` files beside this module.

Each file opens with a header listing every ``KEYS[i]`` and ``ARGV[i]``. Scripts
never build key names (they receive them all in ``KEYS``) and read "now" from
``redis.call('TIME')``, the server clock.
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

    A line ``--!include lib_x.lua`` is replaced by that file, so two scripts can share
    a Lua function (each script still runs as one atomic EVALSHA).
    """
    lines = []
    for line in _read(f"{name}.lua").split(b"\n"):
        if line.startswith(b"--!include "):
            lines.append(_read(line.split()[1].decode()).rstrip(b"\n"))
        else:
            lines.append(line)
    source = b"\n".join(lines)
    return Script(name, source, hashlib.sha1(source).hexdigest())


ENQUEUE = "enqueue"
FETCH = "fetch"
RELEASE = "release"
START = "start"
FINISH = "finish"
DEAD = "dead"
RETRY = "retry"
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
