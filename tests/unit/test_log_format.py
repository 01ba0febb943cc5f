"""Log lines as text or JSON, and the run, org and attempt on every line logged for a run."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from agentstream.runtime.log_context import (
    RunContextFilter,
    current_run_context,
    run_context,
    run_context_of,
)
from agentstream.runtime.log_format import TEXT_FORMAT, JsonFormatter, log_handler
from agentstream.runtime.settings import ConfigError, LogSettings


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines, through the services' handler, to a buffer."""
    out = io.StringIO()
    handler = log_handler("json")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    logger = logging.getLogger("tests.log_format")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, out
    finally:
        logger.handlers = []


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_outside_a_run_has_time_level_logger_and_message_only(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning("disk %s is %d%% full", "/data", 93)
    (line,) = lines(out)
    assert set(line) == {"ts", "level", "logger", "msg"}
    assert line["level"] == "WARNING"
    assert line["logger"] == "tests.log_format"
    assert line["msg"] == "disk /data is 93% full"
    stamp = str(line["ts"])
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00.000Z")
    when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_a_line_logged_for_a_run_carries_its_run_org_and_attempt(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    with run_context("run_1", "acme", 2):
        logger.info("posting")
    logger.info("after")
    first, after = lines(out)
    assert (first["run"], first["org"], first["attempt"]) == ("run_1", "acme", 2)
    assert "run" not in after and "attempt" not in after


def test_an_unknown_attempt_is_null_not_missing(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    with run_context("run_2", "acme"):
        logger.info("stream opened")
    (line,) = lines(out)
    assert line["run"] == "run_2" and line["org"] == "acme"
    assert "attempt" in line and line["attempt"] is None


def test_a_multi_line_message_and_its_traceback_stay_on_one_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("first\nsecond")
    assert len(out.getvalue().splitlines()) == 1
    (line,) = lines(out)
    assert line["msg"] == "first\nsecond"
    assert "ValueError: bad" in str(line["exc"])
    assert str(line["exc"]).startswith("Traceback")


async def test_tasks_started_in_a_run_log_it_and_other_tasks_do_not() -> None:
    seen: dict[str, object] = {}

    async def child(name: str) -> None:
        seen[name] = current_run_context()

    outside = asyncio.create_task(child("outside"))
    with run_context("run_4", "acme", 1):
        inside = asyncio.create_task(child("inside"))
    await asyncio.gather(outside, inside)
    assert seen["outside"] is None
    assert seen["inside"] == ("run_4", "acme", 1)
    assert current_run_context() is None


def test_a_temporal_workflow_line_names_its_run_org_and_attempt() -> None:
    record = logging.LogRecord("temporalio.workflow", logging.WARNING, "", 0, "hm", None, None)
    record.temporal_workflow = {
        "workflow_id": "run_5",
        "task_queue": "agent-acme",
        "attempt": 1,
        "run_id": "0f0e",
    }
    assert run_context_of(record) == ("run_5", "acme", 1)


async def test_a_temporal_activity_line_names_its_run_org_from_its_queue_and_attempt() -> None:
    from temporalio import activity
    from temporalio.testing import ActivityEnvironment

    from agentstream.runtime.temporal import agent_call_queue

    @activity.defn
    async def probe() -> object:
        record = logging.LogRecord("worker", logging.INFO, "", 0, "call", None, None)
        return run_context_of(record)

    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id="run_6", attempt=3, task_queue=agent_call_queue("acme")
    )
    assert await env.run(probe) == ("run_6", "acme", 3)


def test_the_filter_marks_lines_outside_a_run_with_none() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)
    assert RunContextFilter().filter(record)
    assert (record.run, record.org, record.attempt) == (None, None, None)


def test_text_stays_the_default_format() -> None:
    assert LogSettings.from_env({}).format == "text"
    handler = log_handler("text")
    assert handler.formatter is not None and not isinstance(handler.formatter, JsonFormatter)
    assert handler.formatter._fmt == TEXT_FORMAT


def test_log_settings_are_read_and_checked() -> None:
    settings = LogSettings.from_env({"LOG_FORMAT": "json", "LOG_LEVEL": "debug"})
    assert (settings.format, settings.level) == ("json", "DEBUG")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        LogSettings.from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        LogSettings.from_env({"LOG_LEVEL": "loud"})
