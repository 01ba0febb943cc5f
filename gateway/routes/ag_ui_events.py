"""The AG-UI routes: a run as AG-UI events over SSE (``gateway.protocols.ag_ui``).

- ``POST /api/ag-ui`` with a ``RunAgentInput`` (what ``HttpAgent`` posts): the thread is the
  conversation, the last user message starts a run as ``POST /api/messages`` does, with the
  input's ``runId`` as its ``Idempotency-Key`` (a retried post gets the same run, replayed from
  its start), and the answer is that run's events;
- ``GET /api/runs/{run}/ag-ui``: any run's events from its first, authorised like
  ``GET /api/stream/{run}``; the thread and run IDs are then the agentstream run's own.
"""

from __future__ import annotations

from gateway.protocols.ag_ui import AgUiStream, RunAgentInput, prompt_of
from gateway.routes.translated_stream import PostedRun, Translated, post_route, run_route

RUN_PATH = "/api/ag-ui"


def _posted(request: RunAgentInput) -> PostedRun:
    """The run an input asks for: its last user message in its thread, its ``runId`` the
    idempotency key; ``forwardedProps`` may name the org and the connection."""
    forwarded = request.forwardedProps
    named = forwarded.get("org")
    return PostedRun(
        prompt_of(request.messages),
        request.threadId,
        named if isinstance(named, str) else None,
        forwarded.get("connection_id"),
        idempotency_key=request.runId,
    )


def _posted_framing(request: RunAgentInput, run: str) -> Translated:
    """The run as AG-UI events, under the input's thread and run IDs."""
    translator = AgUiStream(request.threadId, request.runId, run, input_messages=request.messages)
    return Translated(run, translator)


ROUTES = [
    post_route(
        RUN_PATH,
        RunAgentInput,
        _posted,
        _posted_framing,
        "AG-UI Run Agent",
        "Start a run for the input's last user message (threadId is the conversation, "
        "runId names the run like an Idempotency-Key) and stream it as AG-UI events.",
        "ag_ui_run_agent",
        "The run's AG-UI events",
    ),
    run_route(
        "ag-ui",
        lambda run: Translated(run, AgUiStream(run, run, run)),
        "Run AG-UI Events",
        "The run from its first event as AG-UI events (thread and run ID: the run's).",
        "run_ag_ui_events",
        "The run's AG-UI events",
    ),
]
