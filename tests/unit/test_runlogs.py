"""Run logs without Redis: options and settings, the line format, cutting, rendering,
what travels in a message, and print outside a run."""

from __future__ import annotations

import logging
import sys

import msgpack
import pytest

import taskq
from taskq.broker.logs import LogLine, format_line, parse_line
from taskq.config import Settings
from taskq.flows.run import FlowRun
from taskq.protocol import Meta, MetaKey
from taskq.runlogs import TRUNCATED, clip, print_as_log, render


def _app() -> taskq.App:
    return taskq.App("redis://127.0.0.1:1/0")  # never connected to


def test_log_prints_is_a_validated_task_and_flow_option() -> None:
    app = _app()

    @app.task(log_prints=True)
    def t() -> None: ...

    @app.flow(log_prints=False)
    def f() -> None: ...

    assert t.options.log_prints is True and f.options.log_prints is False
    assert t.with_options(log_prints=None).options.log_prints is None
    with pytest.raises(taskq.ConfigurationError, match="log_prints must be True, False or None"):
        app.task(log_prints="yes")(lambda: None)  # type: ignore[call-overload]


def test_run_log_settings_are_checked_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (Settings().run_log_max_lines, Settings().run_log_line_bytes) == (1000, 8192)
    with pytest.raises(taskq.ConfigurationError, match="run_log_max_lines"):
        Settings(run_log_max_lines=-1)
    with pytest.raises(taskq.ConfigurationError, match="run_log_line_bytes"):
        Settings(run_log_line_bytes=10)
    monkeypatch.setenv("TASKQ_RUN_LOG_MAX_LINES", "50")
    monkeypatch.setenv("TASKQ_RUN_LOG_LINE_BYTES", "2048")
    s = Settings.from_env()
    assert (s.run_log_max_lines, s.run_log_line_bytes) == (50, 2048)


def test_a_line_round_trips_and_a_malformed_one_is_kept_whole() -> None:
    raw = format_line(1_700_000_000_123, logging.WARNING, 3, "two words\nand a line")
    assert raw == "1700000000123 30 3 two words\nand a line"
    line = parse_line(raw.encode())
    assert line == LogLine(1_700_000_000_123, 30, 3, "two words\nand a line")
    assert line.level_name == "WARNING" and line.time.year == 2023
    assert line.to_dict()["level_name"] == "WARNING"
    assert parse_line(b"garbage") == LogLine(0, 0, 0, "garbage")
    assert parse_line(format_line(1, 25, 1, "")).level_name == "Level 25"


def test_clip_keeps_short_messages_and_cuts_long_ones_on_a_character() -> None:
    assert clip("short", 64) == "short"
    exact = "x" * 64
    assert clip(exact, 64) == exact
    cut = clip("€" * 100, 64)  # 3 bytes a character
    assert cut.endswith(TRUNCATED) and len(cut.encode()) <= 64
    assert cut.removesuffix(TRUNCATED) == "€" * ((64 - len(TRUNCATED)) // 3)


def test_render_formats_like_logging_and_appends_the_traceback() -> None:
    assert render("a %s b %d", ("x", 2)) == "a x b 2"
    assert render("%(k)s!", ({"k": "v"},)) == "v!"
    assert render("100%", ()) == "100%"
    assert "do not fit" in render("%d", ("nope",))
    try:
        raise ValueError("inner")
    except ValueError as exc:
        text = render("failed", (), exc)
        assert render("failed", (), True) == text
        assert render("failed", (), sys.exc_info()) == text
    assert text.startswith("failed\nTraceback") and text.endswith("ValueError: inner")
    assert render("no error", (), True) == "no error"  # nothing is being handled


def test_log_prints_meta_round_trips_in_its_place() -> None:
    raw = {"name": "n", "log_prints": True, "parent": ["q", "f", 0]}
    meta = Meta.from_dict(raw)
    assert meta.log_prints is True and meta.extra == {}
    assert list(meta.to_dict()) == list(raw)
    assert msgpack.packb(meta.to_dict()) == msgpack.packb(raw)
    assert Meta.from_dict({"log_prints": "yes"}).extra == {"log_prints": "yes"}


def test_children_inherit_a_flows_log_prints_unless_their_task_sets_it() -> None:
    app = _app()

    @app.task
    def unset() -> None: ...

    @app.task(log_prints=False)
    def off() -> None: ...

    @app.flow(log_prints=True)
    def flow() -> None: ...

    runner = FlowRun(app, flow, "f1", "default", durable=True, log_prints=True)
    inherited = runner._message(unset, "f1.1", [], {})
    assert inherited.meta[MetaKey.LOG_PRINTS] is True
    assert list(inherited.meta)[:2] == [MetaKey.LOG_PRINTS, MetaKey.PARENT]
    assert MetaKey.LOG_PRINTS not in runner._message(off, "f1.2", [], {}).meta
    quiet = FlowRun(app, flow, "f2", "default", durable=True, log_prints=False)
    assert MetaKey.LOG_PRINTS not in quiet._message(unset, "f2.1", [], {}).meta
    # with_options(log_prints=...) travels with the run; the registered value does not.
    assert unset.with_options(log_prints=True).make_message([], {}).meta == {"log_prints": True}
    assert off.make_message([], {}).meta == {}


def test_print_outside_a_run_is_plain_print(capsys: pytest.CaptureFixture[str]) -> None:
    print_as_log("a", 1, sep="-", end="!\n")
    assert capsys.readouterr().out == "a-1!\n"
