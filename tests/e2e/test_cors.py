"""Pages served elsewhere reach the API and its streams if their origin is allowed, only then."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.stacks import extra_gateway

APP = "http://app.example:3000"


@pytest.fixture(scope="module")
async def cors_gateway(stack: LocalStack) -> AsyncIterator[str]:
    """A gateway replica that lets pages of ``APP`` in."""
    async with extra_gateway(stack, "gateway-cors", {"CORS_ALLOW_ORIGINS": APP}) as gateway:
        yield gateway


def _preflight(origin: str, method: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/messages"),
        ("POST", "/api/ai-sdk/chat"),
        # Front routes, served ahead of FastAPI: their preflight must not be their 405.
        ("GET", "/api/stream/run_any"),
        ("POST", "/api/ag-ui"),
    ],
)
async def test_a_preflight_from_an_allowed_origin_is_answered(
    cors_gateway: str, http: httpx.AsyncClient, method: str, path: str
) -> None:
    answer = await http.options(f"{cors_gateway}{path}", headers=_preflight(APP, method))
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    assert method in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "last-event-id"} <= set(allowed.split(", "))
    assert "access-control-allow-credentials" not in answer.headers


async def test_a_preflight_from_another_origin_is_refused(
    cors_gateway: str, http: httpx.AsyncClient
) -> None:
    headers = _preflight("http://evil.example", "POST")
    answer = await http.options(f"{cors_gateway}/api/messages", headers=headers)
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers


async def test_an_allowed_page_starts_a_run_and_reads_its_stream(cors_gateway: str) -> None:
    async with httpx.AsyncClient(timeout=30, headers={"Origin": APP}) as page:
        run = await start_run(page, cors_gateway, "Count my words please")
        async with page.stream("GET", f"{cors_gateway}/api/stream/{run}") as answer:
            assert answer.headers["access-control-allow-origin"] == APP
            exposed = answer.headers["access-control-expose-headers"].lower()
            assert "retry-after" in exposed and "x-vercel-ai-ui-message-stream" in exposed
        messages = await read_whole_run(page, cors_gateway, run)
    assert_complete(messages)
    assert messages[-1].event == "done"


async def test_without_allowed_origins_no_cors_header_is_sent(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    health = await http.get(f"{gateway}/healthz", headers={"Origin": APP})
    assert health.status_code == 200
    assert "access-control-allow-origin" not in health.headers
    preflight = await http.options(f"{gateway}/api/messages", headers=_preflight(APP, "POST"))
    assert "access-control-allow-origin" not in preflight.headers
