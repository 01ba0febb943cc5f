"""The activities of a run. They own all I/O: sandbox, agent service, database, NATS."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Literal

import httpx
import msgspec
from nats.aio.client import Client as NATS
from opentelemetry.trace import SpanKind
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agentstream.runtime import tracing
from agentstream.runtime.http import parse_retry_after
from agentstream.runtime.message_store import (
    ConversationOfAnotherOrg,
    HistoryBounds,
    MessageStore,
)
from agentstream.runtime.nats_contract import Producer
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.sandbox import SandboxBusy, SandboxProvider
from agentstream.runtime.terminal_publisher import publish_terminal
from agentstream.runtime.tokens import TokenClaims, mint_token
from schemas import (
    DEFAULT_ORG,
    AgentRequest,
    AgentResult,
    Cancelled,
    CapacityRefusal,
    ChatInput,
    Done,
    ErrorBody,
    Failed,
    Reset,
    SandboxInfo,
    Stage,
    Status,
    encode,
)
from worker.attempts import AttemptLedger, Busy, bounded_attempt
from worker.patient_publish import publish_patiently
from worker.progress import Progress, watch_progress

# A callback token outlives any attempt's start-to-close timeout.
_CALLBACK_TOKEN_TTL_S = 3 * 3600
# Failed attempts (not capacity refusals) after which a stage fails the run.
_SANDBOX_FAILURE_BUDGET = 5
_AGENT_FAILURE_BUDGET = 3
# When a busy agent or sandbox backend does not say how long to wait.
_DEFAULT_BUSY_RETRY_S = 2.0


# The activities' inputs, in the order a run calls them.
class CreateSandboxInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``create_sandbox``."""

    run: str
    org: str


class PublishStatusInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``publish_status``: a stage the workflow itself reached."""

    run: str
    org: str
    stage: Stage


class CallAgentInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``call_agent``."""

    run: str
    chat: ChatInput
    sandbox: SandboxInfo


class SaveMessageInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``save_message``; ``run`` makes the write idempotent."""

    run: str
    chat: ChatInput
    result: AgentResult


class DestroySandboxInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``destroy_sandbox``; without ``sandbox``, the one made for ``run``, by its ID."""

    run: str
    sandbox: SandboxInfo | None = None


class TerminalInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``publish_terminal``."""

    run: str
    org: str = DEFAULT_ORG
    outcome: Literal["done", "failed", "cancelled"]
    result: AgentResult | None = None
    reason: str = ""


def capacity_refusal(response: httpx.Response) -> Busy | None:
    """The agent's answer as a :class:`Busy` when it refused for capacity, else None."""
    if response.status_code != 503:
        return None
    try:
        code = msgspec.json.decode(response.content, type=ErrorBody).error
    except msgspec.DecodeError:
        return None
    if code not in set(CapacityRefusal):
        return None
    wait = parse_retry_after(response.headers.get("retry-after"))
    return Busy(
        f"agent service answered 503 {code}",
        retry_after_s=wait if wait is not None else _DEFAULT_BUSY_RETRY_S,
        # A rate-limited model may have met its limit mid-way, after the attempt streamed.
        before_start=code == CapacityRefusal.AGENT_BUSY,
    )


def callback_urls_for(chat: ChatInput, run: str, gateway_urls: list[str]) -> list[str]:
    """Where the agent posts the run's chunks, the first choice first.

    ``callback_url`` in the input (one chunk endpoint or a gateway's base URL) overrides the
    worker's gateways; otherwise every configured gateway is a bridge the agent may fail over to.
    """
    bases = [chat.callback_url] if chat.callback_url else gateway_urls
    urls = [base.rstrip("/") for base in bases]
    return [url if url.endswith("/chunk") else f"{url}/api/stream/{run}/chunk" for url in urls]


# WorkerSettings' defaults (HISTORY_MAX_TURNS, HISTORY_MAX_CHARS).
_DEFAULT_HISTORY = HistoryBounds(max_turns=10, max_chars=20_000)


