"""The clients a gateway opens at start-up, handed to request handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from nats.aio.client import Client as NATS
from temporalio.client import Client as TemporalClient

from agentstream.runtime.message_store import MessageStore
from agentstream.runtime.metrics import Metrics
from agentstream.runtime.run_history import HistoryReader
from gateway.auth import Authenticator, Principal
from gateway.latency_metrics import BridgeTimings
from gateway.limits import RateLimiter, StreamSlots
from gateway.live_hub import LiveHub
from gateway.open_runs import OpenRuns
from gateway.run_appender import RunAppender
from gateway.run_directory import RunDirectory
from gateway.run_starter import RunStarter
from gateway.settings import GatewaySettings


@dataclass(frozen=True, slots=True)
class GatewayState:
    """Per-process clients and services, opened by the lifespan."""

    settings: GatewaySettings
    nc: NATS
    temporal: TemporalClient
    store: MessageStore
    hub: LiveHub
    history: HistoryReader
    appender: RunAppender
    directory: RunDirectory
    open_runs: OpenRuns
    # Holds the workflow starts still under way after their POST was answered.
    starter: RunStarter
    auth: Authenticator
    rate_limiter: RateLimiter
    stream_slots: StreamSlots
    metrics: Metrics
    bridge_timings: BridgeTimings


async def gateway_state(request: Request) -> GatewayState:
    """The running gateway's state, for dependency injection.

    Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread
    hand-off on every request.
    """
    state: GatewayState = request.state.gateway
    return state


State = Annotated[GatewayState, Depends(gateway_state)]


async def caller(request: Request, gw: State) -> Principal:
    """The authenticated caller, within its request rate."""
    principal = await gw.auth.principal(request)
    if principal.org is not None:
        gw.rate_limiter.check(principal.key)
    return principal


Caller = Annotated[Principal, Depends(caller)]
