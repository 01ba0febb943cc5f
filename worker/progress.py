"""What an agent attempt has done so far, read from the run's live events, for heartbeats."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from agentstream.event_publisher import EVENT_TYPE_HEADER
from schemas import Status, Token, ToolStart, decode_event


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
        if (msg.headers or {}).get(EVENT_TYPE_HEADER) not in ("status", "token", "tool_start"):
            return
        try:
            event = decode_event(msg.data)
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

    sub = await nc.subscribe(f"live.{org}.{run}", cb=on_event)
    try:
        yield progress
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
