"""The events of a run: one tagged union, ``type`` as the tag.

Every event carries the ``run`` it belongs to, the ``attempt`` of the activity that produced it,
the producer's clock ``ts`` (ns since the epoch) and ``n``, the producer's own counter, which
together form the ``Nats-Msg-Id`` that de-duplicates a retried publish.

Schema evolution: new fields always have defaults; an existing field's type never changes.
"""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any

import msgspec

from schemas.completeness import Completeness
from schemas.messages import AgentResult


class Stage(enum.StrEnum):
    """Stages a run goes through, in order, reported by ``status`` events."""

    QUEUED = "queued"
    SANDBOX_CREATING = "sandbox_creating"
    SANDBOX_READY = "sandbox_ready"
    # The run asked for an agent and waits in its org's agent-call queue until one is free.
    WAITING_FOR_AGENT = "waiting_for_agent"
    AGENT_STARTED = "agent_started"
    SAVING = "saving"


def now_ns() -> int:
    """Producer time for an event's ``ts``."""
    return time.time_ns()


class BaseEvent(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    """Fields every event carries."""

    run: str
    attempt: int = 1
    ts: int = msgspec.field(default_factory=now_ns)
    n: int = 0


class Status(BaseEvent, tag="status", frozen=True):
    """A stage change of the run."""

    stage: Stage
    sandbox_id: str | None = None
    sandbox_url: str | None = None
    model: str | None = None
    detail: str = ""
    # The run's trace (32 hex digits) when tracing is on: set on the run's first status event.
    trace_id: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")] | None = None


class Token(BaseEvent, tag="token", frozen=True):
    """Assistant text; coalesced, so one event may hold many model tokens."""

    text: str


class ToolStart(BaseEvent, tag="tool_start", frozen=True):
    """The agent called a tool."""

    call_id: str
    name: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolEnd(BaseEvent, tag="tool_end", frozen=True):
    """A tool call finished, with its output or its error."""

    call_id: str
    name: str
    output: str = ""
    error: str | None = None


class Reset(BaseEvent, tag="reset", frozen=True):
    """Attempt ``attempt`` restarted the agent: drop partial output of earlier attempts."""

    reason: str = ""


class Error(BaseEvent, tag="error", frozen=True):
    """A non-fatal problem worth showing."""

    message: str


class TerminalEvent(BaseEvent, kw_only=True, frozen=True):
    """Fields every terminal event carries."""

    # Every event of the run before this one, counted and hashed (see schemas.completeness).
    # None only for a ``done`` rebuilt from the database after the run's events expired.
    completeness: Completeness | None = None


class Done(TerminalEvent, tag="done", frozen=True):
    """Terminal: the run finished with a result."""

    result: AgentResult


class Failed(TerminalEvent, tag="failed", frozen=True):
    """Terminal: the run failed or timed out."""

    reason: str


class Cancelled(TerminalEvent, tag="cancelled", frozen=True):
    """Terminal: the run was cancelled."""

    reason: str = ""


Event = Status | Token | ToolStart | ToolEnd | Reset | Error | Done | Failed | Cancelled

TERMINAL_TYPES: frozenset[type[BaseEvent]] = frozenset({Done, Failed, Cancelled})


def is_terminal(event: BaseEvent) -> bool:
    """Whether ``event`` ends its run's stream."""
    return type(event) in TERMINAL_TYPES


def _tag(cls: type[BaseEvent]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def event_type(event: BaseEvent) -> str:
    """The tag of ``event``, as sent in SSE ``event:`` lines."""
    return _tag(type(event))


# The same, by tag: for relays and clients that see the type, not a decoded event.
TERMINAL_EVENT_TYPES: frozenset[str] = frozenset(_tag(cls) for cls in TERMINAL_TYPES)
