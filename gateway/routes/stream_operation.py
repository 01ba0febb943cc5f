"""The OpenAPI operation of a route served ahead of FastAPI that answers with an event stream."""

from __future__ import annotations

from typing import Any

from agentstream.runtime.openapi_bodies import json_body


def stream_operation(
    summary: str,
    description: str,
    operation_id: str,
    parameters: list[dict[str, Any]],
    streamed: str,
    refusals: dict[str, Any],
    *,
    body: Any = None,
) -> dict[str, Any]:
    """The operation of a route whose 200 (``streamed``) is an event stream; ``refusals``: its
    other responses by status; ``body``: the type of its JSON body, if it takes one."""
    ok = {"description": streamed, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return {
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "parameters": parameters,
        **(json_body(body) if body is not None else {}),
        "responses": {"200": ok, **refusals},
    }
