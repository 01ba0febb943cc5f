"""Connecting to NATS, shared by gateway and worker (the stream is ``nats_contract``'s)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS

from agentstream.runtime.settings import NatsSettings

log = logging.getLogger(__name__)


async def connect_nats(
    settings: NatsSettings,
    *,
    name: str,
    on_reconnected: Callable[[], Awaitable[None]] | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
    max_reconnect_attempts: int = -1,
    connect_timeout: float = 5,
) -> NATS:
    """Connect to the configured servers with the configured credentials.

    A service keeps the defaults: reconnects forever and every lifecycle callback logged;
    ``on_reconnected`` lets it repair state that may have missed messages while the connection
    was down (core subscriptions are not replayed by the server). A one-shot command bounds the
    tries at each server with ``max_reconnect_attempts`` and takes the errors with ``on_error``:
    then nothing is logged, and its own report of an unreachable NATS is all that shows.
    """

    async def error_cb(exc: Exception) -> None:
        if on_error is not None:
            await on_error(exc)
        else:
            log.warning("nats error (%s): %s", name, exc)

    async def disconnected_cb() -> None:
        if on_error is None:
            log.warning("nats disconnected (%s)", name)

    async def reconnected_cb() -> None:
        log.info("nats reconnected (%s)", name)
        if on_reconnected is not None:
            await on_reconnected()

    return await nats.connect(
        [server.strip() for server in settings.url.split(",")],
        name=name,
        user=settings.user,
        password=settings.password,
        user_credentials=settings.creds_file,
        tls=settings.tls_context(),
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        max_reconnect_attempts=max_reconnect_attempts,
        reconnect_time_wait=0.5,
        connect_timeout=connect_timeout,
        # Publishes made while reconnecting are buffered up to this size, then refused.
        pending_size=8 * 1024 * 1024,
    )
