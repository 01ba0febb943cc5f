"""Every door: nobody reads, starts, cancels or streams a run that is not theirs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import nats
import pytest
from temporalio.client import Client

from agentstream.devstack.sse_client import SseMessage, read_stream
from agentstream.devstack.stack import LocalStack
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal_codec import data_converter
from agentstream.runtime.tokens import TokenClaims, mint_token
from gateway.auth import hash_api_key
from tests.stacks import extra_gateway

KEY_ACME = "acme-key-0123456789abcdef"
KEY_GLOBEX = "globex-key-0123456789abcdef"
JWT_SECRET = "jwt-test-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
async def secure(stack: LocalStack) -> AsyncIterator[str]:
    """A gateway that requires API keys or JWTs, with tight limits."""
    env = {
        "API_KEYS": f"acme:{hash_api_key(KEY_ACME)},globex:{hash_api_key(KEY_GLOBEX)}",
        "JWT_HS256_SECRET": JWT_SECRET,
        "RATE_LIMIT_RPS": "5",
        "RATE_LIMIT_BURST": "10",
        "MAX_STREAMS_PER_KEY": "2",
    }
    async with extra_gateway(stack, "gateway-secure", env) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def acme_run(stack: LocalStack, secure: str) -> AsyncIterator[dict[str, str]]:
    """A run of org acme (no acme worker: it stays queued), terminated afterwards."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{secure}/api/messages", json={"message": "mine"}, headers=_bearer(KEY_ACME)
        )
    assert response.status_code == 202, response.text
    accepted: dict[str, str] = response.json()
    try:
        yield accepted
    finally:
        temporal = await Client.connect(stack.temporal_address, data_converter=data_converter)
        await temporal.get_workflow_handle(accepted["workflow_id"]).terminate("test over")


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _jwt(
    org: str | None, *, exp_in: int = 300, secret: str = JWT_SECRET, subject: str = "user-1"
) -> str:
    claims: dict[str, object] = {"sub": subject, "exp": int(time.time()) + exp_in}
    if org is not None:
        claims["org"] = org
    return jwt.encode(claims, secret, algorithm="HS256")


async def _first_event(http: httpx.AsyncClient, url: str) -> SseMessage:
    async with asyncio.timeout(30), contextlib.aclosing(read_stream(http, url)) as stream:
        return await anext(stream)


