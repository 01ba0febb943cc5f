"""What the load test records per run and per reader: the raw material of its report.

Times are seconds from the moment the run's ``POST /api/messages`` was sent. The records are
written whole into ``--json`` reports, so reports from several machines can be merged exactly.
"""

from __future__ import annotations

import enum

import msgspec


class Outcome(enum.StrEnum):
    """How a run ended, as the load test saw it."""

    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # No terminal event reached any of its readers within the deadline.
    HUNG = "hung"
    # POST /api/messages never accepted it within the deadline.
    NOT_STARTED = "not started"


class ReaderRecord(msgspec.Struct, kw_only=True):
    """One SSE reader of a run, across all its connections."""

    first_replica: int
    connections: int = 0
    # The reader leaves on purpose after this many events, then resumes on another replica.
    planned_drop: int | None = None
    dropped: bool = False
    # Connections that ended without a terminal event for reasons other than a planned drop.
    broken: int = 0
    events: int = 0
    duplicates: int = 0
    reordered: int = 0
    lost: int = 0
    terminal: str | None = None
    # The stage of the last ``status`` event: where a run that never ended was left.
    last_stage: str | None = None
    verdict: str = ""
    first_event_s: float | None = None
    first_token_s: float | None = None
    terminal_s: float | None = None
    last_error: str | None = None


class RunRecord(msgspec.Struct, kw_only=True):
    """One run: how it was started, how it ended, and its readers."""

    index: int
    run_id: str | None = None
    outcome: Outcome = Outcome.NOT_STARTED
    reason: str = ""
    post_attempts: int = 0
    # 429 answers (the gateway's waiting line was full) that were retried after Retry-After.
    post_throttled: int = 0
    accepted_s: float | None = None
    first_event_s: float | None = None
    first_token_s: float | None = None
    terminal_s: float | None = None
    readers: list[ReaderRecord] = msgspec.field(default_factory=list)
