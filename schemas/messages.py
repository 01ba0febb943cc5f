"""Messages between the services: workflow input, agent request, results, API bodies."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec

from schemas.ids import DEFAULT_ORG

SandboxBackend = Literal["local", "e2b"]


class SandboxInfo(msgspec.Struct, kw_only=True, frozen=True):
    """Where a run's code sandbox lives; what the agent needs to reach it."""

    id: str
    backend: SandboxBackend = "local"
    url: str | None = None


class ChatInput(msgspec.Struct, kw_only=True, frozen=True):
    """Input of ``ChatWorkflow``; also what ``temporal workflow execute --input`` takes."""

    prompt: str
    conversation_id: str = ""
    org: str = DEFAULT_ORG
    callback_url: str | None = None
    connection_id: str | None = None


class SqlQuery(msgspec.Struct, kw_only=True, frozen=True):
    """One SQL statement the agent ran."""

    sql: str
    row_count: int = 0
    duration_ms: float = 0.0
    error: str | None = None


class ToolCall(msgspec.Struct, kw_only=True, frozen=True):
    """One finished tool call, for the result record."""

    call_id: str
    name: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    output: str = ""
    error: str | None = None


class Usage(msgspec.Struct, kw_only=True, frozen=True):
    """Token accounting reported by the model (zero where it reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0


class AgentResult(msgspec.Struct, kw_only=True, frozen=True):
    """What an agent run produced; carried by the ``done`` event and stored."""

    final_answer: str
    model: str = ""
    sql_queries: list[SqlQuery] = msgspec.field(default_factory=list)
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    files: list[str] = msgspec.field(default_factory=list)
    usage: Usage = msgspec.field(default_factory=Usage)
    sandbox: SandboxInfo | None = None


class Turn(msgspec.Struct, kw_only=True, frozen=True):
    """One earlier turn of a conversation, as the agent is given it: the user's message, the
    answer and the SQL statements that answer ran (those that succeeded, in order)."""

    prompt: str
    answer: str
    sql: list[str] = msgspec.field(default_factory=list)


class AgentRequest(msgspec.Struct, kw_only=True, frozen=True):
    """Body of ``POST /ai/agent``: one attempt of one run."""

    run: str
    attempt: int
    prompt: str
    org: str = DEFAULT_ORG
    callback_url: str
    # More bridges to fail over to (other gateway replicas), tried in turn when one is down.
    callback_fallback_urls: list[str] = msgspec.field(default_factory=list)
    callback_token: str = ""
    sandbox: SandboxInfo | None = None
    connection_id: str | None = None
    # The conversation's earlier turns, oldest first, bounded by the worker (HISTORY_MAX_*).
    history: list[Turn] = msgspec.field(default_factory=list)


class PostMessage(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /api/messages``."""

    # The upper bound is the gateway's (configurable) MAX_MESSAGE_CHARS.
    message: Annotated[str, msgspec.Meta(min_length=1)]
    conversation_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    org: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    connection_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None


class MessageAccepted(msgspec.Struct, kw_only=True, frozen=True):
    """Answer of ``POST /api/messages``: the run has been started."""

    workflow_id: str
    conversation_id: str
    stream_url: str
    run_url: str
    # Run-scoped, expiring; ``stream_url`` already carries it as ``?token=``.
    stream_token: str = ""
    # The conversation's stream (every run of it), with a conversation-scoped token.
    conversation_stream_url: str = ""


RunState = Literal["running", "completed", "failed", "cancelled", "terminated", "timed_out"]


class RunView(msgspec.Struct, kw_only=True, frozen=True):
    """Answer of ``GET /api/runs/{id}``."""

    workflow_id: str
    status: RunState
    result: AgentResult | None = None
    org: str = ""
    # Seconds the run has been waiting for an agent to take it; None when it is not waiting.
    waiting_for_agent_s: float | None = None
    # The run's trace ID, as its first status event gave it; None when it was not traced.
    trace_id: str | None = None


TurnState = Literal["running", "completed", "failed", "cancelled"]


class ConversationTurn(msgspec.Struct, kw_only=True, frozen=True):
    """One run of a conversation: its question, and its answer once stored."""

    run_id: str
    prompt: str
    status: TurnState
    answer: str | None = None
    # The SQL statements the answer ran (those that succeeded).
    sql: list[str] = msgspec.field(default_factory=list)
    # When the run was accepted (or, past the stream's max age, stored): seconds since the epoch.
    ts: float = 0.0


class ConversationView(msgspec.Struct, kw_only=True, frozen=True):
    """Answer of ``GET /api/conversations/{id}``: its turns, oldest first."""

    conversation_id: str
    org: str
    turns: list[ConversationTurn]
    # The conversation's stream, with a conversation-scoped token (also ``stream_token``).
    stream_url: str
    stream_token: str


class RunList(msgspec.Struct, kw_only=True, frozen=True):
    """Answer of ``GET /api/runs``: a conversation's most recent runs, newest first."""

    conversation_id: str
    runs: list[ConversationTurn]


class ErrorBody(msgspec.Struct, kw_only=True, frozen=True):
    """Every 4xx/5xx JSON body."""

    error: str
    detail: str = ""


class ConversationBusyBody(ErrorBody, kw_only=True, frozen=True):
    """The 409 ``conversation_busy`` body: the conversation's run still going, which a client
    may follow, wait for or cancel before sending its message again."""

    run_id: str


class CapacityRefusal(enum.StrEnum):
    """``ErrorBody.error`` of a 503 that means "busy now, retry later", never "failed"."""

    # The agent service runs as many attempts as it accepts (AGENT_MAX_CONCURRENT_RUNS).
    AGENT_BUSY = "agent_busy"
    # The model provider refused a request with 429 (rate or concurrency limit).
    MODEL_RATE_LIMITED = "model_rate_limited"
