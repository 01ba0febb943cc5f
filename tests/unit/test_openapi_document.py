"""The gateway's OpenAPI document builds without a server, and names every route's answers."""

from __future__ import annotations

import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings


def test_the_openapi_document_lists_both_stream_routes_and_their_refusals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTSTREAM_LOCAL_STACK", "1")
    document = create_app(GatewaySettings.from_env()).openapi()
    for path in ("/api/stream/{run}", "/api/stream"):
        answers = document["paths"][path]["get"]["responses"]
        assert {"200", "400", "401", "404", "429"} <= set(answers), (path, answers)
