"""``finish`` calls grouped for one round trip: the plain ones of one task stream go in
one ``finish_batch`` script call, the others (a cache entry to store, a flow to notify,
a delivery left pending) stay one ``finish`` call each.

Each run is still fenced by its own attempt inside the script, so a batch records
exactly what the calls one by one would; it only saves the per-call cost (the script's
dispatch in Redis, packing and parsing one command per run in the worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskq import scripts
from taskq.keys import GROUP

#: A script call as ``Connection.call_mixed`` takes it.
ScriptCall = tuple[str, Sequence[str], Sequence[Any]]


def _plain(keys: Sequence[str], args: Sequence[Any]) -> bool:
    """A finish call with no cache keys, no flow, acked at once (see finish_call)."""
    return len(keys) == 4 and len(args) == 12 and args[10] == "" and args[11] == ""


def group(
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
) -> tuple[list[ScriptCall], list[list[int]]]:
    """Script calls for the ``(keys, args)`` of finish calls, and for each script call
    the indices of the finish calls it carries."""
    out: list[ScriptCall] = []
    carried: list[list[int]] = []
    by_stream: dict[tuple[str, str], list[int]] = {}
    for i, (keys, args) in enumerate(calls):
        if _plain(keys, args):
            by_stream.setdefault((keys[0], keys[1]), []).append(i)
        else:
            out.append((scripts.FINISH, keys, args))
            carried.append([i])
    for (stream, events), members in by_stream.items():
        if len(members) == 1:
            keys, args = calls[members[0]]
            out.append((scripts.FINISH, keys, args))
        else:
            batch_keys = [stream, events]
            batch_args: list[Any] = [GROUP, calls[members[0]][1][1]]  # events cap
            for i in members:
                keys, args = calls[i]
                batch_keys += keys[2:4]  # the run record, the result list
                batch_args += args[2:10]  # entry id .. error message
            out.append((scripts.FINISH_BATCH, batch_keys, batch_args))
        carried.append(members)
    return out, carried


def spread(replies: Sequence[Any], carried: Sequence[list[int]], n: int) -> list[Any]:
    """Per finish call, its script's reply: a batch's list is spread over its members,
    an error raised by a batch goes to each of them."""
    out: list[Any] = [None] * n
    for reply, members in zip(replies, carried, strict=True):
        if isinstance(reply, Exception) or len(members) == 1:  # an error, or one finish
            for i in members:
                out[i] = reply
        else:
            for i, r in zip(members, reply, strict=True):
                out[i] = r
    return out