async def _event_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The first ``event:`` line of an SSE response."""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            yield line
            return


def _error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]


async def test_every_run_endpoint_wants_credentials(
    secure: str, http: httpx.AsyncClient, acme_run: dict[str, str]
) -> None:
    run = acme_run["workflow_id"]
    _error(await http.post(f"{secure}/api/messages", json={"message": "x"}), 401)
    _error(await http.get(f"{secure}/api/runs/{run}"), 401)
    _error(await http.post(f"{secure}/api/runs/{run}/cancel"), 401)
    _error(await http.post(f"{secure}/api/runs/{run}/stream-token"), 401)
    _error(await http.get(f"{secure}/api/stream/{run}"), 401)
    for bad in (
        "not-a-key",
        KEY_ACME + "x",
        _jwt("acme", secret="another-secret-0123456789abcdefghijklmnop"),
    ):
        _error(await http.get(f"{secure}/api/runs/{run}", headers=_bearer(bad)), 401)
    _error(
        await http.get(f"{secure}/api/runs/{run}", headers=_bearer(_jwt("acme", exp_in=-60))), 401
    )
    _error(await http.get(f"{secure}/api/runs/{run}", headers={"Authorization": "Basic eA=="}), 401)
    assert (await http.get(f"{secure}/healthz")).json()["auth"] == "required"


async def test_another_orgs_key_can_neither_start_read_cancel_nor_stream(
    secure: str, http: httpx.AsyncClient, acme_run: dict[str, str]
) -> None:
    run = acme_run["workflow_id"]
    for credential in (KEY_GLOBEX, _jwt("globex")):
        other = _bearer(credential)
        started = await http.post(
            f"{secure}/api/messages", json={"message": "x", "org": "acme"}, headers=other
        )
        _error(started, 403)
        _error(await http.get(f"{secure}/api/runs/{run}", headers=other), 403)
        _error(await http.post(f"{secure}/api/runs/{run}/cancel", headers=other), 403)
        _error(await http.post(f"{secure}/api/runs/{run}/stream-token", headers=other), 403)
        _error(await http.get(f"{secure}/api/stream/{run}", headers=other), 403)
    _error(await http.get(f"{secure}/api/runs/{run}", headers=_bearer(_jwt(None))), 403)

    mine = _bearer(KEY_ACME)
    view = (await http.get(f"{secure}/api/runs/{run}", headers=mine)).json()
    assert view["org"] == "acme" and view["status"] == "running", "still running: nothing cancelled"


async def test_stream_tokens_open_exactly_their_own_run(
    stack: LocalStack, secure: str, http: httpx.AsyncClient, acme_run: dict[str, str]
) -> None:
    run = acme_run["workflow_id"]
    token = acme_run["stream_token"]
    assert acme_run["stream_url"].endswith(f"/api/stream/{run}?token={token}")
    assert acme_run["run_url"].endswith(f"/api/runs/{run}")
    other = (
        await http.post(
            f"{secure}/api/messages", json={"message": "x"}, headers=_bearer(KEY_GLOBEX)
        )
    ).json()

    def minted(kind: str, exp_in: int) -> str:
        claims = TokenClaims(kind=kind, run=run, org="acme", exp=int(time.time()) + exp_in)  # type: ignore[arg-type]
        return mint_token(stack.callback_secret, claims)

    url = f"{secure}/api/stream/{run}"
    _error(await http.get(url, params={"token": other["stream_token"]}), 403)
    _error(await http.get(url, params={"token": token[:-3] + "AAA"}), 401)
    _error(await http.get(url, params={"token": minted("stream", -5)}), 401)
    _error(await http.get(url, params={"token": minted("callback", 60)}), 401)
    _error(await http.get(url, params={"token": "garbage"}), 401)

    first = await _first_event(http, f"{url}?token={token}")
    assert first.event == "status" and first.json()["stage"] == "queued"
    fresh = (
        await http.post(f"{secure}/api/runs/{run}/stream-token", headers=_bearer(KEY_ACME))
    ).json()
    assert fresh["stream_url"].endswith(f"/api/stream/{run}?token={fresh['stream_token']}")
    again = await _first_event(http, f"{url}?token={fresh['stream_token']}")
    assert again.id == first.id

    temporal = await Client.connect(stack.temporal_address, data_converter=data_converter)
    await temporal.get_workflow_handle(other["workflow_id"]).terminate("test over")


async def test_a_stream_token_cannot_publish_and_a_callback_token_cannot_read(
    stack: LocalStack, secure: str, http: httpx.AsyncClient, acme_run: dict[str, str]
) -> None:
    run = acme_run["workflow_id"]
    event = {"type": "token", "run": run, "text": "forged"}
    chunk_url = f"{secure}/api/stream/{run}/chunk"
    _error(await http.post(chunk_url, json=event, headers=_bearer(acme_run["stream_token"])), 401)
    _error(await http.post(chunk_url, json=event, headers=_bearer(KEY_ACME)), 401)
    nc = await nats.connect(stack.nats_url)
    try:
        stored = [event async for event in HistoryReader(nc).read("acme", run, after=0)]
    finally:
        await nc.close()
    assert [e.type for e in stored] == ["status"], "only the gateway's queued: nothing published"


async def test_request_rate_and_open_streams_are_bounded_per_key(
    secure: str, http: httpx.AsyncClient, acme_run: dict[str, str]
) -> None:
    run = acme_run["workflow_id"]
    statuses = [
        (await http.get(f"{secure}/api/runs/{run}", headers=_bearer(KEY_ACME))).status_code
        for _ in range(25)
    ]
    assert 429 in statuses and statuses[0] == 200
    limited = await http.get(f"{secure}/api/runs/{run}", headers=_bearer(KEY_ACME))
    if limited.status_code == 429:
        assert int(limited.headers["Retry-After"]) >= 1

    url = f"{secure}/api/stream/{run}?token={acme_run['stream_token']}"
    async with http.stream("GET", url) as first, http.stream("GET", url) as second:
        assert first.status_code == second.status_code == 200
        third = await http.get(url)
        _error(third, 429)
    metrics = (await http.get(f"{secure}/metrics")).text
    assert 'agentstream_limit_hits_total{limit="request_rate"}' in metrics
    assert 'agentstream_limit_hits_total{limit="streams_per_key"}' in metrics


async def test_no_secret_ever_reaches_a_log(
    stack: LocalStack, secure: str, http: httpx.AsyncClient, acme_run: dict[str, str]
) -> None:
    # Provoke the paths that log: refused credentials of every kind, then read every log.
    for credential in (KEY_ACME + "x", _jwt("acme", secret=JWT_SECRET + "x"), "v1.x.y"):
        await http.get(f"{secure}/api/runs/{acme_run['workflow_id']}", headers=_bearer(credential))
    secrets = {
        "acme key": KEY_ACME,
        "globex key": KEY_GLOBEX,
        "jwt secret": JWT_SECRET,
        "callback secret": stack.callback_secret,
        "stream token": acme_run["stream_token"],
    }
    for log in stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        for name, secret in secrets.items():
            assert secret not in text, f"{name} found in {log.name}"


async def test_a_conversation_is_read_by_its_org_or_its_token_only(
    stack: LocalStack, secure: str, http: httpx.AsyncClient
) -> None:
    conversation = f"conv_auth_{int(time.time() * 1000)}"
    # Callers of their own (a JWT's subject is its rate bucket): the other tests spent the keys'.
    mine = _bearer(_jwt("acme", subject="conversations"))
    other = _bearer(_jwt("globex", subject="conversations"))
    started = await http.post(
        f"{secure}/api/messages",
        json={"message": "ours", "conversation_id": conversation},
        headers=mine,
    )
    assert started.status_code == 202, started.text
    accepted = started.json()
    try:
        view = f"{secure}/api/conversations/{conversation}"
        stream = f"{view}/stream"
        runs = f"{secure}/api/runs?conversation_id={conversation}"
        _error(await http.get(view), 401)
        _error(await http.get(stream), 401)
        _error(await http.get(runs), 401)
        # Another org knows no such conversation, and may not join it.
        _error(await http.get(view, headers=other), 404)
        _error(await http.get(stream, headers=other), 404)
        _error(await http.get(runs, headers=other), 404)
        _error(await http.post(f"{view}/stream-token", headers=other), 404)
        _error(await http.get(view, params={"org": "acme"}, headers=other), 403)
        joined = await http.post(
            f"{secure}/api/messages",
            json={"message": "theirs", "conversation_id": conversation},
            headers=other,
        )
        _error(joined, 409)
        assert joined.json()["error"] == "conversation_of_another_org"
        # Its org's credentials, or the conversation token alone.
        turns = (await http.get(view, headers=mine)).json()["turns"]
        assert [(t["run_id"], t["status"]) for t in turns] == [(accepted["workflow_id"], "running")]
        first = await _first_event(http, accepted["conversation_stream_url"])
        assert first.event == "run" and first.json()["run"] == accepted["workflow_id"]
        async with asyncio.timeout(30), http.stream("GET", stream, headers=mine) as response:
            assert response.status_code == 200
            events = [line async for line in _event_lines(response)]
        assert events == ["event: run"]
        # A conversation token opens its conversation only, never a run's stream.
        token = accepted["conversation_stream_url"].rpartition("token=")[2]
        _error(await http.get(f"{secure}/api/stream/{accepted['workflow_id']}?token={token}"), 401)
    finally:
        temporal = await Client.connect(stack.temporal_address, data_converter=data_converter)
        await temporal.get_workflow_handle(accepted["workflow_id"]).terminate("test over")
