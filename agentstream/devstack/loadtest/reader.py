"""One SSE reader of a run, as a browser tab would be: it reads to the terminal event, and when its
connection ends early (on purpose or because a replica died) it resumes on the next replica with
``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from agentstream.devstack.loadtest.http1 import HttpError, Origin, request
from agentstream.devstack.loadtest.proof import Claim, ProofCheck, claim_of
from agentstream.devstack.loadtest.records import ReaderRecord
from agentstream.devstack.loadtest.sse import FrameParser, MalformedStream
from schemas import TERMINAL_EVENT_TYPES

# A browser's EventSource waits the server's retry hint (2 s); a shorter, growing pause keeps
# the test quick without hammering a replica that is coming back.
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class ReaderPlan:
    """Where and how one reader reads."""

    gateways: list[Origin]
    path: str
    first_replica: int
    planned_drop: int | None
    connect_timeout_s: float
    idle_timeout_s: float


class _Stop(Exception):
    """A response the reader cannot recover from (a 4xx other than 429)."""


class Reader:
    """Follows one run; :meth:`follow` fills :attr:`record` and :attr:`check`."""

    def __init__(self, plan: ReaderPlan, posted_at: float) -> None:
        self.plan = plan
        self.posted_at = posted_at
        self.record = ReaderRecord(first_replica=plan.first_replica, planned_drop=plan.planned_drop)
        self.check = ProofCheck()
        self.claim: Claim | None = None
        self.terminal_data = b""
        self._loop = asyncio.get_running_loop()

    def _since_post(self) -> float:
        return self._loop.time() - self.posted_at

    async def follow(self) -> None:
        """Read until the terminal event; the caller bounds it with the run's deadline."""
        record = self.record
        replica = self.plan.first_replica
        failures = 0
        while record.terminal is None:
            try:
                left_on_purpose = await self._connect(replica)
            except _Stop as exc:
                record.last_error = str(exc)
                return
            except MalformedStream as exc:
                self.check.malformed = True
                record.last_error = str(exc)
                return
            except HttpError as exc:
                record.last_error = str(exc)
                left_on_purpose = False
            if record.terminal is not None:
                return
            replica = (replica + 1) % len(self.plan.gateways)
            if left_on_purpose:
                continue
            record.broken += 1
            failures += 1
            await asyncio.sleep(min(_BACKOFF_FIRST_S * 2 ** (failures - 1), _BACKOFF_MAX_S))

    async def _connect(self, replica: int) -> bool:
        """One connection; True if the reader left it on purpose (its planned drop)."""
        record, check, plan = self.record, self.check, self.plan
        headers = {"Accept": "text/event-stream"}
        if check.last_id:
            headers["Last-Event-ID"] = str(check.last_id)
        record.connections += 1
        async with request(
            plan.gateways[replica],
            "GET",
            plan.path,
            headers=headers,
            timeout_s=plan.connect_timeout_s,
        ) as response:
            if response.status != 200:
                body = await response.read(plan.connect_timeout_s)
                detail = f"GET stream answered {response.status}: {body[:200]!r}"
                if 400 <= response.status < 500 and response.status != 429:
                    raise _Stop(detail)
                raise HttpError(detail)
            parser = FrameParser()
            async with contextlib.aclosing(response.chunks(plan.idle_timeout_s)) as chunks:
                async for chunk in chunks:
                    for frame in parser.feed(chunk):
                        now = self._since_post()
                        if record.first_event_s is None:
                            record.first_event_s = now
                        if frame.event in TERMINAL_EVENT_TYPES:
                            record.terminal = frame.event
                            record.terminal_s = now
                            self.terminal_data = frame.data
                            self.claim = claim_of(frame.data)
                            return False
                        if not check.add(frame.id, frame.data):
                            if frame.id is None:
                                raise MalformedStream(f"a {frame.event} event without an id")
                            continue
                        if frame.event == "token" and record.first_token_s is None:
                            record.first_token_s = now
                        elif frame.event == "status":
                            record.last_stage = _stage(frame.data)
                        drop = plan.planned_drop
                        if drop is not None and not record.dropped and check.events >= drop:
                            record.dropped = True
                            response.close()
                            return True
            return False

    def terminal_reason(self) -> str:
        """The ``reason`` a ``failed`` or ``cancelled`` event gives ("" for ``done``)."""
        try:
            body = json.loads(self.terminal_data)
        except ValueError:
            return ""
        reason = body.get("reason") if isinstance(body, dict) else None
        return str(reason) if reason else ""

    def finish(self) -> ReaderRecord:
        """The record, with the verdict and counts filled in."""
        record, check = self.record, self.check
        record.events = check.events
        record.duplicates = check.duplicates
        record.reordered = check.reordered
        record.lost = check.lost(self.claim)
        record.verdict = check.verdict(self.claim, terminal_seen=record.terminal is not None)
        return record


def _stage(data: bytes) -> str | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    stage = body.get("stage") if isinstance(body, dict) else None
    return str(stage) if stage is not None else None


async def read_run(reader: Reader, deadline: float) -> ReaderRecord:
    """Follow ``reader`` until its terminal event or the loop time ``deadline``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            await reader.follow()
    return reader.finish()
