"""The agent service: ``POST /ai/agent`` runs one attempt; ``.../cancel`` stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Annotated

import httpx
from fastapi import FastAPI, Path, Request
from opentelemetry.trace import SpanKind
from starlette.responses import Response

from agent.chunk_sink import SinkFailed
from agent.model import build_model
from agent.rate_limits import provider_rate_limit
from agent.runner import AgentRunner
from agent.settings import AgentSettings
from agent.sql_database import AnalysisDatabases, UnknownConnection
from agentstream.runtime import tracing
from agentstream.runtime.asgi_close_unread import CloseUnreadBodyMiddleware
from agentstream.runtime.http import (
    BadGateway,
    BadRequest,
    Conflict,
    NotFound,
    Unavailable,
    decode_body,
    install_error_handlers,
    json_response,
    read_body,
)
from agentstream.runtime.log_context import set_run_context
from agentstream.runtime.openapi_bodies import json_body, publish_body_schemas
from agentstream.runtime.sandbox.backends import SandboxBackends
from schemas import ID_PATTERN, AgentRequest, CapacityRefusal, require_id

log = logging.getLogger(__name__)

# A slot frees when some attempt ends; the worker adds jitter so refused callers do not return
# in lockstep.
_BUSY_RETRY_AFTER_S = 2


class AgentBusy(Unavailable):
    """Every slot of this instance is taken: the caller waits and retries; nothing failed."""

    code = CapacityRefusal.AGENT_BUSY.value


class ModelRateLimited(Unavailable):
    """The model provider answered 429: the attempt is retried later; nothing failed."""

    code = CapacityRefusal.MODEL_RATE_LIMITED.value


class RunningRuns:
    """The attempts in progress, by run, so they can be cancelled and never overlap."""

    def __init__(self, limit: int) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._limit = limit

    def start(self, run: str, task: asyncio.Task[object]) -> None:
        """Track ``task``; an older attempt of the same run is cancelled, never run alongside."""
        if run not in self._tasks and len(self._tasks) >= self._limit:
            task.cancel()
            raise AgentBusy(
                f"agent busy: {self._limit} runs in progress",
                headers={"Retry-After": str(_BUSY_RETRY_AFTER_S)},
            )
        previous = self._tasks.get(run)
        if previous is not None:
            previous.cancel()
        self._tasks[run] = task

    def finish(self, run: str, task: asyncio.Task[object]) -> None:
        """Forget ``task`` once it ended."""
        if self._tasks.get(run) is task:
            del self._tasks[run]

    @property
    def runs(self) -> list[str]:
        """Runs with an attempt in progress."""
        return sorted(self._tasks)

    def cancel(self, run: str) -> bool:
        """Cancel the run's attempt; False when none is in progress."""
        task = self._tasks.get(run)
        if task is None:
            return False
        task.cancel()
        return True


async def _cancel_on_disconnect(request: Request, task: asyncio.Task[object]) -> None:
    """A caller that went away (a crashed worker) no longer wants the attempt."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return


def create_app(settings: AgentSettings | None = None) -> FastAPI:
    """Build the agent service; the model and clients open when the server starts."""
    settings = settings or AgentSettings.from_env()
    runs = RunningRuns(settings.max_concurrent_runs)
    runner_box: dict[str, AgentRunner] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        model, model_name = build_model(settings)
        # Retries are the chunk sink's (same events, de-duplicated) and Temporal's, not httpx's.
        databases = AnalysisDatabases(
            settings.databases,
            statement_timeout_ms=settings.sql_timeout_ms,
            row_cap=settings.sql_row_cap,
            max_bytes=settings.sql_max_bytes,
        )
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
            runner_box["runner"] = AgentRunner(
                model=model,
                model_name=model_name,
                sandboxes=SandboxBackends(
                    "local",
                    root=FsPath(settings.sandbox.root),
                    allow_network=settings.sandbox.allow_network,
                    allow_unconfined=settings.sandbox.allow_unconfined,
                    e2b_api_key=settings.sandbox.e2b_api_key,
                ),
                databases=databases,
                http=http,
                settings=settings,
            )
            try:
                yield
            finally:
                await databases.close()

    app = FastAPI(title="agentstream agent", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(CloseUnreadBodyMiddleware)
    publish_body_schemas(app)

    @app.post(
        "/ai/agent",
        openapi_extra=json_body(AgentRequest),
        responses={200: {"description": "AgentResult"}, 400: {}, 409: {}, 413: {}, 503: {}},
    )
    async def run_agent(request: Request) -> Response:
        """Run one attempt and answer with its ``AgentResult`` once every event is stored.

        Traced, the attempt is a span in the run's trace (the worker's ``traceparent``), and
        so are its tool calls, SQL queries and chunk posts.
        """
        with tracing.span(
            "agent run",
            kind=SpanKind.SERVER,
            parent=tracing.caller(
                request.headers.get("traceparent"), request.headers.get("tracestate")
            ),
            attributes={"http.request.method": "POST", "http.route": "/ai/agent"},
        ):
            return await _run_attempt(request)

    async def _run_attempt(request: Request) -> Response:
        body = decode_body(await read_body(request, settings.max_body_bytes), AgentRequest)
        require_id("run", body.run)
        # This request's own task (and the attempt's, started from it): lines log the run.
        set_run_context(body.run, body.org, body.attempt)
        tracing.annotate({"agentstream.run": body.run, "agentstream.attempt": body.attempt})
        # Created inside the span: the attempt's task, and all it starts, are in the run's trace.
        task: asyncio.Task[object] = asyncio.create_task(runner_box["runner"].run(body))
        runs.start(body.run, task)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, task))
        try:
            result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise Conflict(f"run {body.run} attempt {body.attempt} was cancelled") from None
        except UnknownConnection as exc:
            raise BadRequest(str(exc)) from None
        except SinkFailed as exc:
            raise BadGateway(f"the callback bridge did not take the events: {exc}") from None
        except Exception as exc:
            retry_after = provider_rate_limit(exc)
            if retry_after is None:
                raise
            raise ModelRateLimited(
                f"the model provider is rate limiting: {type(exc).__name__}",
                headers={"Retry-After": str(max(1, round(retry_after)))},
            ) from None
        finally:
            watcher.cancel()
            runs.finish(body.run, task)
        return json_response(result)

    @app.post(
        "/ai/agent/{run}/cancel",
        status_code=202,
        responses={202: {}, 400: {}, 404: {}},
    )
    async def cancel_agent(run: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response:
        """Stop the run's attempt in progress."""
        if not runs.cancel(run):
            raise NotFound(f"no attempt of {run} in progress")
        return json_response({"cancelled": run}, 202)

    @app.get("/ai/agent/runs")
    async def running_runs() -> Response:
        """The runs with an attempt in progress on this instance."""
        return json_response({"running": runs.runs})

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness and readiness."""
        return json_response({"status": "ok"})

    return app
