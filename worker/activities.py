"""The activities of a run. They own all I/O: sandbox, agent service, database, NATS."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import msgspec
from nats.aio.client import Client as NATS
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agentstream.event_publisher import publish_event
from agentstream.message_store import MessageStore
from agentstream.run_history import HistoryReader
from agentstream.sandbox import SandboxProvider
from agentstream.terminal_publisher import publish_terminal
from agentstream.tokens import TokenClaims, mint_token
from schemas import (
    AgentRequest,
    AgentResult,
    CallAgentInput,
    Cancelled,
    ChatInput,
    Done,
    Failed,
    Reset,
    SandboxInfo,
    SaveMessageInput,
    Stage,
    Status,
    TerminalInput,
    encode,
)
from worker.progress import Progress, watch_progress

# A callback token outlives any attempt's start-to-close timeout.
_CALLBACK_TOKEN_TTL_S = 3 * 3600


class CreateSandboxInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``create_sandbox``."""

    run: str
    org: str


class DestroySandboxInput(msgspec.Struct, frozen=True, kw_only=True):
    """Input of ``destroy_sandbox``."""

    run: str
    sandbox: SandboxInfo


def callback_urls_for(chat: ChatInput, run: str, gateway_urls: list[str]) -> list[str]:
    """Where the agent posts the run's chunks, the first choice first.

    ``callback_url`` in the input (one chunk endpoint or a gateway's base URL) overrides the
    worker's gateways; otherwise every configured gateway is a bridge the agent may fail over to.
    """
    bases = [chat.callback_url] if chat.callback_url else gateway_urls
    urls = [base.rstrip("/") for base in bases]
    return [url if url.endswith("/chunk") else f"{url}/api/stream/{run}/chunk" for url in urls]


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
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._history = HistoryReader(nc)
        self._store = store
        self._sandboxes = sandboxes
        self._http = http
        self._agent_url = agent_url.rstrip("/")
        self._gateway_urls = gateway_urls
        self._callback_secret = callback_secret
        self._heartbeat_s = heartbeat_s

    async def _publish(self, org: str, event: Status | Reset, producer: str) -> None:
        await publish_event(self._js, org, event, producer=producer)

    @activity.defn(name="create_sandbox")
    async def create_sandbox(self, params: CreateSandboxInput) -> SandboxInfo:
        """Create the run's sandbox, announcing it before and after."""
        attempt = activity.info().attempt
        await self._publish(
            params.org,
            Status(run=params.run, attempt=attempt, stage=Stage.SANDBOX_CREATING),
            "create_sandbox",
        )
        info = await self._sandboxes.create(params.run)
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
            "create_sandbox",
        )
        return info

    @activity.defn(name="call_agent")
    async def call_agent(self, params: CallAgentInput) -> AgentResult:
        """Run the agent for this attempt; heartbeat while it works; stop it on cancellation."""
        attempt = activity.info().attempt
        chat = params.chat
        if attempt > 1:
            # Clients drop what earlier attempts streamed; everything after carries this attempt.
            await self._publish(
                chat.org,
                Reset(run=params.run, attempt=attempt, reason=f"attempt {attempt} restarted"),
                "call_agent",
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
        )
        async with watch_progress(self._nc, chat.org, params.run) as progress:
            heartbeat = asyncio.create_task(self._heartbeat(progress))
            try:
                response = await self._http.post(
                    f"{self._agent_url}/ai/agent",
                    content=encode(request),
                    headers={"Content-Type": "application/json"},
                )
            except asyncio.CancelledError:
                await self._stop_agent(params.run)
                raise
            except httpx.HTTPError as exc:
                raise ApplicationError(f"agent service unreachable: {exc!r}") from None
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        if response.status_code >= 400:
            raise ApplicationError(
                f"agent service answered {response.status_code}: {response.text[:500]}",
                non_retryable=400 <= response.status_code < 500 and response.status_code != 409,
            )
        return msgspec.json.decode(response.content, type=AgentResult)

    async def _heartbeat(self, progress: Progress) -> None:
        while True:
            activity.heartbeat(msgspec.to_builtins(progress))
            await asyncio.sleep(self._heartbeat_s)

    async def _stop_agent(self, run: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self._http.post(f"{self._agent_url}/ai/agent/{run}/cancel", timeout=5.0)

    @activity.defn(name="save_message")
    async def save_message(self, params: SaveMessageInput) -> bool:
        """Store the answer once per run, whatever the retries."""
        await self._publish(
            params.chat.org,
            Status(run=params.run, attempt=activity.info().attempt, stage=Stage.SAVING),
            "save_message",
        )
        return await self._store.save(params.run, params.chat, params.result)

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
        await publish_terminal(self._nc, self._history, params.org, event)

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, params: DestroySandboxInput) -> None:
        """Remove the run's sandbox."""
        await self._sandboxes.destroy(params.sandbox)
