"""A ledger outside Redis, and the checker that reads it against the run records.

Task bodies write the ledger; it survives a SIGKILLed worker and a wiped Redis alike, so
it is the independent witness of what really ran.

Writing (inside a task body, in a worker process)::

    token = ledger.start(key)      # "start <key> <pid> <token> <unix-ms>"
    ...                            # the work
    ledger.finish(key, token)      # "finish <key> <pid> <token> <unix-ms>"

The directory comes from the environment variable :data:`LEDGER_ENV`; every process
appends to ``<dir>/<pid>.log``, one line per event, with a single ``os.write`` on an
``O_APPEND`` descriptor (atomic for lines this short, and nothing is buffered in the
process, so a SIGKILL loses at most the line it did not write). ``token`` is a random
id per execution: it pairs a finish with its start. The unix-ms stamp is the worker's
clock and only informative; timing assertions use the server clock in the run records.

Checking (in the test)::

    report = ledger.check(
        ledger.read(ledger_dir),
        expected_keys,
        runs={key: run_record_dict, ...},          # optional: HGETALL of each run
        histories={key: ["Running", ...], ...},     # optional: event states, in order
        killed_pids={1234, ...},                    # worker pids the test killed
    )
    print(report.summary())
    assert not report.lost and not report.unattributed and not report.regressed

Definitions (per key):

* **lost**: an expected key with no ``finish`` line at all.
* **duplicates**: keys with more than one ``finish`` (the body ran to the end twice).
* **unattributed**: duplicate keys where more than one finish came from a pid that was not
  killed. With at-least-once delivery a second full execution is only excusable when the
  first one's worker died before recording the outcome, so every extra finish must come
  from a killed pid (or a pid listed as stalled/fenced by the test).
* **regressed**: a run whose record is not final although the ledger shows a finish, or
  whose history shows a final state followed by any other transition, or whose record
  disagrees with the first final state in its history.
* **starts without finish**: executions (start tokens) that never wrote a finish, e.g.
  killed attempts; reported with their pids, and those not from a killed pid are listed in
  ``orphan_starts``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Environment variable naming the ledger directory of a worker process.
LEDGER_ENV = "TASKQ_RELIABILITY_LEDGER"

#: Final run states (a run in one of these never changes again).
FINAL_STATES = frozenset({"Completed", "Cached", "Failed", "Cancelled"})


# -- writing (task bodies) ----------------------------------------------------------------


def _write(line: str) -> None:
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        raise RuntimeError(f"{LEDGER_ENV} is not set in this worker process")
    path = os.path.join(directory, f"{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def start(key: str) -> str:
    """Record that an execution of ``key`` begins here; return its token."""
    token = secrets.token_hex(6)
    _write(f"start {key} {os.getpid()} {token} {int(time.time() * 1000)}\n")
    return token


def finish(key: str, token: str) -> None:
    """Record that the execution ``token`` of ``key`` ran to its end."""
    _write(f"finish {key} {os.getpid()} {token} {int(time.time() * 1000)}\n")


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One ledger line."""

    event: str  # "start" or "finish"
    key: str
    pid: int
    token: str
    unix_ms: int


def read(directory: str | os.PathLike[str]) -> list[Line]:
    """Every line of every ``*.log`` file in ``directory`` (per file in write order).

    A torn last line (impossible with single short ``O_APPEND`` writes, but checked)
    raises ``ValueError`` rather than being skipped silently.
    """
    out: list[Line] = []
    for path in sorted(Path(directory).glob("*.log")):
        for n, raw in enumerate(path.read_text().splitlines(), 1):
            parts = raw.split()
            if len(parts) != 5 or parts[0] not in ("start", "finish"):
                raise ValueError(f"{path}:{n}: malformed ledger line {raw!r}")
            out.append(Line(parts[0], parts[1], int(parts[2]), parts[3], int(parts[4])))
    return out


