"""Capacity refusals are retried and never counted; other failures use up a budget."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import msgspec
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from schemas import ErrorBody
from worker.activities import capacity_refusal
from worker.attempts import ATTEMPT_FAILED, CAPACITY_REFUSED, Busy, bounded_attempt

BUDGET = 3


def _environment(
    attempt: int, carried: dict[str, Any] | None
) -> tuple[ActivityEnvironment, list[Any]]:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=attempt, heartbeat_details=[carried] if carried else []
    )
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])
    return env, beats


def _attempt(env: ActivityEnvironment, error: Exception | None) -> ApplicationError | None:
    """Run one attempt that raises ``error``; the ApplicationError it ends with, if any."""

    def attempt() -> None:
        with bounded_attempt(BUDGET, "call_agent"):
            if error is not None:
                raise error

    try:
        env.run(attempt)
    except ApplicationError as ended:
        return ended
    return None


def test_a_refusal_is_retried_after_its_delay_and_recorded_for_the_next_attempt() -> None:
    env, beats = _environment(attempt=7, carried={"refusals": 6, "refused_before_start": 6})

    ended = _attempt(env, Busy("agent busy", retry_after_s=2.0, before_start=True))

    assert ended is not None and ended.type == CAPACITY_REFUSED and not ended.non_retryable
    assert ended.next_retry_delay is not None
    assert 2.0 <= ended.next_retry_delay.total_seconds() <= 3.0, "Retry-After plus jitter"
    assert beats[-1] == {"refusals": 7, "refused_before_start": 7}


def test_refusals_do_not_use_up_the_failure_budget() -> None:
    # Attempt 10 after eight refusals and one failure: one failure so far, two allowed more.
    env, _ = _environment(attempt=10, carried={"refusals": 8, "refused_before_start": 9})

    ended = _attempt(env, RuntimeError("agent answered 500"))

    assert ended is not None and ended.type == ATTEMPT_FAILED
    assert not ended.non_retryable, "the second failure is retried"
    assert "agent answered 500" in ended.message


def test_the_last_failure_of_the_budget_fails_the_run() -> None:
    env, _ = _environment(attempt=5, carried={"refusals": 2, "refused_before_start": 0})

    ended = _attempt(env, RuntimeError("agent answered 500"))

    assert ended is not None and ended.type == ATTEMPT_FAILED and ended.non_retryable
    assert "failed 3 times, giving up" in ended.message


def test_attempts_lost_without_a_word_count_as_failures() -> None:
    # Three earlier attempts, none refused: timeouts or lost workers used the budget up.
    env, _ = _environment(attempt=4, carried=None)

    ended = _attempt(env, None)

    assert ended is not None and ended.non_retryable
    assert ended.message == "call_agent gave up after 3 failed attempts"


def test_a_non_retryable_error_stays_final_with_its_own_message() -> None:
    env, _ = _environment(attempt=1, carried=None)

    ended = _attempt(env, ApplicationError("unknown connection 'x'", non_retryable=True))

    assert ended is not None and ended.non_retryable and ended.message == "unknown connection 'x'"


def _answer(status: int, error: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = msgspec.json.encode(ErrorBody(error=error, detail="..."))
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("answer", "before_start", "retry_after_s"),
    [
        (_answer(503, "agent_busy", "4"), True, 4.0),
        (_answer(503, "model_rate_limited", "9"), False, 9.0),
        (_answer(503, "agent_busy"), True, 2.0),
    ],
)
def test_the_agents_capacity_codes_are_refusals(
    answer: httpx.Response, before_start: bool, retry_after_s: float
) -> None:
    refusal = capacity_refusal(answer)

    assert refusal is not None
    assert (refusal.before_start, refusal.retry_after_s) == (before_start, retry_after_s)


@pytest.mark.parametrize(
    "answer",
    [
        _answer(503, "unavailable"),
        _answer(500, "agent_busy"),
        httpx.Response(503, content=b"<html>busy</html>"),
    ],
)
def test_other_errors_are_not_refusals(answer: httpx.Response) -> None:
    assert capacity_refusal(answer) is None