class RunActivities:
    """Activities as bound methods over the clients the worker opened once."""

    def __init__(
        self,
        *,
        nc: NATS,
        store: MessageStore,
        sandboxes: SandboxProvider,
        http: httpx.AsyncClient,
        agent_url: str,
        gateway_urls: list[str],
        callback_secret: str,
        heartbeat_s: float,
        history_bounds: HistoryBounds = _DEFAULT_HISTORY,
        test_stage_delays: dict[str, float] | None = None,
    ) -> None:
        self._nc = nc
        self._history = HistoryReader(nc)
        self._store = store
        self._sandboxes = sandboxes
        self._http = http
        self._agent_url = agent_url.rstrip("/")
        self._gateway_urls = gateway_urls
        self._callback_secret = callback_secret
        self._heartbeat_s = heartbeat_s
        self._history_bounds = history_bounds
        self._test_stage_delays = test_stage_delays or {}

    async def _publish(self, org: str, event: Status | Reset, producer: Producer) -> None:
        # Outlasts a RUNS leader election instead of spending an attempt of the activity.
        await publish_patiently(self._nc, org, event, producer=producer)

    async def _test_pause(self, stage: str) -> None:
        """TEST AID (WORKER_TEST_STAGE_DELAYS): hold ``stage`` open so a test can cancel in it."""
        delay = self._test_stage_delays.get(stage)
        if delay:
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def _heartbeating(
        self, ledger: AttemptLedger, progress: Progress | None = None
    ) -> AsyncIterator[None]:
        """Heartbeat while the block runs, so cancellation reaches it and a lost worker shows."""

        async def beat() -> None:
            while True:
                ledger.beat(progress)
                await asyncio.sleep(self._heartbeat_s)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, params: CreateSandboxInput) -> SandboxInfo:
        """Create the run's sandbox, announcing it before and after.

        A backend at its concurrency limit (E2B) is waited for, not a failure. However the
        attempt ends short of returning the sandbox (cancelled, failed), it leaves none behind.
        """
        with bounded_attempt(_SANDBOX_FAILURE_BUDGET, "create_sandbox") as ledger:
            async with self._heartbeating(ledger):
                attempt = activity.info().attempt
                if not ledger.previous_refused_before_start():
                    await self._publish(
                        params.org,
                        Status(run=params.run, attempt=attempt, stage=Stage.SANDBOX_CREATING),
                        Producer.CREATE_SANDBOX,
                    )
                creating = asyncio.create_task(self._create(params.run))
                try:
                    # Shielded: a creation cut short by cancellation could leave a sandbox
                    # nobody knows of (E2B assigns its ID only in the answer).
                    info = await asyncio.shield(creating)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await self._sandboxes.destroy(await creating)
                    raise
                try:
                    await self._test_pause("create_sandbox")
                    await self._publish(
                        params.org,
                        Status(
                            run=params.run,
                            attempt=attempt,
                            n=1,
                            stage=Stage.SANDBOX_READY,
                            sandbox_id=info.id,
                            sandbox_url=info.url,
                        ),
                        Producer.CREATE_SANDBOX,
                    )
                except BaseException:
                    # The workflow never learns of this sandbox: remove it here, uncancelled.
                    await asyncio.shield(self._sandboxes.destroy(info))
                    raise
                return info

    async def _create(self, run: str) -> SandboxInfo:
        try:
            return await self._sandboxes.create(run)
        except SandboxBusy as exc:
            raise Busy(str(exc), retry_after_s=_DEFAULT_BUSY_RETRY_S, before_start=True) from None

    @activity.defn(name="publish_status")
    async def publish_status(self, params: PublishStatusInput) -> None:
        """Publish a stage the workflow reached (one event per run and stage, however retried)."""
        await self._publish(
            params.org, Status(run=params.run, stage=params.stage), Producer.of_stage(params.stage)
        )

    @activity.defn(name="call_agent")
    async def call_agent(self, params: CallAgentInput) -> AgentResult:
        """Run the agent for this attempt; heartbeat while it works; stop it on cancellation.

        A busy agent or a rate-limited model provider is retried later, never a failure.
        """
        with bounded_attempt(_AGENT_FAILURE_BUDGET, "call_agent") as ledger:
            return await self._call_agent(params, ledger)

    async def _call_agent(self, params: CallAgentInput, ledger: AttemptLedger) -> AgentResult:
        attempt = activity.info().attempt
        chat = params.chat
        # An attempt refused before it started streamed nothing: no partial output to take back.
        if attempt > 1 and not ledger.previous_refused_before_start():
            # Clients drop what earlier attempts streamed; everything after carries this attempt.
            await self._publish(
                chat.org,
                Reset(run=params.run, attempt=attempt, reason=f"attempt {attempt} restarted"),
                Producer.CALL_AGENT,
            )
        token = mint_token(
            self._callback_secret,
            TokenClaims(
                kind="callback",
                run=params.run,
                org=chat.org,
                attempt=attempt,
                exp=int(time.time()) + _CALLBACK_TOKEN_TTL_S,
            ),
        )
        callback_urls = callback_urls_for(chat, params.run, self._gateway_urls)
        # Only the run's own org's turns: another org's under the same ID are never read.
        history = await self._store.history(
            chat.conversation_id or params.run,
            chat.org,
            before_run=params.run,
            bounds=self._history_bounds,
        )
        request = AgentRequest(
            run=params.run,
            attempt=attempt,
            prompt=chat.prompt,
            org=chat.org,
            callback_url=callback_urls[0],
            callback_fallback_urls=callback_urls[1:],
            callback_token=token,
            sandbox=params.sandbox,
            connection_id=chat.connection_id,
            history=history,
        )
        async with (
            watch_progress(self._nc, chat.org, params.run) as progress,
            self._heartbeating(ledger, progress),
        ):
            try:
                response = await self._post_agent(request)
            except asyncio.CancelledError:
                await self._stop_agent(params.run)
                raise
            except httpx.HTTPError as exc:
                raise ApplicationError(f"agent service unreachable: {exc!r}") from None
        if response.status_code >= 400:
            refusal = capacity_refusal(response)
            if refusal is not None:
                raise refusal
            raise ApplicationError(
                f"agent service answered {response.status_code}: {response.text[:500]}",
                non_retryable=400 <= response.status_code < 500 and response.status_code != 409,
            )
        return msgspec.json.decode(response.content, type=AgentResult)

    async def _post_agent(self, request: AgentRequest) -> httpx.Response:
        """``POST /ai/agent``; traced, the request carries the run's trace to the agent."""
        headers = {"Content-Type": "application/json"}
        with tracing.span(
            "POST /ai/agent",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "agentstream.run": request.run,
                "agentstream.attempt": request.attempt,
            },
        ) as span:
            tracing.inject(headers)
            response = await self._http.post(
                f"{self._agent_url}/ai/agent", content=encode(request), headers=headers
            )
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _stop_agent(self, run: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self._http.post(f"{self._agent_url}/ai/agent/{run}/cancel", timeout=5.0)

    @activity.defn(name="save_message")
    async def save_message(self, params: SaveMessageInput) -> bool:
        """Store the answer once per run, whatever the retries."""
        await self._publish(
            params.chat.org,
            Status(run=params.run, attempt=activity.info().attempt, stage=Stage.SAVING),
            Producer.SAVE_MESSAGE,
        )
        await self._test_pause("save_message")
        try:
            return await self._store.save(params.run, params.chat, params.result)
        except ConversationOfAnotherOrg as exc:
            # No retry can make another org's conversation this org's.
            raise ApplicationError(str(exc), non_retryable=True) from None

    @activity.defn(name="publish_terminal")
    async def publish_terminal(self, params: TerminalInput) -> None:
        """Publish the run's one terminal event, with its completeness proof (stored once)."""
        event: Done | Failed | Cancelled
        if params.outcome == "done":
            if params.result is None:
                raise ApplicationError("done without a result", non_retryable=True)
            event = Done(run=params.run, result=params.result)
        elif params.outcome == "failed":
            event = Failed(run=params.run, reason=params.reason)
        else:
            event = Cancelled(run=params.run, reason=params.reason)
        await self._test_pause("publish_terminal")
        await publish_terminal(self._nc, self._history, params.org, event)

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, params: DestroySandboxInput) -> None:
        """Remove the run's sandbox."""
        if params.sandbox is None:
            await self._sandboxes.destroy_for_run(params.run)
        else:
            await self._sandboxes.destroy(params.sandbox)
