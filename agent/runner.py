"""Running one attempt of one run: the LangChain agent, its stream, and its result."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any, cast

import httpx
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, HumanMessage
from langchain_core.tools import BaseTool

from agent.chunk_sink import ChunkSink
from agent.history import history_messages
from agent.settings import AgentSettings
from agent.sql_database import AnalysisDatabases, ReadOnlyDatabase
from agent.sql_tools import sql_tools
from agent.tools import ToolRecorder, sandbox_tools
from agentstream.runtime.sandbox import SandboxProvider
from schemas import AgentRequest, AgentResult, SqlQuery, Stage, Status, Usage

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a capable software and data agent. You work in a code sandbox (write files, run "
    "commands) and, when a database is attached, with read-only SQL tools: list the tables, "
    "describe the ones you need, then query them (PostgreSQL). Base every figure you report "
    "on query results. Answer in the user's language, clearly and concisely."
)


def _text_of(content: Any) -> str:
    """The text parts of a message's content (a string or a list of content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    return ""


class AgentRunner:
    """Runs attempts with one model and sandbox backend, streaming to the callback bridge."""

    def __init__(
        self,
        *,
        model: BaseChatModel,
        model_name: str,
        sandboxes: SandboxProvider,
        databases: AnalysisDatabases,
        http: httpx.AsyncClient,
        settings: AgentSettings,
    ) -> None:
        self._model = model
        self._model_name = model_name
        self._sandboxes = sandboxes
        self._databases = databases
        self._http = http
        self._settings = settings

    async def _database(self, request: AgentRequest) -> ReadOnlyDatabase | None:
        """The run's database: the one it names (which must exist), else the default if any."""
        if request.connection_id is not None:
            return await self._databases.get(request.connection_id)
        if self._settings.default_connection in self._databases.connection_ids:
            return await self._databases.get(self._settings.default_connection)
        return None

    async def run(self, request: AgentRequest) -> AgentResult:
        """Run the agent on ``request`` and return its result once every event is stored."""
        settings = self._settings
        database = await self._database(request)
        async with ChunkSink(
            self._http,
            urls=[request.callback_url, *request.callback_fallback_urls],
            token=request.callback_token,
            run=request.run,
            attempt=request.attempt,
            flush_interval_s=settings.flush_interval_s,
            max_chars=settings.flush_max_chars,
        ) as sink:
            await sink.emit(
                Status(run=request.run, stage=Stage.AGENT_STARTED, model=self._model_name)
            )
            sandbox = await self._sandboxes.connect(request.sandbox) if request.sandbox else None
            recorder = ToolRecorder(sink)
            queries: list[SqlQuery] = []
            tools: list[BaseTool] = []
            if sandbox is not None:
                tools += sandbox_tools(
                    sandbox, recorder, command_timeout_s=settings.command_timeout_s
                )
            if database is not None:
                tools += sql_tools(database, recorder, queries)
            agent = create_agent(self._model, tools, system_prompt=SYSTEM_PROMPT)
            final: list[Any] = []
            # The conversation's earlier turns come first, as chat history.
            messages: list[AnyMessage | dict[str, Any]] = [
                *history_messages(request.history),
                HumanMessage(request.prompt),
            ]
            # With a list of stream modes, each item is a (mode, payload) pair.
            stream = cast(
                AsyncGenerator[tuple[str, Any], None],
                agent.astream(
                    {"messages": messages},
                    stream_mode=["messages", "values"],
                    config={"recursion_limit": settings.max_steps},
                ),
            )
            # A refused post or a cancellation leaves mid-stream: the graph's run is closed then,
            # not whenever the event loop finalises the generator.
            async with contextlib.aclosing(stream):
                async for mode, payload in stream:
                    if mode == "messages":
                        message, _ = payload
                        if isinstance(message, AIMessageChunk):
                            await sink.token(_text_of(message.content))
                    elif mode == "values":
                        final = payload["messages"]
            answers = [m for m in final if isinstance(m, AIMessage)]
            reported = [m.usage_metadata for m in answers if m.usage_metadata]
            usage = Usage(
                input_tokens=sum(u["input_tokens"] for u in reported),
                output_tokens=sum(u["output_tokens"] for u in reported),
            )
            files = await sandbox.list_files() if sandbox is not None else []
        # Leaving the sink flushed every event: the result never overtakes the stream.
        return AgentResult(
            final_answer=_text_of(answers[-1].content).strip() if answers else "",
            model=self._model_name,
            sql_queries=queries,
            tool_calls=recorder.calls,
            files=files,
            usage=usage,
            sandbox=request.sandbox,
        )
