"""The gateway application: ``create_app(settings)`` and the lifespan that opens its clients."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from starlette.responses import Response

from agentstream.runtime.asgi_close_unread import CloseUnreadBodyMiddleware
from agentstream.runtime.http import error_response, install_error_handlers, json_response
from agentstream.runtime.message_store import MessageStore, open_pool
from agentstream.runtime.metrics import Metrics, process_metrics
from agentstream.runtime.nats_conn import connect_nats
from agentstream.runtime.nats_contract import ensure_runs_stream
from agentstream.runtime.openapi_bodies import publish_body_schemas
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal import connect_temporal
from gateway.auth import Authenticator
from gateway.cors import cross_origin
from gateway.front_routes import FrontRoutedApp, operations
from gateway.latency_metrics import bridge_timings, declare_all
from gateway.limits import RateLimiter, StreamSlots
from gateway.live_hub import LiveHub
from gateway.open_runs import OpenRuns
from gateway.page import install_page
from gateway.raw_asgi import OUTAGES
from gateway.routes import (
    ag_ui_events,
    bridge,
    conversations,
    messages,
    runs,
    stream,
    ui_message_stream,
)
from gateway.run_appender import RunAppender
from gateway.run_directory import RunDirectory
from gateway.run_starter import RunStarter
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

log = logging.getLogger(__name__)

# On shutdown, workflow starts still under way get this long before they are cancelled.
_PENDING_STARTS_WAIT_S = 5.0


def install_outage_handlers(app: FastAPI) -> None:
    """A dependency that is down or restarting (``OUTAGES``) is a 503 the caller may retry."""

    async def unavailable(_: Request, exc: Exception) -> Response:
        log.warning("dependency unavailable: %r", exc)
        return error_response(
            503, "unavailable", "a backing service is unavailable, retry", {"Retry-After": "1"}
        )

    for error in OUTAGES:
        app.add_exception_handler(error, unavailable)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway; nothing connects until the server starts it."""
    settings = settings or GatewaySettings.from_env()

    metrics = Metrics()
    declare_all(metrics)
    # 0 before the first client: a panel over it shows zero, not "no data".
    metrics.add(stream.SSE_CLIENTS, stream.SSE_CLIENTS_HELP, 0)
    auth = Authenticator(settings)
    if auth.open:
        log.warning("no API_KEYS or JWT configured: the gateway is OPEN (local stack mode)")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, GatewayState]]:
        hub: LiveHub | None = None
        starter: RunStarter | None = None

        async def on_reconnected() -> None:
            if hub is not None:
                hub.resync_all()

        nc = await connect_nats(
            settings.nats,
            name="gateway",
            on_reconnected=on_reconnected,
        )
        js = nc.jetstream()
        pool = None
        try:
            await ensure_runs_stream(
                js, max_age_s=settings.runs_max_age_s, replicas=settings.runs_replicas
            )
            temporal = await connect_temporal(settings.temporal)
            pool = await open_pool(settings.database_url)
            store = MessageStore(pool)
            hub = LiveHub(nc, client_queue_size=settings.sse_client_queue, metrics=metrics)
            history = HistoryReader(nc)
            open_runs = OpenRuns(temporal)
            starter = RunStarter(
                temporal,
                nc,
                history,
                open_runs,
                metrics,
                run_timeout_s=settings.run_timeout_s,
                start_grace_s=settings.start_grace_s,
            )
            yield {
                "gateway": GatewayState(
                    settings=settings,
                    nc=nc,
                    temporal=temporal,
                    store=store,
                    hub=hub,
                    history=history,
                    appender=RunAppender(nc, history),
                    directory=RunDirectory(
                        temporal,
                        store,
                        history,
                        starter=starter,
                        start_grace_s=settings.start_grace_s,
                    ),
                    open_runs=open_runs,
                    starter=starter,
                    auth=auth,
                    rate_limiter=RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst),
                    stream_slots=StreamSlots(settings.max_streams_per_key),
                    metrics=metrics,
                    bridge_timings=bridge_timings(metrics),
                )
            }
        finally:
            if starter is not None:
                # Before NATS closes: a start that fails publishes its run's end.
                await starter.close(_PENDING_STARTS_WAIT_S)
            if pool is not None:
                await pool.close()
            if hub is not None:
                # Set-ups and releases of subscriptions still under way end before the drain.
                await hub.settled()
            await nc.drain()

    # The bridge and the SSE streams ahead of all of FastAPI: a post skips its per-request
    # work, an idle stream holds only its own frames.
    front_routes = [
        bridge.ROUTE,
        *stream.ROUTES,
        *ui_message_stream.ROUTES,
        *ag_ui_events.ROUTES,
        *conversations.ROUTES,
    ]
    app = FrontRoutedApp(
        front_routes=front_routes,
        outermost=cross_origin(settings.cors_allow_origins),
        title="agentstream gateway",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app, metrics)
    app.add_middleware(CloseUnreadBodyMiddleware)
    install_outage_handlers(app)
    publish_body_schemas(app, operations(front_routes))
    for module in (messages, runs, conversations):
        app.include_router(module.router)

    @app.get("/healthz")
    async def healthz() -> object:
        """Liveness and readiness: the process serves requests."""
        return json_response({"status": "ok", "auth": "open" if auth.open else "required"})

    install_page(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        """Prometheus exposition of this replica's counters and gauges, memory and CPU time."""
        text = metrics.render() + process_metrics()
        return Response(text, media_type="text/plain; version=0.0.4")

    return app
