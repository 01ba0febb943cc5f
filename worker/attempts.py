"""Which ends of an activity attempt count against the run, and which only mean "busy".

Temporal's retry policy counts every failed attempt alike, but a run must never fail because an
agent, a model provider or E2B was busy. So the activities that meet such limits run under a
retry policy without a maximum of attempts (the run's deadline bounds them), and keep their own
ledger of refusals in their heartbeat details, which Temporal hands to the next attempt. Every
attempt that ended otherwise (an error, a timeout, a crashed worker) is a failure; once
``budget`` of them happened, the next failure is final.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import msgspec
from temporalio import activity
from temporalio.exceptions import ApplicationError

# ``ApplicationError.type`` of an attempt that met a capacity limit and will be retried.
CAPACITY_REFUSED = "CapacityRefused"
# ``ApplicationError.type`` of an attempt that failed (counted against the budget).
ATTEMPT_FAILED = "AttemptFailed"


class Busy(Exception):
    """A capacity limit refused the attempt; retry after ``retry_after_s``, not a failure.

    ``before_start`` says nothing of the attempt's work happened (no event was published for
    it), so the next attempt has no partial output to take back.
    """

    def __init__(self, message: str, *, retry_after_s: float, before_start: bool) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.before_start = before_start


class AttemptLedger(msgspec.Struct, kw_only=True):
    """What a bounded activity's earlier attempts met, carried in its heartbeat details."""

    refusals: int = 0
    # The latest attempt a capacity limit refused before it did anything.
    refused_before_start: int = 0

    @classmethod
    def carried(cls) -> AttemptLedger:
        """The ledger the previous attempt left, or an empty one on the first attempt."""
        details = activity.info().heartbeat_details
        if not details:
            return cls()
        try:
            return msgspec.convert(details[0], cls)
        except msgspec.ValidationError:
            return cls()

    def failures_before(self) -> int:
        """How many earlier attempts failed: every one not refused for capacity."""
        return activity.info().attempt - 1 - self.refusals

    def previous_refused_before_start(self) -> bool:
        """Whether the previous attempt was refused before it did anything."""
        attempt = activity.info().attempt
        return attempt > 1 and self.refused_before_start == attempt - 1

    def beat(self, progress: msgspec.Struct | None = None) -> None:
        """Heartbeat this ledger, for the next attempt, merged with the attempt's ``progress``."""
        details: dict[str, Any] = msgspec.to_builtins(self)
        if progress is not None:
            details |= msgspec.to_builtins(progress)
        activity.heartbeat(details)


@contextlib.contextmanager
def bounded_attempt(budget: int, what: str) -> Iterator[AttemptLedger]:
    """Run one attempt of ``what``: refusals retry after their delay, failures count.

    Raises :class:`ApplicationError` of type :data:`CAPACITY_REFUSED` (retryable) for a
    :class:`Busy`, and of type :data:`ATTEMPT_FAILED` for any other error, non-retryable once
    ``budget`` attempts have failed. An ``ApplicationError`` raised non-retryable inside stays so.
    """
    ledger = AttemptLedger.carried()
    if ledger.failures_before() >= budget:
        # The attempts that used the budget up ended without a word (timeouts, lost workers).
        raise ApplicationError(
            f"{what} gave up after {ledger.failures_before()} failed attempts",
            type=ATTEMPT_FAILED,
            non_retryable=True,
        )
    try:
        yield ledger
    except Busy as busy:
        ledger.refusals += 1
        if busy.before_start:
            ledger.refused_before_start = activity.info().attempt
        ledger.beat()
        # Jitter, so the runs a limit refused together do not all come back together.
        delay = busy.retry_after_s * (1.0 + random.random() / 2)
        raise ApplicationError(
            f"{what}: {busy} (retrying, not a failure)",
            type=CAPACITY_REFUSED,
            next_retry_delay=timedelta(seconds=delay),
        ) from None
    except Exception as exc:
        failures = ledger.failures_before() + 1
        if isinstance(exc, ApplicationError):
            message, final = exc.message, exc.non_retryable
        else:
            message, final = f"{what} failed: {exc!r}", False
        if not final and failures >= budget:
            message, final = f"{message} (failed {failures} times, giving up)", True
        # ``from None``: the cause chain would be serialised into the workflow's history.
        raise ApplicationError(message, type=ATTEMPT_FAILED, non_retryable=final) from None
