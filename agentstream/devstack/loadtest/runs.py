"""One simulated user: start a run through ``POST /api/messages``, then read it with M readers
spread over the replicas, some of which leave and resume part-way."""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from agentstream.devstack.loadtest.http1 import HttpError, Origin, request
from agentstream.devstack.loadtest.reader import Reader, ReaderPlan, read_run
from agentstream.devstack.loadtest.records import Outcome, RunRecord

_POST_BACKOFF_MAX_S = 5.0
_DEFAULT_RETRY_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What every simulated user does; the same for all runs of a load test."""

    gateways: list[Origin]
    readers: int
    resume_fraction: float
    drop_within: int
    deadline_s: float
    message: str
    org: str | None = None
    api_key: str | None = None
    connect_timeout_s: float = 30.0
    # A POST retried after a timeout is safe (same Idempotency-Key), but each retry costs the
    # gateway again: under a crowd, starting a workflow can take tens of seconds.
    post_timeout_s: float = 60.0
    idle_timeout_s: float = 45.0


@dataclass(frozen=True, slots=True)
class _Accepted:
    run_id: str
    stream_token: str


class _Refused(Exception):
    """The gateway refused the message for good (a 4xx other than 429)."""


async def drive_run(plan: RunPlan, index: int, rng: random.Random) -> RunRecord:
    """Start run ``index`` and read it to its end or its deadline."""
    loop = asyncio.get_running_loop()
    record = RunRecord(index=index)
    posted_at = loop.time()
    deadline = posted_at + plan.deadline_s
    try:
        async with asyncio.timeout_at(deadline):
            accepted = await _post(plan, index, record, posted_at)
    except TimeoutError:
        record.reason = record.reason or "no answer to POST /api/messages before the deadline"
        return record
    except _Refused as exc:
        record.outcome = Outcome.FAILED
        record.reason = str(exc)
        return record
    record.run_id = accepted.run_id
    path = f"/api/stream/{accepted.run_id}?token={quote(accepted.stream_token, safe='')}"
    readers = [
        Reader(
            ReaderPlan(
                gateways=plan.gateways,
                path=path,
                # Consecutive readers of a run start on different replicas.
                first_replica=(index + j) % len(plan.gateways),
                planned_drop=drop,
                connect_timeout_s=plan.connect_timeout_s,
                idle_timeout_s=plan.idle_timeout_s,
            ),
            posted_at,
        )
        for j, drop in enumerate(_plan_drops(plan, rng))
    ]
    record.readers = list(await asyncio.gather(*(read_run(r, deadline) for r in readers)))
    _compare_readers(readers)
    _conclude(record, readers)
    return record


def _plan_drops(plan: RunPlan, rng: random.Random) -> list[int | None]:
    """Which readers drop (after how many events): ``resume_fraction`` of them on average,
    exactly that many when it divides evenly (0.5 of 2 readers is always one)."""
    share = plan.resume_fraction * plan.readers
    dropping = min(plan.readers, math.floor(share + rng.random()))
    chosen = set(rng.sample(range(plan.readers), dropping))
    return [rng.randint(1, plan.drop_within) if j in chosen else None for j in range(plan.readers)]


async def _post(plan: RunPlan, index: int, record: RunRecord, posted_at: float) -> _Accepted:
    """POST the message, retrying throttling, outages and broken connections on the next
    replica with the same ``Idempotency-Key``, so a retry can never start a second run."""
    loop = asyncio.get_running_loop()
    body: dict[str, str] = {"message": plan.message}
    if plan.org:
        body["org"] = plan.org
    payload = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": f"loadtest-{uuid.uuid4().hex}",
    }
    if plan.api_key:
        headers["Authorization"] = f"Bearer {plan.api_key}"
    replica = index % len(plan.gateways)
    failures = 0
    while True:
        record.post_attempts += 1
        pause = min(0.1 * 2**failures, _POST_BACKOFF_MAX_S)
        try:
            async with request(
                plan.gateways[replica],
                "POST",
                "/api/messages",
                headers=headers,
                body=payload,
                timeout_s=plan.post_timeout_s,
            ) as response:
                answer = await response.read(plan.post_timeout_s)
            if response.status == 202:
                accepted = json.loads(answer)
                record.accepted_s = loop.time() - posted_at
                record.reason = ""
                return _Accepted(str(accepted["workflow_id"]), str(accepted["stream_token"]))
            record.reason = f"POST /api/messages answered {response.status}: {answer[:300]!r}"
            if response.status < 500 and response.status != 429:
                raise _Refused(record.reason)
            if response.status == 429:
                record.post_throttled += 1
            if response.status == 429 or "retry-after" in response.headers:
                pause = _retry_after(response.headers.get("retry-after"))
        except HttpError as exc:
            record.reason = f"POST /api/messages: {exc}"
        failures += 1
        replica = (replica + 1) % len(plan.gateways)
        await asyncio.sleep(pause)


def _retry_after(raw: str | None) -> float:
    try:
        return max(0.0, float(raw)) if raw else _DEFAULT_RETRY_AFTER_S
    except ValueError:
        return _DEFAULT_RETRY_AFTER_S


def _compare_readers(readers: list[Reader]) -> None:
    """Readers of a run must see the same events: any one a reader missed is lost to it, even
    when no proof says so (a run that hung, or a terminal without one)."""
    union: set[int] = set()
    for reader in readers:
        union |= reader.check.seen
    for reader in readers:
        missing = len(union - reader.check.seen)
        reader.record.lost = max(reader.record.lost, missing)


def _conclude(record: RunRecord, readers: list[Reader]) -> None:
    record.first_event_s = _earliest(r.record.first_event_s for r in readers)
    record.first_token_s = _earliest(r.record.first_token_s for r in readers)
    record.terminal_s = _earliest(r.record.terminal_s for r in readers)
    ended = [r for r in readers if r.record.terminal is not None]
    if not ended:
        record.outcome = Outcome.HUNG
        stages = sorted({r.record.last_stage or "none" for r in readers})
        record.reason = f"no terminal event before the deadline (last stage: {', '.join(stages)})"
        return
    kinds = sorted({r.record.terminal or "" for r in ended})
    if len(kinds) > 1:
        record.outcome = Outcome.FAILED
        record.reason = f"readers saw different terminal events: {kinds}"
        return
    record.outcome = Outcome(kinds[0])
    record.reason = ended[0].terminal_reason()


def _earliest(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
