"""What an agent attempt has done so far, read from the run's live events, for heartbeats."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from agentstream.runtime.nats_contract import live_subject, stored_events
from schemas import Status, Token, ToolStart, decode_event

_COUNTED = frozenset({"status", "token", "tool_start"})


class Progress(msgspec.Struct, kw_only=True):
    """The heartbeat details of ``call_agent``, shown by ``temporal workflow describe``."""

    stage: str = "agent_requested"
    tokens: int = 0
    tools_run: int = 0
    last_tool: str | None = None


@contextlib.asynccontextmanager
async def watch_progress(nc: NATS, org: str, run: str) -> AsyncIterator[Progress]:
    """Count the run's live events while the block runs."""
    progress = Progress()

    async def on_event(msg: Msg) -> None:
        try:
            events = stored_events(msg)
        except (KeyError, ValueError):
            return
        for event in events:
            if event.type in _COUNTED:
                count(event.data)

    def count(data: bytes) -> None:
        try:
            event = decode_event(data)
        except msgspec.DecodeError:
            return
        match event:
            case Status(stage=stage):
                progress.stage = str(stage)
            case Token(text=text):
                progress.tokens += len(text)
            case ToolStart(name=name):
                progress.tools_run += 1
                progress.last_tool = name

    sub = await nc.subscribe(live_subject(org, run), cb=on_event)
    try:
        yield progress
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
