"""Schedules: ticks of cron expressions and intervals, and which tick is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskq.errors import ConfigurationError
from taskq.schedules import TOLERANCE, build_schedule, tick_run_id


def ms(*args: int, tz: object = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[arg-type, misc]


def test_cron_ticks_in_a_time_zone() -> None:
    s = build_schedule("0 9 * * *", "Europe/Paris")
    assert s is not None
    # 09:00 in Paris is 08:00 UTC in winter.
    assert s.next_after(ms(2026, 12, 4, 7, 59)) == ms(2026, 12, 4, 8, 0)
    assert s.next_after(ms(2026, 12, 4, 8, 0)) == ms(2026, 12, 5, 8, 0)  # strictly after
    assert s.latest_at_or_before(ms(2026, 12, 4, 8, 0)) == ms(2026, 12, 4, 8, 0)
    assert s.latest_at_or_before(ms(2026, 12, 4, 7, 59)) == ms(2026, 12, 3, 8, 0)
    assert s.describe() == "cron '0 9 * * *' (Europe/Paris)"


def test_interval_ticks_are_multiples_since_the_epoch() -> None:
    s = build_schedule(timedelta(seconds=90))
    assert s is not None and s.every == 90
    assert s.next_after(0) == 90_000 and s.next_after(90_000) == 180_000
    assert s.latest_at_or_before(179_999) == 90_000


def test_ticks_are_dealt_with_in_order_and_missed_ones_as_one() -> None:
    once = build_schedule(60.0)
    skip = build_schedule(60.0, missed="skip")
    assert once is not None and skip is not None
    now = 10 * 60_000 + 5_000  # 5 s past the tick at 600,000
    watching = now - 30 * 60_000  # since long before
    # Watched: the first tick after the last fires, however late; then the next, in order.
    assert once.next_due(8 * 60_000, now, watching) == (9 * 60_000, True)
    assert skip.next_due(9 * 60_000, now, watching) == (600_000, True)
    assert once.next_due(600_000, now, watching) is None  # all fired
    # Came due before the worker started watching, and nobody fired them: missed, dealt
    # with as one (the latest missed), fired once or only recorded.
    later = now + 60_000
    assert once.next_due(0, now, later) == (600_000, True)
    assert skip.next_due(0, now, later) == (600_000, False)
    # Within the tolerance before the start (a quick restart): on time.
    started = 600_000 + int(TOLERANCE * 1000) - 1
    assert skip.next_due(9 * 60_000, now, started) == (600_000, True)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("* * *",), "not a cron expression"),
        (("0 9 * * *", "Mars/Olympus"), "not a known time zone"),
        ((5.0, "UTC"), "applies to a cron schedule"),
        ((0,), "at least 1 ms"),
        (("0 9 * * *", None, "sometimes"), "missed_ticks must be one of"),
        ((None, "UTC"), "need a schedule"),
    ],
)
def test_bad_schedules_are_refused(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        build_schedule(*args)


def test_a_ticks_run_id_is_the_same_everywhere() -> None:
    assert tick_run_id("app.report", 1_800_000) == "app.report@1800000"