# -- checking -----------------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`check` found. Lists and dicts are keyed by ledger key."""

    expected: int
    finished: int
    lost: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)
    unattributed: list[str] = field(default_factory=list)
    regressed: dict[str, str] = field(default_factory=dict)
    starts_without_finish: dict[str, list[int]] = field(default_factory=dict)
    orphan_starts: dict[str, list[int]] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)
    finishes: Counter[str] = field(default_factory=Counter)

    @property
    def duplicate_executions(self) -> int:
        """Extra finishes beyond one per key."""
        return sum(n - 1 for n in self.duplicates.values())

    def figures(self) -> dict[str, int]:
        """The counts a scenario prints and records."""
        return {
            "expected": self.expected,
            "finished": self.finished,
            "lost": len(self.lost),
            "duplicate_keys": len(self.duplicates),
            "duplicate_executions": self.duplicate_executions,
            "unattributed_duplicates": len(self.unattributed),
            "regressed": len(self.regressed),
            "starts_without_finish": sum(len(v) for v in self.starts_without_finish.values()),
            "orphan_starts": sum(len(v) for v in self.orphan_starts.values()),
        }

    def summary(self) -> str:
        """One line of figures, plus up to five examples of each problem."""
        text = " ".join(f"{k}={v}" for k, v in self.figures().items())
        for name in ("lost", "unattributed"):
            items = getattr(self, name)
            if items:
                text += f"\n  {name}: {items[:5]}"
        for name in ("duplicates", "regressed", "orphan_starts"):
            items = getattr(self, name)
            if items:
                text += f"\n  {name}: {dict(list(items.items())[:5])}"
        return text


def check(
    lines: Iterable[Line],
    expected_keys: Iterable[str],
    *,
    runs: Mapping[str, Mapping[str, str]] | None = None,
    histories: Mapping[str, Sequence[str]] | None = None,
    killed_pids: Iterable[int] = (),
) -> Report:
    """Compare the ledger with what should have run (and with Redis's records of it).

    Args:
        lines: The ledger, from :func:`read`.
        expected_keys: Every key that was submitted and must finish.
        runs: Optional run records (``HGETALL`` of ``taskq:{q}:run:<id>``) by key.
        histories: Optional state names from the events stream by key, oldest first.
        killed_pids: Pids of worker processes the test killed (or stalled and fenced).

    Returns:
        The :class:`Report`.
    """
    expected = list(expected_keys)
    killed = set(killed_pids)
    started: dict[str, dict[str, int]] = defaultdict(dict)  # key -> token -> pid
    finished: dict[str, dict[str, int]] = defaultdict(dict)
    report = Report(expected=len(expected), finished=0)
    for ln in lines:
        book = started if ln.event == "start" else finished
        book[ln.key][ln.token] = ln.pid
        (report.starts if ln.event == "start" else report.finishes)[ln.key] += 1
    for key in expected:
        done = finished.get(key, {})
        if not done:
            report.lost.append(key)
        else:
            report.finished += 1
        if len(done) > 1:
            report.duplicates[key] = len(done)
            if sum(1 for pid in done.values() if pid not in killed) > 1:
                report.unattributed.append(key)
        open_pids = [pid for tok, pid in started.get(key, {}).items() if tok not in done]
        if open_pids:
            report.starts_without_finish[key] = open_pids
            orphans = [pid for pid in open_pids if pid not in killed]
            if orphans:
                report.orphan_starts[key] = orphans
        problem = _regression(key, bool(done), runs, histories)
        if problem:
            report.regressed[key] = problem
    return report


def _regression(
    key: str,
    has_finish: bool,
    runs: Mapping[str, Mapping[str, str]] | None,
    histories: Mapping[str, Sequence[str]] | None,
) -> str | None:
    state = None
    if runs is not None:
        state = runs.get(key, {}).get("s")
        if has_finish and state not in FINAL_STATES:
            return f"ledger shows a finish but the record is {state!r}"
    if histories is not None:
        history = list(histories.get(key, ()))
        first_final = next((i for i, s in enumerate(history) if s in FINAL_STATES), None)
        if first_final is not None:
            after = history[first_final + 1 :]
            if after:
                return f"final {history[first_final]} followed by {after}"
            if state is not None and state != history[first_final]:
                return f"record says {state}, history ended {history[first_final]}"
    return None
